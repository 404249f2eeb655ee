"""Instruction tuning 2 (``showo_instruction_tuning_2.yaml``; ``res=512``: ``…_2_512x512.yaml``): tuning 1 with
LLaVA-665K (multi-turn instruction data). 256 px: bs 4 / 2 / 6, LR 5e-5, 14k steps; 512 px: bs 5 / 2 / 5,
LR 5e-5, 16k steps; cosine with 1000 warmup steps. Continues from tuning 1."""
from configs import common
from configs.showo import base, tuning1

RECIPES = {
    256: ("show_o", (4, 2, 6), 5e-5, 14_000),
    512: ("show_o_512x512", (5, 2, 5), 5e-5, 16_000),
}


def build(arg) -> common.ConfigDict:
  return tuning1.build_tuning(arg, RECIPES)


def get_config(arg=None):
  arg = common.parse_arg(arg, res=256, runlocal=False)
  return base.finalize(build(arg), arg)
