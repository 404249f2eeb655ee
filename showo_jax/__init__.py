"""showo_jax: Show-o and Show-o2 in JAX + Flax NNX.

The curated public API is small on purpose; everything else is imported from its module.
"""
from showo_jax import cpu_runtime as _cpu_runtime

_cpu_runtime.apply()  # before any XLA backend exists: resident scratch memory, conv routing (see module)

from showo_jax import compat as _compat  # noqa: E402,F401  (applies the one flax setting we rely on)

__version__ = "0.1.0"
