"""Stage 1a (``showo2_*_stage_1_a.yaml``): stage 1 on 66M image-text pairs; equal to :mod:`stage1`."""
from configs import common
from configs.showo2 import base, stage1


def build(arg) -> common.ConfigDict:
  return stage1.build(arg)


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage1")
