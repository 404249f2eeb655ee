"""Test session setup: 8 fake CPU devices, a persistent compile cache, shape checking, fixture paths.

The device count must be fixed before jax initialises its backends, hence the environment edits at import.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_repo, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# jaxtyping + beartype: wrong shapes in annotated public functions raise in tests, cost nothing in production.
from jaxtyping import install_import_hook  # noqa: E402

_hook = install_import_hook("showo_jax", "beartype.beartype")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

SHARED = os.environ.get("SHOWO_SHARED", os.path.join(os.path.dirname(_repo), "shared"))
FIXTURES = os.environ.get("SHOWO_FIXTURES", os.path.join(SHARED, "parity", "fixtures"))
MANIFESTS = os.path.join(SHARED, "parity", "manifests")


@pytest.fixture(scope="session")
def fixtures_dir():
  if not os.path.isdir(FIXTURES):
    pytest.skip(f"parity fixtures not found at {FIXTURES} (set SHOWO_FIXTURES)")
  return FIXTURES


@pytest.fixture(scope="session")
def manifests_dir():
  if not os.path.isdir(MANIFESTS):
    pytest.skip(f"manifests not found at {MANIFESTS} (set SHOWO_SHARED)")
  return MANIFESTS
