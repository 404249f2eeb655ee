"""Attention masks: one representation for every model family and every attention backend.

Polarity: ``True`` means *may attend*. A mask is a :class:`MaskSpec`: per query row ``i`` the allowed keys
are exactly the contiguous range ``[k_start[i], k_end[i])``, intersected with "same segment" when
``segment_ids`` are given (packing / padding). This compact form is what block-skipping kernels (Splash,
tokamax) consume; :func:`dense` expands it to a ``[b, l, s]`` boolean array for the XLA reference path.

Show-o2 omni-attention (spec §5): ``allowed(q, k) = k <= q  OR  (q, k both inside one visual block)``.
For a query inside block ``[o, o+l)`` the allowed keys are ``[0, o+l)``; for any other query ``[0, q+1)``.
Blocks never overlap in valid layouts, so the union is a single range and ``k_end = max(q+1, ends of
the blocks that contain q)``. ``(0, 0)`` rows of ``modality_positions`` are inert (empty range).

Show-o v1 (spec showo.md) uses the same machinery: causal text plus a full image block (t2i), a full
prefix of image tokens (MMU), or all-full attention; see :func:`prefix_full`, :func:`full`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

from showo_jax.types import ModalityPositions


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """Per-query key ranges ``[k_start, k_end)`` (``[b, l]`` each) plus optional segment ids.

  ``q_offset`` shifts query indices when the queries are a suffix of the keys (KV-cache decoding):
  query row ``i`` then sits at absolute position ``q_offset + i``; k_start/k_end are absolute.
  """
  k_start: Int[Array, "b l"]
  k_end: Int[Array, "b l"]
  segment_ids_q: Int[Array, "b l"] | None = None
  segment_ids_kv: Int[Array, "b s"] | None = None

  @property
  def shape(self):
    return self.k_start.shape


def causal(batch: int, length: int) -> MaskSpec:
  """Plain causal mask."""
  q = jnp.arange(length, dtype=jnp.int32)
  return MaskSpec(jnp.zeros((batch, length), jnp.int32), jnp.broadcast_to(q + 1, (batch, length)))


def full(batch: int, length: int) -> MaskSpec:
  """Every query sees every key (v1 ``full`` mask)."""
  return MaskSpec(jnp.zeros((batch, length), jnp.int32), jnp.full((batch, length), length, jnp.int32))


def omni(modality_positions: ModalityPositions, length: int) -> MaskSpec:
  """Show-o2 omni mask from ``modality_positions [b, m, 2]`` (offset, length)."""
  mp = jnp.asarray(modality_positions, jnp.int32)
  off, ln = mp[..., 0], mp[..., 1]  # [b, m]
  q = jnp.arange(length, dtype=jnp.int32)
  inside = (q[None, None, :] >= off[..., None]) & (q[None, None, :] < (off + ln)[..., None]) & (ln[..., None] > 0)
  block_end = jnp.max(jnp.where(inside, (off + ln)[..., None], 0), axis=1)  # [b, l]
  k_end = jnp.maximum(q[None, :] + 1, block_end)
  return MaskSpec(jnp.zeros_like(k_end), k_end)


def prefix_full(batch: int, length: int, prefix_len: Int[Array, "b"] | int) -> MaskSpec:
  """Full attention inside the first ``prefix_len`` positions, causal afterwards (prefix-LM)."""
  q = jnp.arange(length, dtype=jnp.int32)
  p = jnp.broadcast_to(jnp.asarray(prefix_len, jnp.int32), (batch,))
  k_end = jnp.maximum(q[None, :] + 1, jnp.where(q[None, :] < p[:, None], p[:, None], 0))
  return MaskSpec(jnp.zeros((batch, length), jnp.int32), k_end)


def blocks(block_ranges: Int[Array, "b m 2"], length: int) -> MaskSpec:
  """Causal plus full attention inside ``[start, end)`` blocks (v1 t2i / MMU layouts)."""
  br = jnp.asarray(block_ranges, jnp.int32)
  return omni(jnp.stack([br[..., 0], br[..., 1] - br[..., 0]], axis=-1), length)


def with_segments(spec: MaskSpec, segment_ids: Int[Array, "b l"]) -> MaskSpec:
  """AND a same-segment constraint (packing, or padding with a distinct pad segment)."""
  return dataclasses.replace(spec, segment_ids_q=segment_ids, segment_ids_kv=segment_ids)


def dense(spec: MaskSpec, kv_length: int | None = None, q_offset: int | jax.Array = 0) -> Bool[Array, "b l s"]:
  """Expand to a boolean ``[b, l, s]`` mask (the XLA reference form)."""
  s = kv_length if kv_length is not None else spec.k_start.shape[1]
  k = jnp.arange(s, dtype=jnp.int32)[None, None, :]
  m = (k >= spec.k_start[..., None]) & (k < spec.k_end[..., None])
  if spec.segment_ids_q is not None:
    m = m & (spec.segment_ids_q[:, :, None] == spec.segment_ids_kv[:, None, :])
  return m


def slice_queries(spec: MaskSpec, start: int | jax.Array, size: int) -> MaskSpec:
  """Rows ``[start, start+size)`` of a mask (key ranges stay absolute): used for cached decoding."""
  sl = lambda a: None if a is None else jax.lax.dynamic_slice_in_dim(a, start, size, axis=1)
  return MaskSpec(sl(spec.k_start), sl(spec.k_end), sl(spec.segment_ids_q), spec.segment_ids_kv)


def omni_dense_reference(modality_positions: np.ndarray, length: int) -> np.ndarray:
  """The official ``omni_attn_mask_naive`` in numpy (tril, then fill each block square): test oracle."""
  mp = np.asarray(modality_positions)
  b = mp.shape[0]
  m = np.tril(np.ones((b, length, length), bool))
  for i in range(b):
    for off, ln in mp[i]:
      if ln > 0:
        m[i, off:off + ln, off:off + ln] = True
  return m


def block_ids(modality_positions: ModalityPositions, length: int) -> Int[Array, "b l"]:
  """Second equivalent form: all tokens of a block share an id, text tokens get increasing ids;
  then ``mask = blk_q >= blk_kv``. Used by kernels that prefer a comparison to key ranges."""
  spec = omni(modality_positions, length)
  # A position's id is the first query index that can see it: the block start for block tokens.
  q = jnp.arange(length, dtype=jnp.int32)
  mp = jnp.asarray(modality_positions, jnp.int32)
  off, ln = mp[..., 0], mp[..., 1]
  inside = (q[None, None, :] >= off[..., None]) & (q[None, None, :] < (off + ln)[..., None]) & (ln[..., None] > 0)
  start = jnp.min(jnp.where(inside, off[..., None], length), axis=1)
  del spec
  return jnp.minimum(start, q[None, :])
