"""Stage 1 (``showo2_{1.5b,7b}_stage_1_a.yaml``): train the flow head and the projector path; LLM and semantic
path frozen. T2I rows (bs 6) + captioning MMU rows (bs 2), ``ntp 0.2 / flow 1.0``, LR 1e-4 constant with 2000
warmup steps, 150k steps, seed 10086. One optimizer group (frozen parameters simply get no update).
Init: converted Qwen2.5 + SigLIP + pre-distilled semantic layers (``--config.init.path``); 7B reuses the
1.5B stage-2c flow head, ``time_embed`` and semantic path (``params_not_load``)."""
from configs import common
from configs.showo2 import base

STAGE1_FROZEN = ["image_embedder_und", "und_trans", "showo", "position_embedding"]


def build(arg) -> common.ConfigDict:
  c = base.build(arg)
  c.trainable.frozen = list(STAGE1_FROZEN)
  c.loss.ntp_coeff, c.loss.flow_coeff = 0.2, 1.0
  c.data.t2i.batch_size, c.data.mmu.batch_size = 6, 2
  c.data.mmu.format = "caption"
  c.data.t2i.min_res = c.data.mmu.min_res = 256
  if arg.size == "7b":
    c.init.params_not_load = ["image_embedder_gen", "showo", "fusion_proj", "diff_proj", "time_embed_proj"]
  return c


def get_config(arg=None):
  arg = base.parse_arg(arg)
  return base.finalize(build(arg), arg, "stage1")
