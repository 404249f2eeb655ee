"""Pre-training stage 3 (``showo_pretraining_stage3.yaml``): high-quality T2I (LAION-aesthetics-12M + JourneyDB)
at LR 2e-5 (cosine, 5000 warmup steps) for 50k steps; bs 10 / 4 / 10. Continues from stage 2."""
from configs import common
from configs.showo import base, stage2


def build(arg) -> common.ConfigDict:
  c = stage2.build(arg)
  c.optim.lr = 2e-5
  c.total_steps = 50_000
  return c


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  return base.finalize(build(arg), arg)
