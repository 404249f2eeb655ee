"""Apply a stack of decoder layers: ``lax.scan`` over stacked (``nnx.vmap``-created) layers or a Python loop
over an ``nnx.List``, with the named remat policy, optional per-layer KV caches and optional hidden states.

Shared by every decoder in the package (Qwen2, Phi) so the scan/loop/cache plumbing exists once.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from showo_jax.models import remat


def run(layers, x: jax.Array, layer_fn: Callable, *, scan: bool, remat_policy: str,
        cache_kv: tuple[jax.Array, jax.Array] | None = None, return_hidden: bool = False):
  """``layer_fn(layer, x, kv) -> (y, new_kv)``; returns ``(x, hiddens [L+1,...] | None, (k, v) | None)``.

  ``cache_kv`` holds ``[layers, ...]`` keys/values; the returned ones are stacked the same way.
  """
  hiddens = [x] if return_hidden else None
  if scan:
    graphdef, stacked = nnx.split(layers)

    def body(carry, xs):
      layer_state, kv = xs
      y, nkv = layer_fn(nnx.merge(graphdef, layer_state), carry, kv)
      return y, (y if return_hidden else None, nkv)

    x, (ys, nkv) = jax.lax.scan(remat.wrap(body, remat_policy), x, (stacked, cache_kv))
    if return_hidden:
      hiddens = jnp.concatenate([hiddens[0][None], ys], axis=0)
    return x, hiddens, (nkv if cache_kv is not None else None)
  new_k, new_v = [], []
  for i, layer in enumerate(layers):
    kv = None if cache_kv is None else (cache_kv[0][i], cache_kv[1][i])
    g, st = nnx.split(layer)
    fn = remat.wrap(lambda st, x, kv, g=g: layer_fn(nnx.merge(g, st), x, kv), remat_policy)
    x, nkv = fn(st, x, kv)
    if return_hidden:
      hiddens.append(x)
    if cache_kv is not None:
      new_k.append(nkv[0])
      new_v.append(nkv[1])
  if return_hidden:
    hiddens = jnp.stack(hiddens)
  return x, hiddens, ((jnp.stack(new_k), jnp.stack(new_v)) if cache_kv is not None else None)
