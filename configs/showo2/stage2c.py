"""Stage 2c (``showo2_*_stage_2_c.yaml``, LLaVA-OV SI 3.2M instruction ``tuning``): 2b plus the system prompt
and role tags; seed 1008."""
from configs import common
from configs.showo2 import base, stage2b


def build(arg) -> common.ConfigDict:
  c = stage2b.build(arg)
  c.data.mmu.stage = "tuning"
  c.data.mmu.system_prompt = "system\nYou are a helpful assistant.<|im_end|>"
  c.seed = 1008
  return c


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage2")
