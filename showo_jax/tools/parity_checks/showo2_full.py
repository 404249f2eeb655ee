"""Parity: the full Show-o2 model (``Showo2Qwen2_5``, tiny, tied) on the ``showo2_full`` fixture.

Scenarios checked here: ``t2i``, ``train`` (logits, ``loss_ntp``, ``loss_flow``), ``video``, ``dynres`` (with the
interpolated position table), each with its 13 hook intermediates, plus ``text_only`` and ``cfg``
(``v_u + g·(v_c − v_u)`` on the t2i forward). ``ode`` and ``mmu_infer`` are sampler scenarios and are checked by
the sampling module's own check, not here. The fixture's additive masks are compared to our key-range masks
exactly before the model runs with the MaskSpec. Arrays are NCHW at this boundary only.
"""
from __future__ import annotations

import dataclasses
import functools

import jax

import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax import losses, masks
from showo_jax.convert import showo2 as convert_showo2
from showo_jax.models.showo2 import Showo2Config
from showo_jax.tools.parity import TIGHT, compare, load_fixture

SCENARIOS = ("t2i", "train", "video", "dynres", "text_only", "cfg")


def build(cfg_json: dict, sd, **policy) -> tuple[Showo2Config, Showo2]:
  cfg = Showo2Config.from_fixture(cfg_json, **policy)
  return cfg, convert_showo2.load_model(sd, cfg)


def to_nhwc(x: np.ndarray) -> np.ndarray:
  """NCHW / NCTHW → channels-last."""
  return np.moveaxis(x, 1, -1)


def to_nchw(x) -> np.ndarray:
  return np.moveaxis(np.asarray(x), -1, 1)


@nnx.jit(static_argnames=("return_intermediates",))
def forward(model, tokens, latents, t, mp, return_intermediates=True):
  # Default mask: omni(modality_positions) (causal for text-only), built inside the jit; it is checked
  # against the fixture's additive mask by ``mask_of`` first.
  return model(tokens, latents, t, mp, return_intermediates=return_intermediates)


@functools.partial(jax.jit, static_argnames=("p",))
def train_losses(logits, v_tokens, text_labels, ut, image_masks, mp, p):
  """``loss_ntp`` (shifted CE) and ``loss_flow`` (MSE over image tokens, time slots excluded)."""
  targets = losses.place_targets(losses.patchify_targets(ut, p), mp, v_tokens.shape[1])
  loss_flow, _ = losses.flow_loss(v_tokens, targets, losses.flow_token_mask(image_masks, mp))
  loss_ntp, _ = losses.ntp_loss(logits, text_labels)
  return loss_ntp, loss_flow


def mask_of(inp, s, mp, length):
  spec = masks.omni(jnp.asarray(mp), length) if mp is not None else masks.causal(inp[f"{s}.text_tokens"].shape[0], length)
  ref = inp[f"{s}.attention_mask"]
  ref = (ref.reshape(ref.shape[0], length, length) == 0)
  return spec, compare(f"{s}.attention_mask", masks.dense(spec), ref, exact=True)


def run_scenario(model, cfg: Showo2Config, s: str, inp, out):
  tokens = jnp.asarray(inp[f"{s}.text_tokens"])
  b, l = tokens.shape
  if s == "text_only":
    _, c = mask_of(inp, s, None, l)
    yield c
    res = forward(model, tokens, None, None, None, return_intermediates=False)
    yield compare(f"{s}.logits", res.logits, out[f"{s}.logits"])
    return
  lat_key = f"{s}.image_latents_xt" if s == "train" else f"{s}.image_latents"
  latents = jnp.asarray(to_nhwc(inp[lat_key]))
  mp = inp[f"{s}.modality_positions"]
  _, c = mask_of(inp, s, mp, l)
  yield c
  res = forward(model, tokens, latents, jnp.asarray(inp[f"{s}.t"]), jnp.asarray(mp))
  if s == "cfg":
    g = float(inp["cfg.guidance_scale"])
    v_c, v_u = jnp.split(res.v_pred, 2)
    v = v_u + g * (v_c - v_u)
    yield compare("cfg.v_guided", to_nchw(jnp.concatenate([v, v])), out["cfg.v_guided"])
    return
  yield compare(f"{s}.logits", res.logits, out[f"{s}.logits"])
  if s == "train":
    loss_ntp, loss_flow = train_losses(res.logits, res.v_tokens, jnp.asarray(inp["train.text_labels"]),
                                       jnp.asarray(to_nhwc(inp["train.image_labels_ut"])),
                                       jnp.asarray(inp["train.image_masks"]), jnp.asarray(mp), cfg.patch_size)
    yield compare("train.loss_ntp", loss_ntp, out["train.loss_ntp"])
    yield compare("train.loss_flow", loss_flow, out["train.loss_flow"])
  else:
    yield compare(f"{s}.v_pred", to_nchw(res.v_pred), out[f"{s}.v_pred"])
  for name, ours in res.intermediates.items():
    key = f"{s}.inter.{name}"
    if key in out:
      yield compare(key, ours, out[key])
  if s == "dynres":
    yield compare("dynres.interpolated_pos_embed", res.intermediates["position_embeds"][None],
                  out["dynres.interpolated_pos_embed"], atol=TIGHT)


def run(fixture_dir: str, scenarios=SCENARIOS, **policy):
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  cfg, model = build(cfg_json, sd, **policy)
  for s in scenarios:
    if s == "dynres":
      # The fixture's dynres model differs only in its config grid (h_ × w_ of the input != the 4×4 table),
      # which sends upstream down the bicubic-interpolation branch.
      h, w = inp["dynres.image_latents"].shape[-2:]
      dcfg = dataclasses.replace(cfg, image_latent_height=h // cfg.patch_size, image_latent_width=w // cfg.patch_size)
      yield from run_scenario(convert_showo2.load_model(sd, dcfg), dcfg, s, inp, out)
    else:
      yield from run_scenario(model, cfg, s, inp, out)
  # The sampler scenarios (`ode`, `mmu_infer`) live with the samplers; imported here lazily because that
  # module builds its model through this one.
  from showo_jax.tools.parity_checks import showo2_full_sampling
  yield from showo2_full_sampling.run_scenarios(fixture_dir, **policy)
