"""Stage 1b (``showo2_*_stage_1_b.yaml``): continues 1a (init = 1a at 150k) on 10M high-quality pairs:
no warmup, 40k steps, seed 10000."""
from configs import common
from configs.showo2 import base, stage1a


def build(arg) -> common.ConfigDict:
  c = stage1a.build(arg)
  c.optim.schedule.warmup_steps = 0
  c.total_steps = 40_000
  c.seed = 10000
  c.init.params_not_load = []
  return c


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage1")
