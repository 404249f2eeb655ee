"""The one place for version-dependent behaviour across the jax 0.10.x and 0.11+/0.12 lines.

Model code never branches on versions; it imports what it needs from here.

* ``flax_always_shard_variable``: on by default since flax 0.12, it makes creating a variable with
  sharding metadata outside a mesh an error. We annotate parameters with *logical* axis names and map
  them to mesh axes in one place (``sharding.py``), so variables are created unsharded and placed
  afterwards (the same choice MaxDiffusion's Wan VAE makes).
"""
import jax
import flax

try:
  flax.config.update("flax_always_shard_variable", False)
except (AttributeError, KeyError):  # older flax: the flag does not exist, nothing to do
  pass

JAX_VERSION = tuple(int(p) for p in jax.__version__.split(".")[:3] if p.isdigit())


def make_mesh(shape, names, devices=None):
  """``jax.make_mesh`` with Auto axis types (classic GSPMD propagation) on every jax line."""
  from jax.sharding import AxisType, Mesh
  if devices is not None:
    import numpy as np
    return Mesh(np.asarray(devices).reshape(shape), names, axis_types=(AxisType.Auto,) * len(names))
  return jax.make_mesh(shape, names, axis_types=(AxisType.Auto,) * len(names))


def shard_map(f, *, mesh, in_specs, out_specs, check_vma=False):
  """``jax.shard_map`` (0.10+); falls back to the experimental one only where the new one is absent."""
  if hasattr(jax, "shard_map"):
    return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=check_vma)
  from jax.experimental.shard_map import shard_map as _sm  # pragma: no cover
  return _sm(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=check_vma)
