"""Parity: ``ShowoSemanticLayers`` (PatchEmbed + position table + SigLIP layers; distillation loss)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax.convert import common, showo2 as convert_showo2
from showo_jax.models.fusion import SemanticLayersConfig, ShowoSemanticLayers, distill_loss
from showo_jax.tools.parity import compare, load_fixture


def build(cfg_json: dict, sd, **policy) -> tuple[SemanticLayersConfig, ShowoSemanticLayers]:
  cfg = SemanticLayersConfig.from_fixture(cfg_json, **policy)
  model = nnx.eval_shape(lambda: ShowoSemanticLayers(cfg, rngs=nnx.Rngs(0)))
  flat = common.to_flat(sd, convert_showo2.semantic_layers_rules())
  if cfg.semantic.scan_layers:
    flat = common.stack_layers(flat, "und_trans.layers")
  common.load_into(model, flat)
  return cfg, model


@nnx.jit
def forward(model, latents, clip):
  emb = model(latents)
  return (emb,) + distill_loss(emb, clip)


def run(fixture_dir: str):
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  latents = jnp.asarray(np.moveaxis(inp["image_latents"], 1, -1))  # NCHW → NHWC
  for scan in (False, True):
    tag = "scan." if scan else ""
    _, model = build(cfg_json, sd, scan_layers=scan)
    emb, feats, loss = forward(model, latents, jnp.asarray(inp["clip_features"]))
    yield compare(tag + "image_embeds_und", emb, out["image_embeds_und"])
    yield compare(tag + "image_embeds_und_flat_normalized", feats, out["image_embeds_und_flat_normalized"])
    yield compare(tag + "distill_loss", loss, out["distill_loss"])
