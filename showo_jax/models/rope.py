"""Rotary position embeddings, HF ``rotate_half`` convention (split halves, ``[-x2, x1]``).

* Qwen2: default RoPE, theta 1e6, full head dim.
* Show-o2 flow head: llama3-scaled RoPE (theta 5e5, factor 32, low 1, high 4, original 8192).
* Phi-1.5 (Show-o v1): partial rotary on the first ``rotary_dim`` channels of each head.

cos/sin are computed in float32 (``inv_freq ⊗ positions``, duplicated halves) and cast to the activation
dtype before rotating, as the reference does.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  head_dim: int
  theta: float = 1e6
  rotary_dim: int | None = None  # partial rotary (Phi); None = head_dim
  # llama3 scaling (None = plain RoPE)
  llama3_factor: float | None = None
  llama3_low_freq_factor: float = 1.0
  llama3_high_freq_factor: float = 4.0
  llama3_original_max_position: int = 8192


def inv_freq(cfg: RopeConfig) -> np.ndarray:
  """Inverse frequencies (float32 numpy, length rotary_dim/2), llama3-scaled when configured."""
  dim = cfg.rotary_dim or cfg.head_dim
  inv = 1.0 / (cfg.theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
  inv = inv.astype(np.float32)
  if cfg.llama3_factor is not None:
    factor, lo, hi = cfg.llama3_factor, cfg.llama3_low_freq_factor, cfg.llama3_high_freq_factor
    old = cfg.llama3_original_max_position
    low_wavelen, high_wavelen = old / lo, old / hi
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    inv = np.where(is_medium, smoothed, scaled).astype(np.float32)
  return inv


def cos_sin(cfg: RopeConfig, positions: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
  """``positions [..., l]`` (int) → cos, sin ``[..., l, rotary_dim]`` in ``dtype``."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq(cfg))
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return _materialized(jnp.cos(emb).astype(dtype)), _materialized(jnp.sin(emb).astype(dtype))


def _materialized(table: jax.Array) -> jax.Array:
  """``table``, computed once into a buffer instead of fused into its consumers.

  XLA fuses the cos/sin producers into every consumer, so each layer's q and k rotation (forward and
  backward) recomputes them for every head: on XLA:CPU those 16 fusions took ~10% of the v1 train step.
  ``optimization_barrier`` does not stop it (XLA:CPU expands barriers before fusion); a scatter of the rows
  onto zeros is an exact identity that XLA neither simplifies away nor fuses into its consumers.
  """
  rows = jnp.arange(table.shape[-2])
  return jnp.zeros_like(table).at[..., rows, :].set(table, unique_indices=True, indices_are_sorted=True)


def rotate_half(x: jax.Array) -> jax.Array:
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotate ``x [b, l, n, e]`` with ``cos/sin [b or 1, l, r]``; channels past ``r`` pass through."""
  r = cos.shape[-1]
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  if r == x.shape[-1]:
    return x * cos + rotate_half(x) * sin
  rot, rest = x[..., :r], x[..., r:]
  return jnp.concatenate([rot * cos + rotate_half(rot) * sin, rest], axis=-1)
