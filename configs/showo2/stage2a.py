"""Stage 2a (``showo2_*_stage_2_a.yaml``, LLaVA 558K ``pre-training``): equal to :mod:`stage2`."""
from configs import common
from configs.showo2 import base, stage2


def build(arg) -> common.ConfigDict:
  return stage2.build(arg)


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage2")
