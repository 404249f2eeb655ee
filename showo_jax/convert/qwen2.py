"""HF Qwen2 state dict ↔ :class:`~showo_jax.models.qwen2.Qwen2ForCausalLM`.

Official names (``model.layers.N.self_attn.q_proj.weight`` …) map one-to-one onto our attribute paths;
Linear weights are transposed, norm weights become ``scale``, the embedding table is ``embedding``. The
tied 1.5B checkpoint stores ``lm_head.weight`` as the same tensor as the embedding: it is checked equal
and not loaded twice. ``prefix`` is ``""`` for a standalone HF checkpoint and ``"showo."`` inside Show-o2.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from showo_jax.convert import common
from showo_jax.convert.common import CONV, IDENT, LINEAR, Rule  # noqa: F401
from showo_jax.models.qwen2 import Qwen2Config


def rules(cfg: Qwen2Config, prefix: str = "", dst_prefix: str = "") -> list[Rule]:
  p, d = prefix.replace(".", r"\."), dst_prefix
  lyr = p + r"model\.layers\.(\d+)\."
  out = [
      Rule(p + r"model\.embed_tokens\.weight", d + "model.embed_tokens.embedding"),
      Rule(p + r"model\.norm\.weight", d + "model.norm.scale"),
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj|o_proj)\.weight", d + "model.layers.{0}.self_attn.{1}.kernel", LINEAR),
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj)\.bias", d + "model.layers.{0}.self_attn.{1}.bias"),
      Rule(lyr + r"mlp\.(gate_proj|up_proj|down_proj)\.weight", d + "model.layers.{0}.mlp.{1}.kernel", LINEAR),
      Rule(lyr + r"(input_layernorm|post_attention_layernorm)\.weight", d + "model.layers.{0}.{1}.scale"),
  ]
  if not cfg.tie_word_embeddings:
    out.append(Rule(p + r"lm_head\.weight", d + "lm_head.kernel", LINEAR))
  return out


def aliases(cfg: Qwen2Config, prefix: str = "") -> dict[str, str]:
  return {f"{prefix}lm_head.weight": f"{prefix}model.embed_tokens.weight"} if cfg.tie_word_embeddings else {}


def resize_vocab(sd: Mapping[str, np.ndarray], vocab_size: int, prefix: str = "") -> dict[str, np.ndarray]:
  """Show-o2's ``resize_token_embeddings(151669)`` on an original Qwen2.5 checkpoint: keep the first rows."""
  out = dict(sd)
  for key in (f"{prefix}model.embed_tokens.weight", f"{prefix}lm_head.weight"):
    if key in out and out[key].shape[0] > vocab_size:
      out[key] = out[key][:vocab_size]
  return out


def to_flat(sd: Mapping[str, np.ndarray], cfg: Qwen2Config, prefix: str = "", dst_prefix: str = "") -> dict:
  flat = common.to_flat(sd, rules(cfg, prefix, dst_prefix), aliases=aliases(cfg, prefix))
  return stack_if_scanned(flat, cfg, dst_prefix)


def stack_if_scanned(flat: dict, cfg: Qwen2Config, dst_prefix: str = "") -> dict:
  return common.stack_layers(flat, dst_prefix + "model.layers") if cfg.scan_layers else flat


def from_flat(flat: Mapping[str, np.ndarray], cfg: Qwen2Config, key_order, prefix: str = "", dst_prefix: str = ""):
  if cfg.scan_layers:
    stacked = {k[len(dst_prefix + "model.layers."):] for k in flat if k.startswith(dst_prefix + "model.layers.")}
    flat = common.unstack_layers(flat, dst_prefix + "model.layers", stacked)
  return common.from_flat(flat, rules(cfg, prefix, dst_prefix), key_order, aliases=aliases(cfg, prefix))
