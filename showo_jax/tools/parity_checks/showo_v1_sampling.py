"""Parity: Show-o v1 ``models/sampling.py`` helpers — mask schedules, MaskGIT mask ratios and
``floor(N·ratio)`` (exact), ``mask_by_random_topk`` at temperature 0, ``top_k_top_p_filtering``, clamped log."""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from showo_jax import maskgit
from showo_jax.tools.parity import TIGHT, compare, load_fixture


def run(fixture_dir: str):
  _, inp, out, _ = load_fixture(fixture_dir)
  t = jnp.asarray(inp["t"])
  for name in ("cosine", "linear", "pow2", "sigmoid"):
    fn = maskgit.get_mask_schedule(name)
    yield compare(f"{name}_schedule", fn(t), out[f"{name}_schedule"], atol=TIGHT)
  cos = maskgit.get_mask_schedule("cosine")
  for key in sorted(out):
    m = re.fullmatch(r"maskgit_mask_ratio_N(\d+)_T(\d+)", key)
    if not m:
      continue
    n, steps = int(m.group(1)), int(m.group(2))
    # The sampler's per-step ratio is torch.tensor((step+1)/T) (float32), then floor(N * γ(ratio)).
    ratio = jnp.asarray(np.asarray([(s + 1) / steps for s in range(steps)], np.float32))
    yield compare(key, cos(ratio), out[key], atol=TIGHT)
    lens, _ = maskgit._step_constants(steps, n, 1.0, cos)
    yield compare(f"maskgit_floor_N_times_ratio_N{n}_T{steps}", lens,
                  out[f"maskgit_floor_N_times_ratio_N{n}_T{steps}"], exact=True)
  probs = jnp.asarray(inp["mbrt_probs"])
  zeros = jnp.zeros_like(probs)   # temperature 0: the noise does not matter
  yield compare("mask_by_random_topk_temp0",
                maskgit.mask_by_random_topk(jnp.asarray(inp["mbrt_mask_len"]), probs, 0.0, zeros),
                out["mask_by_random_topk_temp0"], exact=True)
  # ...and with noise at temperature 0 multiplied away (0 * finite gumbel) it is the same mask.
  g = maskgit.gumbel_noise(jax.random.key(0), probs.shape)
  yield compare("mask_by_random_topk_temp0_noise",
                maskgit.mask_by_random_topk(jnp.asarray(inp["mbrt_mask_len"]), probs, 0.0, g),
                out["mask_by_random_topk_temp0"], exact=True)
  logits = jnp.asarray(inp["filter_logits"])
  for key, kw in (("top_k_top_p_filtering_k5", dict(top_k=5)), ("top_k_top_p_filtering_p0.8", dict(top_p=0.8)),
                  ("top_k_top_p_filtering_k10_p0.9", dict(top_k=10, top_p=0.9))):
    ours = np.asarray(maskgit.top_k_top_p_filtering(logits, **kw))
    ref = out[key]
    yield compare(key + ".kept", np.isfinite(ours), np.isfinite(ref), exact=True)
    yield compare(key + ".values", np.where(np.isfinite(ours), ours, 0), np.where(np.isfinite(ref), ref, 0), atol=TIGHT)
  # The fixture does not store the input of log_clamped; these values reproduce its outputs: two values
  # at or below the 1e-20 clamp, 1e-5, 0.5 and 1.
  yield compare("log_clamped", maskgit.log_clamped(jnp.asarray([0.0, 1e-30, 1e-5, 0.5, 1.0], jnp.float32)),
                out["log_clamped"], atol=TIGHT)
