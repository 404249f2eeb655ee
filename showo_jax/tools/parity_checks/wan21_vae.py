"""Parity: the Wan2.1 3D causal VAE (``WanVAE_`` weights through the ``WanVAE`` wrapper), tiny width.

Every comparable output of the fixture: raw ``mu`` / ``log_var`` / encoder output (``scale = [0, 1]``),
normalised latents (deterministic ``sample``), decodes of the fixture's latents (clamped ``batch_decode``
and unclamped ``WanVAE_.decode``), the decode of a random 2-frame latent, and the latent constants. The
5-frame outputs are checked under both temporal schedules (``chunked`` = the reference's chunk loop with
feature caches; ``full.`` = the closed form of spec §6.5); one frame is the same 2-D path under both.
``latent_sampled_1f_seed23_torchrng`` depends on torch's RNG and is reference-only. Fixture arrays are
``(B, C, T, H, W)``; ours are channels-last.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax.convert import wan_vae as convert_wan_vae
from showo_jax.models.wan_vae import WanVAE, WanVAEConfig
from showo_jax.tools.parity import TIGHT, compare, load_fixture

REFERENCE_ONLY = ("latent_sampled_1f_seed23_torchrng",)


def build(cfg_json: dict, **kw) -> tuple[WanVAEConfig, WanVAE]:
  """An abstract model (no random init: eager init compiles a program per parameter shape); load weights."""
  cfg = WanVAEConfig.from_fixture(cfg_json, **kw)
  return cfg, nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0)))


def to_channels_last(a) -> jnp.ndarray:
  return jnp.asarray(np.moveaxis(np.asarray(a), 1, -1))


def to_channels_first(a) -> np.ndarray:
  return np.moveaxis(np.asarray(a), -1, 1)


def _outputs(graphdef, state, video_1f, video_5f, latent_1f, latent_5f, latent_rand):
  """Every compared output in one program (compiling once beats op-by-op dispatch here).

  One frame runs the same 2-D path under both schedules, so 1-frame outputs are computed once; the two
  2-frame latents are decoded as one batch of 2 (the VAE is per-sample).
  """
  model = nnx.merge(graphdef, state)
  res = {}

  def encode(tag, clip, x, chunked):
    mu, log_var, enc_out = model.encode_raw(x, chunked=chunked)
    res[f"{tag}mu_raw_{clip}"], res[f"{tag}log_var_{clip}"], res[f"{tag}encoder_out_{clip}"] = mu, log_var, enc_out
    res[f"{tag}latent_norm_{clip}"] = model.sample(x, deterministic=True, chunked=chunked)

  def decode(tag, names, z, chunked):
    # The fixture decodes its own latents; decoding ours would fold the encode error in as well.
    # decode(clamp=True) is exactly clip(decode(clamp=False)) (tests/models/test_wan_vae.py); clipping here
    # avoids tracing the decoder twice.
    raw = model.decode(z, clamp=False, chunked=chunked)
    for i, name in enumerate(names):
      res[f"{tag}decoded_unclamped_{name}"] = raw[i:i + 1] if len(names) > 1 else raw
      res[f"{tag}decoded_{name}"] = jnp.clip(res[f"{tag}decoded_unclamped_{name}"], -1.0, 1.0)

  encode("", "1f", video_1f, True)
  decode("", ("1f",), latent_1f, True)
  for tag, chunked in (("", True), ("full.", False)):
    encode(tag, "5f", video_5f, chunked)
    decode(tag, ("5f", "rand_2t"), jnp.concatenate([latent_5f, latent_rand]), chunked)
  return res


def run(fixture_dir: str, compiler_options: dict | None = None):
  """Yield the comparisons; ``compiler_options`` go to ``jax.jit`` (tests lower the LLVM opt level to
  compile faster; the tool uses the defaults)."""
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  cfg, model = build(cfg_json)
  convert_wan_vae.load_into(model, sd)
  mean, inv_std = model.latent_stats()
  yield compare("latents_mean", mean, out["latents_mean"], atol=TIGHT)
  yield compare("latents_std", 1.0 / np.asarray(inv_std, np.float64), out["latents_std"], atol=TIGHT)
  graphdef, state = nnx.split(model)
  args = [to_channels_last(a) for a in (inp["video_1f"], inp["video_5f"], out["latent_norm_1f"],
                                        out["latent_norm_5f"], inp["latent_rand_2t"])]
  fn = jax.jit(_outputs, static_argnums=0, compiler_options=compiler_options)
  res = fn(graphdef, state, *args)
  compared = {"latents_mean", "latents_std"}
  for name, ours in res.items():
    ref = name.removeprefix("full.")
    if ref in out:  # the fixture has no unclamped decode of the random latent
      compared.add(ref)
      yield compare(name, to_channels_first(ours), out[ref])
  missing = set(out) - compared - set(REFERENCE_ONLY)
  if missing:  # a new fixture output must get a comparison (or be declared reference-only)
    raise ValueError(f"fixture outputs not compared: {sorted(missing)}")
