"""Pre-training stage 2 (``showo_pretraining_stage2.yaml``): stage 1 with image-text T2I data (SA-1B, CC12M,
LAION-aesthetics-12M captions); bs 10 / 4 / 10, LR 1e-4 cosine with 5000 warmup steps, 1M steps. Continues
from the stage-1 run (``--config.init.path <stage-1 run>/checkpoints/<step>``)."""
from configs import common
from configs.showo import base, stage1


def build(arg) -> common.ConfigDict:
  c = stage1.build(arg)
  c.data.t2i.batch_size, c.data.lm.batch_size, c.data.mmu.batch_size = 10, 4, 10
  c.total_steps = 1_000_000
  return c


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  return base.finalize(build(arg), arg)
