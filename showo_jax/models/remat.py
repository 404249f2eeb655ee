"""Named rematerialisation policies (the config names one; layers tag tensors with ``checkpoint_name``).

``none``: no remat. ``full``: save nothing inside a layer (recompute everything on the backward pass).
``dots``: save every matmul output. ``dots_no_batch``: save matmuls without batch dims (weights-side).
``qkv_proj``: save only the q/k/v projections (MaxText's ``save_qkv_proj``). ``qkv_attn_out``: also the
attention output before ``o_proj``. ``minimal``: q/k/v, attention output and MLP gate/up activations.
"""
from __future__ import annotations

import jax

POLICIES = ("none", "full", "dots", "dots_no_batch", "qkv_proj", "qkv_attn_out", "minimal")


def policy(name: str):
  cp = jax.checkpoint_policies
  table = {
      "full": cp.nothing_saveable,
      "dots": cp.dots_saveable,
      "dots_no_batch": cp.dots_with_no_batch_dims_saveable,
      "qkv_proj": cp.save_only_these_names("query_proj", "key_proj", "value_proj"),
      "qkv_attn_out": cp.save_only_these_names("query_proj", "key_proj", "value_proj", "attn_out"),
      "minimal": cp.save_only_these_names("query_proj", "key_proj", "value_proj", "attn_out", "mlp_gate", "mlp_up"),
  }
  if name not in POLICIES:
    raise ValueError(f"unknown remat policy {name!r}; choose from {POLICIES}")
  return table.get(name)


def wrap(fn, name: str):
  """``jax.checkpoint(fn)`` under the named policy, or ``fn`` itself for ``none``."""
  if name == "none":
    return fn
  return jax.checkpoint(fn, policy=policy(name), prevent_cse=False)
