"""Stage 2b (``showo2_*_stage_2_b.yaml``, LLaVA-OV stage-1.5 + DenseFusion, ``pre-training-1-5``): nothing
frozen; LRs ve 2e-6, proj 1e-5, showo 1e-5."""
from configs import common
from configs.showo2 import base, stage2, stage2a


def build(arg) -> common.ConfigDict:
  c = stage2a.build(arg)
  c.trainable.frozen = []
  c.optim.lr = 1e-5
  c.optim.groups = common.param_groups(ve=(stage2.VE, 2e-6), proj=(stage2.PROJ, 1e-5), showo=(stage2.SHOWO, 1e-5))
  c.data.mmu.stage = "pre-training-1-5"
  return c


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage2")
