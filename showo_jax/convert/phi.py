"""HF Phi state dict ↔ :class:`~showo_jax.models.phi.PhiForCausalLM`.

Official names (``model.layers.N.self_attn.dense.weight`` …) map one-to-one onto our attribute paths;
Linear weights are transposed, LayerNorm weights become ``scale``, the embedding table is ``embedding``.
``prefix`` is ``""`` for a standalone HF checkpoint and ``"showo."`` inside Show-o v1.

An original ``microsoft/phi-1_5`` checkpoint has no ``q_layernorm``/``k_layernorm`` (Show-o adds them) and
51200 rows: :func:`from_phi_pretrained` reproduces what Show-o's constructor does to it (fresh QK-LayerNorms
with unit scale / zero bias, vocabulary resized with N(0, initializer_range) rows and zero bias rows).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from showo_jax.convert import common
from showo_jax.convert.common import LINEAR, Rule
from showo_jax.models.phi import PhiConfig


def rules(cfg: PhiConfig, prefix: str = "", dst_prefix: str = "") -> list[Rule]:
  p, d = prefix.replace(".", r"\."), dst_prefix
  lyr = p + r"model\.layers\.(\d+)\."
  out = [
      Rule(p + r"model\.embed_tokens\.weight", d + "model.embed_tokens.embedding"),
      Rule(p + r"model\.final_layernorm\.weight", d + "model.final_layernorm.scale"),
      Rule(p + r"model\.final_layernorm\.bias", d + "model.final_layernorm.bias"),
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj|dense)\.weight", d + "model.layers.{0}.self_attn.{1}.kernel", LINEAR),
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj|dense)\.bias", d + "model.layers.{0}.self_attn.{1}.bias"),
      Rule(lyr + r"mlp\.(fc1|fc2)\.weight", d + "model.layers.{0}.mlp.{1}.kernel", LINEAR),
      Rule(lyr + r"mlp\.(fc1|fc2)\.bias", d + "model.layers.{0}.mlp.{1}.bias"),
      Rule(lyr + r"input_layernorm\.weight", d + "model.layers.{0}.input_layernorm.scale"),
      Rule(lyr + r"input_layernorm\.bias", d + "model.layers.{0}.input_layernorm.bias"),
      Rule(p + r"lm_head\.weight", d + "lm_head.kernel", LINEAR),
      Rule(p + r"lm_head\.bias", d + "lm_head.bias"),
  ]
  if cfg.qk_layernorm:
    out += [
        Rule(lyr + r"self_attn\.(q_layernorm|k_layernorm)\.weight", d + "model.layers.{0}.self_attn.{1}.scale"),
        Rule(lyr + r"self_attn\.(q_layernorm|k_layernorm)\.bias", d + "model.layers.{0}.self_attn.{1}.bias"),
    ]
  return out


def official_keys(cfg: PhiConfig, prefix: str = "") -> list[str]:
  """The official state-dict keys in ``state_dict()`` order (used to export)."""
  keys = [f"{prefix}model.embed_tokens.weight"]
  for i in range(cfg.num_hidden_layers):
    lp = f"{prefix}model.layers.{i}."
    for name in ("q_proj", "k_proj", "v_proj", "dense"):
      keys += [f"{lp}self_attn.{name}.weight", f"{lp}self_attn.{name}.bias"]
    if cfg.qk_layernorm:
      for name in ("q_layernorm", "k_layernorm"):
        keys += [f"{lp}self_attn.{name}.weight", f"{lp}self_attn.{name}.bias"]
    keys += [f"{lp}mlp.fc1.weight", f"{lp}mlp.fc1.bias", f"{lp}mlp.fc2.weight", f"{lp}mlp.fc2.bias",
             f"{lp}input_layernorm.weight", f"{lp}input_layernorm.bias"]
  keys += [f"{prefix}model.final_layernorm.weight", f"{prefix}model.final_layernorm.bias",
           f"{prefix}lm_head.weight", f"{prefix}lm_head.bias"]
  return keys


def to_flat(sd: Mapping[str, np.ndarray], cfg: PhiConfig, prefix: str = "", dst_prefix: str = "",
            skip=()) -> dict:
  flat = common.to_flat(sd, rules(cfg, prefix, dst_prefix), skip=skip)
  return stack_if_scanned(flat, cfg, dst_prefix)


def stack_if_scanned(flat: dict, cfg: PhiConfig, dst_prefix: str = "") -> dict:
  return common.stack_layers(flat, dst_prefix + "model.layers") if cfg.scan_layers else flat


def unstack_if_scanned(flat: Mapping[str, np.ndarray], cfg: PhiConfig, dst_prefix: str = "") -> dict:
  if not cfg.scan_layers:
    return dict(flat)
  pre = dst_prefix + "model.layers."
  stacked = {k[len(pre):] for k in flat if k.startswith(pre)}
  return common.unstack_layers(flat, dst_prefix + "model.layers", stacked)


def from_flat(flat: Mapping[str, np.ndarray], cfg: PhiConfig, key_order=None, prefix: str = "",
              dst_prefix: str = "") -> dict:
  flat = unstack_if_scanned(flat, cfg, dst_prefix)
  order = key_order if key_order is not None else official_keys(cfg, prefix)
  return common.from_flat(flat, rules(cfg, prefix, dst_prefix), order)


def from_phi_pretrained(sd: Mapping[str, np.ndarray], cfg: PhiConfig, *, seed: int = 0,
                        initializer_range: float = 0.02, prefix: str = "") -> dict[str, np.ndarray]:
  """An original Phi-1.5 state dict → what Show-o's ``load_from_showo=False`` constructor holds.

  Adds unit/zero QK-LayerNorms (``nn.LayerNorm`` defaults) and resizes embeddings / lm_head to
  ``cfg.vocab_size`` (kept rows unchanged; new rows ~ N(0, initializer_range) as HF ``_init_weights``;
  new lm_head bias entries zero). HF's random rows cannot be reproduced bitwise: they come from ``seed``.
  """
  out = add_qk_layernorm(sd, cfg, prefix) if cfg.qk_layernorm else dict(sd)
  rng = np.random.default_rng(seed)
  n = cfg.vocab_size
  for key in (f"{prefix}model.embed_tokens.weight", f"{prefix}lm_head.weight"):
    w = out[key]
    if w.shape[0] < n:
      extra = rng.normal(0.0, initializer_range, (n - w.shape[0], w.shape[1])).astype(w.dtype)
      out[key] = np.concatenate([w, extra], axis=0)
    else:
      out[key] = w[:n]
  b = out[f"{prefix}lm_head.bias"]
  out[f"{prefix}lm_head.bias"] = np.concatenate([b, np.zeros(n - b.shape[0], b.dtype)]) if b.shape[0] < n else b[:n]
  return out


def add_qk_layernorm(sd: Mapping[str, np.ndarray], cfg: PhiConfig, prefix: str = "") -> dict[str, np.ndarray]:
  """Insert default (weight 1, bias 0) ``q_layernorm``/``k_layernorm`` entries where they are missing."""
  out = dict(sd)
  for i in range(cfg.num_hidden_layers):
    for name in ("q_layernorm", "k_layernorm"):
      base = f"{prefix}model.layers.{i}.self_attn.{name}"
      out.setdefault(base + ".weight", np.ones(cfg.dim_head, np.float32))
      out.setdefault(base + ".bias", np.zeros(cfg.dim_head, np.float32))
  return out
