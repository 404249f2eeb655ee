"""Mesh, logical-axis rule tables and the helpers that apply them.

Model code names tensor dimensions with *logical* axes (``embed``, ``mlp``, ``act_batch`` ...); this file
alone maps them to the physical mesh axes ``data``, ``fsdp``, ``tensor``. Parameters carry their names as
``out_sharding`` metadata from creation (``models/layers.py``); activations are constrained at block
boundaries with :func:`constrain`, which is a no-op unless a mesh has been entered with :func:`use_mesh`,
so single-device code needs no special case.

A dimension whose size is not divisible by its mesh axes is replicated instead of failing (e.g. the 2 KV
heads of Qwen2.5-1.5B on a 4-way tensor axis); :func:`sharded_fraction` reports how much really is sharded.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from showo_jax import compat

MESH_AXES = ("data", "fsdp", "tensor")

_BATCH = ("data", "fsdp")

# Each preset maps a logical name to a mesh axis, a tuple of axes, or None (replicated).
RULES: dict[str, dict[str, Any]] = {
    # Pure FSDP (ZeRO-3 style): every large weight is split along one dim over `fsdp`; activations
    # are split over the batch only.
    "fsdp": {
        "embed": "fsdp", "mlp": None, "heads": None, "kv_heads": None, "head_dim": None,
        "vocab": None, "conv_in": None, "conv_out": "fsdp", "layers": None, "norm": None,
        "act_batch": _BATCH, "act_len": None, "act_embed": None, "act_heads": None,
        "act_kv_heads": None, "act_mlp": None, "act_vocab": None, "act_spatial": None,
    },
    # FSDP + tensor parallelism (Megatron split of heads / MLP / vocab over `tensor`).
    "fsdp_tp": {
        "embed": "fsdp", "mlp": "tensor", "heads": "tensor", "kv_heads": "tensor", "head_dim": None,
        "vocab": "tensor", "conv_in": None, "conv_out": "fsdp", "layers": None, "norm": None,
        "act_batch": _BATCH, "act_len": None, "act_embed": None, "act_heads": "tensor",
        "act_kv_heads": "tensor", "act_mlp": "tensor", "act_vocab": "tensor", "act_spatial": None,
    },
    # Data parallel only (replicated weights); useful for small models and as a baseline.
    "dp": {
        "embed": None, "mlp": None, "heads": None, "kv_heads": None, "head_dim": None,
        "vocab": None, "conv_in": None, "conv_out": None, "layers": None, "norm": None,
        "act_batch": _BATCH, "act_len": None, "act_embed": None, "act_heads": None,
        "act_kv_heads": None, "act_mlp": None, "act_vocab": None, "act_spatial": None,
    },
}
# VAE variant: large frames are split spatially over `tensor` (MaxDiffusion's `vae_spatial` idea).
RULES["fsdp_vae_spatial"] = {**RULES["fsdp"], "act_spatial": "tensor"}


def get_rules(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """A rule preset by name, with optional per-name overrides (unknown names are errors)."""
  if name not in RULES:
    raise ValueError(f"unknown sharding rule preset {name!r}; known: {sorted(RULES)}")
  rules = dict(RULES[name])
  for k, v in (overrides or {}).items():
    if k not in rules:
      raise ValueError(f"sharding override for unknown logical axis {k!r}; known: {sorted(rules)}")
    rules[k] = v
  return rules


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices=None) -> Mesh:
  """A ``(data, fsdp, tensor)`` mesh with Auto axis types; ``-1`` takes the remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = [data, fsdp, tensor]
  known = int(np.prod([s for s in sizes if s != -1]))
  if sizes.count(-1) > 1:
    raise ValueError("at most one mesh axis may be -1")
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"{len(devices)} devices do not divide into mesh {sizes}")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices, have {len(devices)}")
  return compat.make_mesh(tuple(sizes), MESH_AXES, devices=devices)


# ------------------------------------------------------------------ the active (mesh, rules) context
_CTX: contextvars.ContextVar[tuple[Mesh, dict] | None] = contextvars.ContextVar("showo_sharding", default=None)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Mapping[str, Any] | str = "fsdp"):
  """Enter a mesh and rule table: :func:`constrain` becomes active inside (also while tracing)."""
  rules = get_rules(rules) if isinstance(rules, str) else dict(rules)
  token = _CTX.set((mesh, rules))
  try:
    yield mesh
  finally:
    _CTX.reset(token)


def current() -> tuple[Mesh, dict] | None:
  return _CTX.get()


def logical_to_spec(names: Sequence[str | None] | None, rules: Mapping[str, Any],
                    shape: Sequence[int] | None = None, mesh: Mesh | None = None) -> P:
  """Logical names → PartitionSpec; axes that do not divide ``shape`` (when given) are dropped."""
  if names is None:
    return P()
  used: set[str] = set()
  out = []
  for i, name in enumerate(names):
    axes = None if name is None else (rules[name] if name in rules else _missing(name))
    if axes is None:
      out.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    axes = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape.get(a, 1) > 1))
    if shape is not None and mesh is not None:
      size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
      while axes and shape[i] % size:
        axes = axes[:-1]  # drop the innermost axis until it divides
        size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    used.update(axes)
    out.append(None if not axes else (axes[0] if len(axes) == 1 else axes))
  return P(*out)


def _missing(name):
  raise KeyError(f"logical axis {name!r} has no entry in the rule table (sharding.RULES)")


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """``with_sharding_constraint`` by logical names; identity outside :func:`use_mesh`."""
  ctx = _CTX.get()
  if ctx is None:
    return x
  mesh, rules = ctx
  spec = logical_to_spec(names, rules, x.shape, mesh)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


# ------------------------------------------------------------------ parameters
def _names_of(var) -> tuple | None:
  md = var.get_metadata() if hasattr(var, "get_metadata") else {}
  for key in ("out_sharding", "sharding_names", "sharding"):
    if md.get(key) is not None:
      return tuple(md[key])
  return None


def state_shardings(state: nnx.State, mesh: Mesh, rules: Mapping[str, Any] | str = "fsdp"):
  """A pytree of NamedShardings matching ``state`` (variables without names are replicated)."""
  rules = get_rules(rules) if isinstance(rules, str) else rules

  def one(var):
    value = var.get_value() if hasattr(var, "get_value") else var
    return NamedSharding(mesh, logical_to_spec(_names_of(var), rules, value.shape, mesh))

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh, rules: Mapping[str, Any] | str = "fsdp") -> nnx.Module:
  """Place every variable of ``model`` on ``mesh`` according to its logical names (in place)."""
  state = nnx.state(model)
  shardings = state_shardings(state, mesh, rules)
  values = jax.tree.map(lambda v: v.get_value(), state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  sh_values = jax.tree.map(lambda s: s, shardings)
  placed = jax.device_put(values, sh_values)
  nnx.update(model, placed)
  return model


def sharded_fraction(state: nnx.State, mesh: Mesh, rules: Mapping[str, Any] | str = "fsdp") -> float:
  """Fraction of parameter bytes that are split over at least one mesh axis (MaxText checks ≥ 98 %)."""
  rules = get_rules(rules) if isinstance(rules, str) else rules
  total = sharded = 0
  for var in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
    value = var.get_value() if hasattr(var, "get_value") else var
    n = int(np.prod(value.shape)) * np.dtype(value.dtype).itemsize
    total += n
    if any(a is not None for a in logical_to_spec(_names_of(var), rules, value.shape, mesh)):
      sharded += n
  return sharded / max(total, 1)


def batch_sharding(mesh: Mesh, ndim: int, rules: Mapping[str, Any] | str = "fsdp") -> NamedSharding:
  """Sharding of a host batch array: leading dim over the batch axes, the rest replicated."""
  rules = get_rules(rules) if isinstance(rules, str) else rules
  return NamedSharding(mesh, logical_to_spec(("act_batch",) + (None,) * (ndim - 1), rules))


def shard_batch(batch: Any, mesh: Mesh, rules: Mapping[str, Any] | str = "fsdp") -> Any:
  """Host numpy batch (this process's rows) → global jax arrays sharded over the batch axes."""
  def put(x):
    x = np.asarray(x)
    sh = batch_sharding(mesh, x.ndim, rules)
    if jax.process_count() == 1:
      return jax.device_put(x, sh)
    return jax.make_array_from_process_local_data(sh, x)
  return jax.tree.map(put, batch)


def used_logical_names(state: nnx.State) -> set[str]:
  names: set[str] = set()
  for var in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
    names.update(n for n in (_names_of(var) or ()) if n is not None)
  return names


def iter_rules() -> Iterable[str]:
  return iter(RULES)
