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


def _showo2() -> Entry:
  from flax import nnx
  from showo_jax.convert import showo2 as cs
  from showo_jax.models.showo2 import Showo2, Showo2Config

  def make_config(preset=None, cfg_json=None, **kw):
    if cfg_json is not None:
      return Showo2Config.from_fixture(cfg_json, **kw)
    return {"showo2_1_5b": Showo2Config.showo2_1_5b, "showo2_7b": Showo2Config.showo2_7b,
            "tiny": Showo2Config.tiny}[preset or "showo2_1_5b"](**kw)

  return Entry(make_config, lambda c: Showo2(c, rngs=nnx.Rngs(0)), cs.to_flat,
               lambda flat, c, keys: cs.from_flat(flat, c, keys))


def _wan_vae() -> Entry:
  from flax import nnx
  from showo_jax.convert import wan_vae as cw
  from showo_jax.models.wan_vae import WanVAE, WanVAEConfig

  def make_config(preset=None, cfg_json=None, **kw):
    kw.pop("scan_layers", None)  # the VAE has no layer stack
    if cfg_json is not None:
      return WanVAEConfig.from_fixture(cfg_json, **kw)
    return {"wan2_1": WanVAEConfig.wan2_1, "tiny": WanVAEConfig.tiny}[preset or "wan2_1"](**kw)

  return Entry(make_config, lambda c: WanVAE(c, rngs=nnx.Rngs(0)), lambda sd, c: cw.to_flat(sd),
               lambda flat, c, keys: cw.from_flat(flat, keys))


def _showo() -> Entry:
  from flax import nnx
  from showo_jax.convert import showo as cv
  from showo_jax.models.showo import Showo, ShowoConfig

  def make_config(preset=None, cfg_json=None, **kw):
    if cfg_json is not None:
      return ShowoConfig.from_fixture(cfg_json, **kw)
    return {"show_o": ShowoConfig.show_o, "show_o_512x512": ShowoConfig.show_o_512x512,
            "show_o_w_clip_vit": ShowoConfig.show_o_w_clip_vit, "tiny": ShowoConfig.tiny}[preset or "show_o"](**kw)

  return Entry(make_config, lambda c: Showo(c, rngs=nnx.Rngs(0)), cv.to_flat,
               lambda flat, c, keys: cv.from_flat(flat, c))


def _magvit2() -> Entry:
  from flax import nnx
  from showo_jax.convert import magvit2 as cm
  from showo_jax.models.magvit2 import MAGVITv2, MAGVITv2Config

  def make_config(preset=None, cfg_json=None, **kw):
    kw.pop("scan_layers", None)
    if cfg_json is not None:
      return MAGVITv2Config.from_fixture(cfg_json, **kw)
    return {"magvitv2": MAGVITv2Config.magvitv2, "tiny": MAGVITv2Config.tiny}[preset or "magvitv2"](**kw)

  return Entry(make_config, lambda c: MAGVITv2(c, rngs=nnx.Rngs(0)), cm.to_flat,
               lambda flat, c, keys: cm.from_flat(flat, c))


# name -> factory (imported lazily so one model's converter never imports the others).
MODELS: dict[str, Callable[[], Entry]] = {
    "qwen2": _qwen2,
    "showo2": _showo2,
    "wan_vae": _wan_vae,
    "showo": _showo,
    "magvit2": _magvit2,
}


def get(name: str) -> Entry:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r} for conversion; known: {sorted(MODELS)}")
  return MODELS[name]()
