"""Host-process XLA:CPU settings (``showo_jax.cpu_runtime``): resident scratch memory and conv routing.

Run in fresh interpreters (the settings must precede the backend's threads): the same jitted program with a
~64 MiB temporary is called repeatedly; with ``import showo_jax`` the steady-state calls fault no pages in,
with the opt-out (glibc defaults) every call faults the scratch in again. Counts, not timings. We compare the
quietest call: with two XLA threads the heap may need a few more calls to settle before every call is free.
"""
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, os, resource
import showo_jax
from showo_jax import cpu_runtime
import jax, jax.numpy as jnp
@jax.jit
def f(x):
  # Two ~32 MiB intermediates live at once: the executable's temporary buffer is well above 64 MiB.
  y = jnp.sin(x) * 2.0
  z = jnp.cos(x) + y[::-1]
  return (y * z).sum()
x = jnp.ones((4096, 2048), jnp.float32)
for _ in range(5):
  f(x).block_until_ready()
faults = []
for _ in range(9):
  r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(json.dumps({"applied": cpu_runtime.tune_malloc(), "faults_per_call": min(faults), "all": faults}))
"""


def _probe(mode: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", SHOWO_JAX_CPU_RUNTIME=mode, XLA_FLAGS="")
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_scratch_stays_resident():
  tuned, default = _probe("resident"), _probe("default")
  assert tuned["applied"] and not default["applied"]
  pages = 32 * 2**20 // 4096
  assert default["faults_per_call"] > pages, default   # glibc default: even the quietest call re-faults
  assert tuned["faults_per_call"] < pages / 20, tuned  # resident: (almost) nothing faults in


_ROUTING = r"""
import json, os
import showo_jax
import jax, jax.numpy as jnp
conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
hlo_conv = conv.lower(jnp.ones((1, 64, 64, 96)), jnp.ones((3, 3, 96, 96))).compile().as_text().lower()
hlo_dot = jax.jit(lambda a, b: a @ b).lower(jnp.ones((256, 256)), jnp.ones((256, 256))).compile().as_text().lower()
print(json.dumps({"flags": os.environ.get("XLA_FLAGS", ""), "conv_ynn": "ynn" in hlo_conv,
                  "dot_ynn": "ynn" in hlo_dot}))
"""


def _routing(mode: str, flags: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", SHOWO_JAX_CPU_RUNTIME=mode, XLA_FLAGS=flags)
  out = subprocess.run([sys.executable, "-c", _ROUTING], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_convolutions_leave_ynn_dots_stay():
  ours = _routing("resident", "--xla_force_host_platform_device_count=2")
  assert "--xla_force_host_platform_device_count=2" in ours["flags"]          # user flags kept
  assert ours["flags"].endswith("ynn_fusion_type=-individual_convolution")
  assert not ours["conv_ynn"] and ours["dot_ynn"], ours
  stock = _routing("default", "")
  assert stock["conv_ynn"] and stock["dot_ynn"], stock                         # what we change, by default
  user = _routing("resident", "--xla_cpu_experimental_ynn_fusion_type=")      # the user's choice wins
  assert user["flags"] == "--xla_cpu_experimental_ynn_fusion_type=" and not user["dot_ynn"], user
