"""Stage 2 (``showo2_*_stage_2_a.yaml``; = stage 2a): LLaVA-style understanding with T2I rows kept.

Three AdamW groups by substring (``train_stage_two.py``): ``ve`` = und_trans / image_embedder / position_embedding,
``proj`` = fusion_proj, ``showo`` = showo / diffusion / diff_proj / time_embed_proj. ``time_embed`` is in no
group: it gets gradients (and counts in the clip norm) but is never updated. Cosine schedule with 3 % warmup
over one epoch of the MMU data (``total_steps = 0``); bs 4 + 4 per GPU (7B: 2 + 2); T2I min side 512;
``ntp 1.0 / flow 1.0``. 2a freezes everything but ``fusion_proj`` (and ``time_embed``, see above)."""
from configs import common
from configs.showo2 import base

VE = ["und_trans", "image_embedder", "position_embedding"]
PROJ = ["fusion_proj"]
SHOWO = ["showo", "diffusion", "diff_proj", "time_embed_proj"]
STAGE2A_FROZEN = ["showo", "image_embedder_und", "und_trans", "position_embedding", "image_embedder_gen",
                  "diffusion", "diff_proj", "time_embed_proj"]


def build(arg) -> common.ConfigDict:
  c = base.build(arg)
  c.trainable.frozen = list(STAGE2A_FROZEN)
  c.loss.ntp_coeff, c.loss.flow_coeff = 1.0, 1.0
  c.optim = common.optim_block(5e-5, schedule="cosine", warmup_steps=None, warmup_ratio=0.03)
  c.optim.groups = common.param_groups(ve=(VE, 5e-5), proj=(PROJ, 5e-5), showo=(SHOWO, 5e-5))
  c.total_steps = 0
  bs = 2 if arg.size == "7b" else 4
  c.data.t2i.batch_size, c.data.mmu.batch_size = bs, bs
  c.data.t2i.min_res = c.data.mmu.min_res = 512
  c.data.mmu.format = "llava"
  c.data.mmu.stage = "pre-training"
  c.data.mmu.system_prompt = ""
  c.ckpt.every = 10_000
  return c


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage2")
