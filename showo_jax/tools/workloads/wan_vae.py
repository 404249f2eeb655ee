"""Wan2.1 VAE round trips at real width (dim 96), random weights, float32; shapes from ``official_cpu.json``.

* ``wan_vae_image``: ``[2, 128, 128, 3]`` images (one frame) → deterministic ``sample`` → ``batch_decode``.
  A single frame runs as a 2-D VAE (spec §6.5), which is most of the gap to the official 3-D run.
* ``wan_vae_video``: one ``[9, 64, 64, 3]`` clip, same round trip with the reference chunk schedule
  (``lax.scan`` over chunks); the sub-workload ``full_sequence`` times the closed-form schedule.

The whole round trip is one ``jax.jit``; ``run`` blocks on the decoded output.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax.convert import common
from showo_jax.models.wan_vae import WanVAE, WanVAEConfig
from showo_jax.tools.bench import Workload

SHAPES = {
    # (batch, frames, height, width) — official (B, 3, T, H, W)
    "wan_vae_image": (2, 1, 128, 128),
    "wan_vae_video": (1, 9, 64, 64),
}


def _round_trip(model: WanVAE, x: jax.Array, temporal_mode: str) -> Workload:
  graphdef, state = nnx.split(model)
  chunked = temporal_mode == "chunked"

  @jax.jit
  def step(state, x):
    m = nnx.merge(graphdef, state)
    z = m.sample(x, deterministic=True, chunked=chunked)
    return m.decode(z, chunked=chunked)

  b, t, h, w, _ = x.shape
  lat = (b, 1 + (t - 1) // 4, h // 8, w // 8, model.cfg.z_dim)
  shapes = {"video": list(x.shape), "latent": list(lat), "layout": "b t h w c", "dtype": model.cfg.dtype,
            "temporal_mode": temporal_mode, "what": "sample(deterministic=True) then decode (clamped)"}
  return Workload(run=lambda: jax.block_until_ready(step(state, x)), shapes=shapes)


def random_model(cfg: WanVAEConfig, seed: int = 0) -> WanVAE:
  """Random weights like the parity fixtures' (kernels N(0, 1/fan_in), gammas 1+0.1·N, biases 0.05·N),
  drawn with numpy into an abstract model: an eager ``nnx.Rngs`` init compiles one program per shape."""
  model = nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(seed)
  flat = {}
  for path, shape in common.flat_shapes(model).items():
    if path.endswith("gamma"):
      v = 1.0 + 0.1 * rng.standard_normal(shape, np.float32)
    elif path.endswith("bias"):
      v = 0.05 * rng.standard_normal(shape, np.float32)
    else:
      v = rng.standard_normal(shape, np.float32) / np.float32(np.sqrt(np.prod(shape[:-1])))
    flat[path] = v
  return common.load_into(model, flat)


def build(name: str = "wan_vae_image") -> Workload:
  if name not in SHAPES:
    raise ValueError(f"unknown wan_vae workload {name!r}; known: {sorted(SHAPES)}")
  b, t, h, w = SHAPES[name]
  model = random_model(WanVAEConfig.wan2_1())
  x = jax.random.uniform(jax.random.key(1), (b, t, h, w, 3), jnp.float32, -1.0, 1.0)
  main = _round_trip(model, x, "chunked")
  if t > 1:
    main.sub = {"full_sequence": _round_trip(model, x, "full")}
  return main
