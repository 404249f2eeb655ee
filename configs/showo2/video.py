"""Text-to-video on 3-D Wan latents (spec §4.8; code paths only upstream, no released video recipe).

17 frames at 432 px → latents ``5 × 54 × 54`` → 3645 video tokens + 1 time token, so ``max_seq_length``
grows to 4096 (upstream's 1024 cannot hold the format, spec §4.8) and the transport shift uses
``seq_len = 3646``. Initialise from a stage-2c checkpoint (``--config.init.path``); everything trainable in
one optimizer group; LR 1e-5 constant after 1000 warmup steps; video rows only; ``minimal`` remat."""
from configs import common
from configs.showo2 import base


def build(arg) -> common.ConfigDict:
  c = base.build(arg)
  c.trainable.frozen = []
  c.loss.ntp_coeff, c.loss.flow_coeff = 1.0, 1.0
  c.loss.transport_seq_len = 3646
  c.optim = common.optim_block(1e-5, schedule="constant_with_warmup", warmup_steps=1000)
  c.total_steps = 40_000
  c.data.t2i.batch_size = 0
  c.data.mmu.batch_size = 0
  c.data.video.batch_size = 1
  c.data.video.num_frames = 17
  c.data.max_seq_length = 4096
  c.model.remat_policy = "minimal"
  return c


def get_config(arg=None):
  arg = common.parse_arg(arg, size="1.5b", runlocal=False)
  return base.finalize(build(arg), arg)
