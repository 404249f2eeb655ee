"""Mixed-modality fine-tuning (``showo2_1.5b_downstream_mixed_modality_simple.yaml``, spec §9.5).

VIST-style interleaved stories only (``sequential_max_size_cycle``), 2 per GPU, up to 4 images at 432 px,
``max_mixed_modal_seq_length 4352``; init ``showlab/show-o2-1.5B`` (converted); LR 1e-4 constant without
warmup, 40k steps, ``ntp 0.2 / flow 1.0``, seed 10000; the stage-1 frozen set (LLM and semantic path), and with
probability 0.7 a random prefix of each story's images is clean (``t = 1``) and out of the flow loss."""
from configs import common
from configs.showo2 import base, stage1


def build(arg) -> common.ConfigDict:
  c = base.build(arg)
  c.trainable.frozen = list(stage1.STAGE1_FROZEN)
  c.loss.ntp_coeff, c.loss.flow_coeff = 0.2, 1.0
  c.loss.clean_prefix_prob = 0.7
  c.optim = common.optim_block(1e-4, schedule="constant_with_warmup", warmup_steps=0)
  c.total_steps = 40_000
  c.seed = 10000
  c.data.mixture = "sequential"
  c.data.t2i.batch_size = 0
  c.data.mmu.batch_size = 0
  c.data.interleaved.batch_size = 2
  c.data.interleaved.max_num_images = 4
  c.data.max_seq_length = 4352
  c.ckpt.every = 2000
  return c


def get_config(arg=None):
  arg = common.parse_arg(arg, size="1.5b", runlocal=False)
  return base.finalize(build(arg), arg)
