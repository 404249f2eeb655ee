"""Pre-training stage 1 (``showo_pretraining_stage1.yaml``): class-conditional T2I on ImageNet-1K (the text is
the class name), captioning MMU (SA-1B / CC12M / LAION-aesthetics with the caption prompt), RefinedWeb LM.
256 px / 256 codes, text budget 128, bs 15 / 4 / 10 per device, LR 1e-4 cosine with 5000 warmup steps, 500k
steps. Init: Phi-1.5 resized to the unified vocabulary (``--config.init.path``; ``load_from_showo False``).
Procedural stand-in: scene captions for the T2I text (there are no class names)."""
from configs import common
from configs.showo import base


def build(arg) -> common.ConfigDict:
  c = base.build(arg)
  c.data.t2i.batch_size, c.data.lm.batch_size, c.data.mmu.batch_size = 15, 4, 10
  c.optim = common.optim_block(1e-4, schedule="cosine", warmup_steps=5000)
  c.optim.weight_decay, c.optim.grad_clip = 0.01, 0.0
  c.total_steps = 500_000
  return c


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  return base.finalize(build(arg), arg)
