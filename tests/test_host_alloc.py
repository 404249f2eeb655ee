"""The resident-scratch malloc settings remove per-call page faults of XLA:CPU's temporary buffer.

Run in fresh interpreters (the settings must precede the backend's threads): the same jitted program with a
~64 MiB temporary is called repeatedly; with ``import showo_jax`` the steady-state calls fault no pages in,
with the opt-out (glibc defaults) every call faults the scratch in again. Counts, not timings.
"""
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, os, resource
import showo_jax
from showo_jax import host_alloc
import jax, jax.numpy as jnp
@jax.jit
def f(x):
  # Two ~32 MiB intermediates live at once: the executable's temporary buffer is well above 64 MiB.
  y = jnp.sin(x) * 2.0
  z = jnp.cos(x) + y[::-1]
  return (y * z).sum()
x = jnp.ones((4096, 2048), jnp.float32)
for _ in range(3):
  f(x).block_until_ready()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  f(x).block_until_ready()
r1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"applied": host_alloc.tune(), "faults_per_call": (r1 - r0) / 5}))
"""


def _probe(mode: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", SHOWO_JAX_HOST_ALLOC=mode, XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_scratch_stays_resident():
  tuned, default = _probe("resident"), _probe("default")
  assert tuned["applied"] and not default["applied"]
  pages = 32 * 2**20 // 4096
  assert default["faults_per_call"] > pages, default   # glibc default: the scratch is re-faulted every call
  assert tuned["faults_per_call"] < pages / 20, tuned  # resident: (almost) nothing faults in
