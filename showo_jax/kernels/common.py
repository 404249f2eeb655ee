"""What the kernel wrappers share: finding the mesh, running a per-shard function over batch × heads, and the
per-query key ranges with segment ids folded in.

Attention is independent per example and per head, so under a mesh each kernel runs inside ``shard_map`` with
the batch split over the rule table's ``act_batch`` axes and heads over its ``act_heads`` axis (when the
query *and* KV head counts divide); no collective is needed in the forward or the backward pass.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from jaxtyping import Array, Int

from showo_jax import compat
from showo_jax import masks as masks_lib
from showo_jax import sharding


def resolve_mesh(mesh: Mesh | None):
  """``(mesh, rules)`` from the argument or the active :func:`showo_jax.sharding.use_mesh` context."""
  ctx = sharding.current()
  if mesh is None:
    return (None, None) if ctx is None else ctx
  return mesh, (ctx[1] if ctx is not None else sharding.get_rules("fsdp"))


def platform_of(mesh: Mesh | None) -> str:
  """The platform the kernel will run on: the mesh's devices (AOT targets too), else the default backend."""
  p = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
  return "gpu" if p in ("cuda", "rocm", "gpu") else p


def mesh_axes(names, mesh: Mesh, sizes, exclude=()) -> tuple[str, ...]:
  """Mesh axes of a rule entry with size > 1 whose product divides every size in ``sizes``."""
  if names is None:
    return ()
  names = (names,) if isinstance(names, str) else tuple(names)
  out: list[str] = []
  for a in names:
    if a in exclude or mesh.shape.get(a, 1) == 1:
      continue
    total = int(np.prod([mesh.shape[x] for x in out + [a]]))
    if all(n % total == 0 for n in sizes):
      out.append(a)
  return tuple(out)


def shard_batch_heads(fn, mesh: Mesh | None, rules, q, k, v, rows):
  """``fn(q, k, v, *rows)`` per shard; ``q/k/v`` are ``[b, len, heads, e]``, ``rows`` ``[b, len]`` or None."""
  if mesh is None or mesh.size == 1:
    return fn(q, k, v, *rows)
  b, n, kh = q.shape[0], q.shape[2], k.shape[2]
  batch_axes = mesh_axes(rules.get("act_batch"), mesh, [b])
  head_axes = mesh_axes(rules.get("act_heads"), mesh, [n, kh], exclude=batch_axes)
  bspec = batch_axes or None
  qkv = P(bspec, None, head_axes or None, None)
  row = P(bspec, None)
  in_specs = (qkv, qkv, qkv) + tuple(None if r is None else row for r in rows)
  return compat.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=qkv)(q, k, v, *rows)


def key_ranges(spec: masks_lib.MaskSpec, kv_length: int) -> tuple[Int[Array, "b l"], Int[Array, "b l"]]:
  """``spec``'s key ranges with its segment ids folded in (segments must be contiguous runs)."""
  ks, ke = spec.k_start.astype(jnp.int32), spec.k_end.astype(jnp.int32)
  if spec.segment_ids_q is None:
    return ks, ke
  sq, skv = spec.segment_ids_q, spec.segment_ids_kv
  l = sq.shape[1]
  if l == kv_length:
    idx = jnp.arange(l, dtype=jnp.int32)[None, :]
    first = jnp.concatenate([jnp.ones_like(sq[:, :1], bool), sq[:, 1:] != sq[:, :-1]], axis=1)
    last = jnp.concatenate([sq[:, :-1] != sq[:, 1:], jnp.ones_like(sq[:, :1], bool)], axis=1)
    run_start = jax.lax.cummax(jnp.where(first, idx, 0), axis=1)
    run_end = jax.lax.cummin(jnp.where(last, idx + 1, l), axis=1, reverse=True)
  else:  # cached decoding: few queries, compare against every key
    kidx = jnp.arange(kv_length, dtype=jnp.int32)[None, None, :]
    same = sq[:, :, None] == skv[:, None, :]
    run_start = jnp.min(jnp.where(same, kidx, kv_length), axis=-1)
    run_end = jnp.max(jnp.where(same, kidx + 1, 0), axis=-1)
  return jnp.maximum(ks, run_start), jnp.minimum(ke, run_end)
