"""Instruction tuning 1 (``showo_instruction_tuning_1.yaml``; ``res=512``: ``…_1_512x512.yaml``): LLaVA-558K
understanding rows in the discrete (MAGVIT-v2) form of spec §4.4 (``[<|mmu|> <|soi|> img <|eoi|>]`` + the
``phi1.5``-template conversation, loss on the answers only), T2I on LAION-aesthetics + JourneyDB, RefinedWeb LM.
Text budget 381; 256 px: bs 4 / 2 / 7, LR 2e-5, 10k steps; 512 px (``show_o_512x512``, 1024 codes): bs
5 / 2 / 5, LR 2e-5, 14k steps; cosine with 1000 warmup steps. Continues from stage 3.
Deviation: the reference tokenises LLaVA images at 256 px also in the 512 configs; here every row of a run uses
the run's resolution (one sequence length per batch)."""
from configs import common
from configs.showo import base, stage3

RECIPES = {  # res -> (preset, bs t2i / lm / mmu, lr, steps)
    256: ("show_o", (4, 2, 7), 2e-5, 10_000),
    512: ("show_o_512x512", (5, 2, 5), 2e-5, 14_000),
}


def build_tuning(arg, recipes) -> common.ConfigDict:
  if arg.res not in recipes:
    raise ValueError(f"res must be one of {sorted(recipes)}, got {arg.res}")
  preset, (bt, bl, bm), lr, steps = recipes[arg.res]
  c = stage3.build(arg)
  c.model.preset = preset
  c.data.resolution = c.data.procedural_size = arg.res
  c.data.max_seq_length = 381
  c.data.t2i.batch_size, c.data.lm.batch_size, c.data.mmu.batch_size = bt, bl, bm
  c.data.mmu.format = "llava"
  c.optim = common.optim_block(lr, schedule="cosine", warmup_steps=1000)
  c.optim.weight_decay, c.optim.grad_clip = 0.01, 0.0
  c.total_steps = steps
  return c


def build(arg) -> common.ConfigDict:
  return build_tuning(arg, RECIPES)


def get_config(arg=None):
  arg = common.parse_arg(arg, res=256, runlocal=False)
  return base.finalize(build(arg), arg)
