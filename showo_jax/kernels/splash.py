"""TPU Splash attention with the Show-o2 omni mask (``attention.dot_product_attention(impl="splash")``).

Splash masks are static per head and shared across the batch, and ``segment_ids`` can only AND in equality
(STACK.md §5), while the omni mask is per example. Two routes, picked from the mask itself:

* **static** (fixed layout per task): when every array of the :class:`~showo_jax.masks.MaskSpec` is concrete
  (numpy, or jax arrays built under ``jax.ensure_compile_time_eval()``) and all batch rows share one layout,
  the key ranges become one ``NumpyMask``; its block tables are computed once at trace time, so fully masked
  blocks are skipped and fully visible blocks run without reading a mask.
* **dynamic** (variable layout, the mask is a tracer): each example's key ranges are expanded into a
  ``[l, s]`` boolean mask and turned into block tables inside the step by tokamax's dynamic Splash
  (``make_dynamic_splash_mha``), vmapped over the local batch. Fully masked blocks are still skipped; partial
  blocks read an int8 tile. JAX's own ``make_splash_mha(mask=jax.Array)`` would be the obvious choice, but in
  jax 0.10.2 it fails under ``jit``/``vmap`` (``MaskInfo.is_dynamic_mask`` becomes an array and is branched
  on: jax-ml/jax#37179), hence tokamax's copy.

Segment ids (packing / padding) go to the kernel as ``SegmentIds`` in both routes. Lengths that are not a
multiple of 128 (the lane width, the smallest Splash block) are padded: padded keys are outside every
query's range, padded query rows attend to key 0 only (finite, then sliced off).

Sharding: under :func:`showo_jax.sharding.use_mesh` the kernel runs inside ``shard_map`` with the batch over
the ``act_batch`` axes and heads over the ``act_heads`` axis (when both the query and KV head counts
divide); forward and backward (the kernel's own ``custom_vjp``) run per shard without communication.

The kernel runs in Pallas interpret mode on every platform but TPU (the mesh's devices decide, so an AOT
compile for a TPU topology from a CPU host lowers the real Mosaic kernel). Kernel reference:
tokamax 0.0.12 ``_src/ops/experimental/tpu/splash_attention``.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float

from showo_jax import masks as masks_lib
from showo_jax.kernels import common
from tokamax._src.ops.experimental.tpu.splash_attention import splash_attention_kernel as sk
from tokamax._src.ops.experimental.tpu.splash_attention import splash_attention_mask as sm

LANES = 128  # Splash block sizes must be multiples of the TPU lane width.
MAX_BLOCK = 512  # MaxText's default Splash tile on v5p/v6e.


@dataclasses.dataclass(frozen=True)
class Options:
  """Execution knobs (numerics do not depend on them)."""
  max_block: int = MAX_BLOCK
  interpret: bool | None = None  # None: interpret unless the devices are TPUs
  static: bool | None = None     # None: static mask when the spec is concrete and batch-uniform


def attention(
    q: Float[Array, "b l n e"],
    k: Float[Array, "b s h e"],
    v: Float[Array, "b s h e"],
    spec: masks_lib.MaskSpec,
    *,
    scale: float | None = None,
    mesh: Mesh | None = None,
    options: Options = Options(),
) -> Float[Array, "b l n e"]:
  """Splash attention of ``q`` over ``k, v`` restricted to ``spec`` (GQA: head ``i`` uses KV head ``i // g``)."""
  b, l, n, e = q.shape
  s, kh = k.shape[1], k.shape[2]
  if n % kh:
    raise ValueError(f"{n} query heads are not a multiple of {kh} KV heads")
  scale = e ** -0.5 if scale is None else scale
  mesh, rules = common.resolve_mesh(mesh)
  interpret = options.interpret
  if interpret is None:
    interpret = common.platform_of(mesh) != "tpu"

  lp, sp = _round_up(l, LANES), _round_up(s, LANES)
  config = _config(lp, sp, options.max_block, interpret)
  static_mask = _static_mask(spec, lp, sp, l, s) if options.static is not False else None
  if options.static and static_mask is None:
    raise ValueError("static Splash mask requested but the MaskSpec is traced or differs across the batch")

  local = functools.partial(_local, l=l, s=s, scale=scale, config=config, static_mask=static_mask,
                            segmented=spec.segment_ids_q is not None)
  rows = (spec.k_start, spec.k_end, spec.segment_ids_q, spec.segment_ids_kv)
  return common.shard_batch_heads(local, mesh, rules, q, k, v, rows)


# ---------------------------------------------------------------------------------------------- per shard
def _local(q, k, v, k_start, k_end, seg_q, seg_kv, *, l, s, scale, config, static_mask, segmented):
  """Attention over this shard's examples and heads: pad, go heads-first, one kernel per example."""
  lp, sp = _round_up(l, LANES), _round_up(s, LANES)
  dt = q.dtype
  # Splash takes unscaled logits; scaling q (not the logits) is what MaxText does too.
  qh = jnp.swapaxes(_pad(q * jnp.asarray(scale, dt), lp, 1), 1, 2)  # [b, n, lp, e]
  kh = jnp.swapaxes(_pad(k, sp, 1), 1, 2)                             # [b, h, sp, e]
  vh = jnp.swapaxes(_pad(v, sp, 1), 1, 2)
  rows = jnp.arange(lp, dtype=jnp.int32)[None, :] >= l
  ks = jnp.where(rows, 0, _pad(k_start.astype(jnp.int32), lp, 1))
  ke = jnp.where(rows, 1, _pad(k_end.astype(jnp.int32), lp, 1))
  if segmented:
    # Padded query rows must see key 0: give them its segment. Padded keys are out of every range anyway.
    sq = jnp.where(rows, seg_kv[:, :1], _pad(seg_q.astype(jnp.int32), lp, 1))
    skv = _pad(seg_kv.astype(jnp.int32), sp, 1, value=-1)
  else:
    sq = skv = None

  if static_mask is not None:
    kernel = sk.make_splash_mha(sm.NumpyMask(static_mask), config=config, q_seq_shards=1)

    def one(q1, k1, v1, ks1, ke1, sq1, skv1):
      del ks1, ke1
      seg = None if sq1 is None else sk.SegmentIds(q=sq1, kv=skv1)
      return kernel(q1, k1, v1, seg)
  else:
    # tokamax 0.0.12's dynamic-grid backward (``dq_reduction_steps=3``, the only mode of the dynamic mask)
    # returns wrong dK/dV when several query heads share a KV head (GQA and MQA alike; measured in interpret
    # mode: dq exact, dk off by ~80 %). Give every query head its own KV copy there: the repeat's transpose
    # sums the per-head gradients back, at the cost of g-fold KV traffic inside the kernel.
    groups = qh.shape[1] // kh.shape[1]
    if groups > 1:
      kh, vh = jnp.repeat(kh, groups, axis=1), jnp.repeat(vh, groups, axis=1)
    cols = jnp.arange(sp, dtype=jnp.int32)

    def one(q1, k1, v1, ks1, ke1, sq1, skv1):
      mask = (cols[None, :] >= ks1[:, None]) & (cols[None, :] < ke1[:, None])  # [lp, sp]
      kernel = sk.make_dynamic_splash_mha(mask, config=config)
      seg = None if sq1 is None else sk.SegmentIds(q=sq1, kv=skv1)
      return kernel(q1, k1, v1, seg)

  out = _over_batch(one, static_mask is not None)(qh, kh, vh, ks, ke, sq, skv)  # [b, n, lp, e]
  return jnp.swapaxes(out, 1, 2)[:, :l].astype(dt)


# ---------------------------------------------------------------------------------------------- helpers
def _config(lp: int, sp: int, max_block: int, interpret: bool) -> sk.SplashConfig:
  bq, bkv = _block(lp, max_block), _block(sp, max_block)
  return sk.SplashConfig(block_q=bq, block_kv=bkv, block_kv_compute=bkv, block_q_dkv=bq, block_kv_dkv=bkv,
                         block_kv_dkv_compute=bkv, interpret=interpret)


def _block(n: int, max_block: int) -> int:
  """The largest multiple of 128 that divides ``n`` (itself a multiple of 128) and is at most ``max_block``."""
  for blk in range(min(max_block, n) // LANES * LANES, 0, -LANES):
    if n % blk == 0:
      return blk
  return LANES


def _round_up(x: int, m: int) -> int:
  return -(-x // m) * m


def _pad(x, size, axis, value=0):
  if x.shape[axis] == size:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, widths, constant_values=value)


def _is_concrete(x) -> bool:
  return x is None or not isinstance(x, jax.core.Tracer)


def _static_mask(spec: masks_lib.MaskSpec, lp: int, sp: int, l: int, s: int) -> np.ndarray | None:
  """The batch-shared ``[lp, sp]`` mask of a concrete, batch-uniform spec (``None`` otherwise).

  Only the key ranges go into the static mask; segment ids stay dynamic (they are kernel inputs).
  """
  if not (_is_concrete(spec.k_start) and _is_concrete(spec.k_end)):
    return None
  ks, ke = np.asarray(spec.k_start), np.asarray(spec.k_end)
  if not ((ks == ks[:1]).all() and (ke == ke[:1]).all()):
    return None
  ks0 = np.zeros(lp, np.int64)
  ke0 = np.ones(lp, np.int64)
  ks0[:l], ke0[:l] = ks[0], ke[0]
  cols = np.arange(sp)
  return (cols[None, :] >= ks0[:, None]) & (cols[None, :] < ke0[:, None]) & (cols[None, :] < max(s, 1))


def _over_batch(fn, vectorise: bool):
  if vectorise:
    return jax.vmap(fn)
  return lambda *xs: jax.lax.map(lambda a: fn(*a), xs)
