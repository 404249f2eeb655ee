"""Explicit table of convertible models, used by ``launch/convert.py`` and the loaders.

Each entry builds the model config (from a preset name, or from an HF/fixture ``config.json`` dict) and
knows how to convert an official state dict to our flat parameter dict and back.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Entry:
  make_config: Callable[..., Any]            # (preset or None, json dict or None, **overrides) -> config
  build: Callable[[Any], Any]                # config -> nnx.Module (use under nnx.eval_shape for shapes)
  to_flat: Callable[[dict, Any], dict]       # (official state dict, config) -> {our path: array}
  from_flat: Callable[[dict, Any, list], dict]  # (our flat, config, official key order) -> state dict


def _qwen2() -> Entry:
  from flax import nnx
  from showo_jax.convert import qwen2 as cq
  from showo_jax.models.qwen2 import PRESETS, Qwen2Config, Qwen2ForCausalLM

  def make_config(preset=None, cfg_json=None, **kw):
    if cfg_json is not None:
      return Qwen2Config.from_hf(cfg_json.get("qwen2_config", cfg_json), **kw)
    return PRESETS[preset or "qwen2_5_1_5b"](**kw)

  return Entry(make_config, lambda c: Qwen2ForCausalLM(c, rngs=nnx.Rngs(0)),
               lambda sd, c: cq.to_flat(cq.resize_vocab(sd, c.vocab_size), c),
               lambda flat, c, keys: cq.from_flat(flat, c, keys))


# name -> factory (imported lazily so one model's converter never imports the others).
MODELS: dict[str, Callable[[], Entry]] = {
    "qwen2": _qwen2,
}


def get(name: str) -> Entry:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r} for conversion; known: {sorted(MODELS)}")
  return MODELS[name]()
