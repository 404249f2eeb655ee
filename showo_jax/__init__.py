"""showo_jax: Show-o and Show-o2 in JAX + Flax NNX.

The curated public API is small on purpose; everything else is imported from its module.
"""
from showo_jax import host_alloc as _host_alloc

_host_alloc.tune()  # before any XLA thread exists: keeps per-step scratch memory resident (see module)

from showo_jax import compat as _compat  # noqa: E402,F401  (applies the one flax setting we rely on)

__version__ = "0.1.0"
