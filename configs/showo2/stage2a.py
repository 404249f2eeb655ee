"""Stage 2a (``showo2_*_stage_2_a.yaml``, LLaVA 558K ``pre-training``): equal to :mod:`stage2`."""
from configs import common
from configs.showo2 import base, stage2


def build(arg) -> common.ConfigDict:
  return stage2.build(arg)


def get_config(arg=None):
  arg = common.parse_arg(arg, size="1.5b", runlocal=False)
  return base.finalize(build(arg), arg)
