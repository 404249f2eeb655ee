"""Fused attention for XLA:CPU (``attention.dot_product_attention(impl="cpu_flash")``), forward and backward.

XLA:CPU runs the dense path as a batched QK^T dot that writes the whole ``[b, n, l, s]`` score tensor, a
softmax over it and a PV dot; at head_dim 64 those dots run at 75-125 GFLOP/s on the 2-core development
machines, against 300-400 for the model's linear layers, and attention was half of a Show-o MaskGIT run.
``cpu_flash_attention.cc`` keeps one (batch, head) pair's 32-row query block in cache from scores to output,
skips the key columns outside the block's ``[min k_start, max k_end)``, and runs on XLA's intra-op thread pool.
It is called through the XLA FFI with a ``custom_vjp``: the forward saves the per-row log-sum-exp and the
backward recomputes the probabilities (the flash-attention recipe), so neither pass stores ``[l, s]`` arrays.

The C++ source ships with the package and is compiled on first use for the machine that runs it
(``g++ -O3 -march=native``, or ``$CXX``) into ``$SHOWO_JAX_KERNEL_CACHE`` (default
``~/.cache/showo_jax/kernels``), keyed by the source, the flags, the jaxlib version and the CPU's feature
flags; the file appears atomically, so concurrent processes may race to build it. :func:`available` says
whether that worked and :func:`unavailable_reason` why not; ``impl="auto"`` uses the kernel on CPU only when
it is available and the call is supported (:func:`supports`), and falls back to the dense XLA path otherwise.

Supported: float32 ``q, k, v``, head_dim a multiple of 16 up to 256, GQA, and a :class:`MaskSpec` (segment
ids folded into the key ranges as for the tokamax kernels, ``common.key_ranges``) or no mask. Under a mesh
the op runs per shard (batch, heads) via ``shard_map``.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float

from showo_jax import masks as masks_lib
from showo_jax.kernels import common

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cpu_flash_attention.cc")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
FORWARD, BACKWARD = "showo_cpu_flash_forward", "showo_cpu_flash_backward"
MAX_HEAD_DIM = 256


def cache_dir() -> str:
  return os.environ.get("SHOWO_JAX_KERNEL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "showo_jax",
                                                                  "kernels")


def _cpu_flags() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next((line for line in f if line.startswith("flags")), "")
  except OSError:
    return ""


def _build(cxx: str) -> str:
  """Compile the kernel (once per source / flags / jaxlib / CPU) and return the shared library's path."""
  import jaxlib
  with open(SOURCE, "rb") as f:
    src = f.read()
  key = hashlib.sha256(b"\0".join([src, " ".join((cxx,) + FLAGS).encode(), jaxlib.__version__.encode(),
                                   _cpu_flags().encode()])).hexdigest()[:16]
  out_dir = cache_dir()
  path = os.path.join(out_dir, f"cpu_flash_{key}.so")
  if os.path.exists(path):
    return path
  os.makedirs(out_dir, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
  os.close(fd)
  try:
    cmd = [cxx, *FLAGS, "-I", jax.ffi.include_dir(), SOURCE, "-o", tmp]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
      raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    os.replace(tmp, path)   # atomic: readers see no file or the whole library
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return path


@functools.cache
def _load() -> tuple[bool, str]:
  """Build, load and register the FFI targets once per process: ``(ok, reason it is not)``."""
  if os.environ.get("SHOWO_JAX_CPU_FLASH", "") == "off":
    return False, "disabled by SHOWO_JAX_CPU_FLASH=off"
  cxx = os.environ.get("CXX", "g++")
  if shutil.which(cxx) is None:
    return False, f"no C++ compiler ({cxx!r} is not on PATH; set $CXX)"
  try:
    lib = ctypes.cdll.LoadLibrary(_build(cxx))
    jax.ffi.register_ffi_target(FORWARD, jax.ffi.pycapsule(lib.ShowoCpuFlashForward), platform="cpu")
    jax.ffi.register_ffi_target(BACKWARD, jax.ffi.pycapsule(lib.ShowoCpuFlashBackward), platform="cpu")
  except (OSError, RuntimeError, AttributeError) as err:
    return False, f"building the CPU attention kernel failed: {err}"
  return True, ""


def available() -> bool:
  """Whether the kernel is built and registered in this process (builds it on first call)."""
  return _load()[0]


def unavailable_reason() -> str:
  return _load()[1]


def supports(q, k, mask) -> bool:
  """Whether :func:`attention` takes these arguments (shapes/dtypes only; :func:`available` is separate)."""
  e, n, kh = q.shape[-1], q.shape[2], k.shape[2]
  return (q.dtype == k.dtype == jnp.float32 and e % 16 == 0 and e <= MAX_HEAD_DIM and kh > 0 and n % kh == 0
          and (mask is None or isinstance(mask, masks_lib.MaskSpec)))


def _forward_call(q, k, v, ks, ke, scale):
  b, l, n, _ = q.shape
  out_types = (jax.ShapeDtypeStruct(q.shape, jnp.float32), jax.ShapeDtypeStruct((b, n, l), jnp.float32))
  return jax.ffi.ffi_call(FORWARD, out_types, vmap_method="sequential")(q, k, v, ks, ke, scale=np.float32(scale))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _flash(q, k, v, ks, ke, scale):
  return _forward_call(q, k, v, ks, ke, scale)[0]


def _flash_fwd(q, k, v, ks, ke, scale):
  out, lse = _forward_call(q, k, v, ks, ke, scale)
  return out, (q, k, v, ks, ke, out, lse)


def _flash_bwd(scale, res, g):
  q, k, v, ks, ke, out, lse = res
  types = (jax.ShapeDtypeStruct(q.shape, jnp.float32), jax.ShapeDtypeStruct(k.shape, jnp.float32),
           jax.ShapeDtypeStruct(v.shape, jnp.float32))
  dq, dk, dv = jax.ffi.ffi_call(BACKWARD, types, vmap_method="sequential")(
      q, k, v, ks, ke, out, lse, g.astype(jnp.float32), scale=np.float32(scale))
  zero = lambda x: np.zeros(x.shape, jax.dtypes.float0)   # integer key ranges have no cotangent
  return dq, dk, dv, zero(ks), zero(ke)


_flash.defvjp(_flash_fwd, _flash_bwd)


def attention(
    q: Float[Array, "b l n e"],
    k: Float[Array, "b s h e"],
    v: Float[Array, "b s h e"],
    spec: masks_lib.MaskSpec | jax.Array | None,   # a dense mask is refused with a clear error below
    *,
    scale: float | None = None,
    mesh: Mesh | None = None,
) -> Float[Array, "b l n e"]:
  """Attention of ``q`` over ``k, v`` restricted to ``spec`` (GQA: head ``i`` uses KV head ``i // g``)."""
  ok, why = _load()
  if not ok:
    raise RuntimeError(f"impl='cpu_flash' is unavailable: {why}")
  if not supports(q, k, spec):
    raise ValueError(f"impl='cpu_flash' needs float32 q/k/v, head_dim % 16 == 0 and <= {MAX_HEAD_DIM}, query "
                     f"heads a multiple of KV heads and a MaskSpec or no mask; got q {q.shape} {q.dtype}, "
                     f"k {k.shape} {k.dtype}, mask {type(spec).__name__}")
  scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
  b, l, s = q.shape[0], q.shape[1], k.shape[1]
  if spec is None:
    spec = masks_lib.MaskSpec(jnp.zeros((b, l), jnp.int32), jnp.full((b, l), s, jnp.int32))
  ks, ke = common.key_ranges(spec, k.shape[1])
  mesh, rules = common.resolve_mesh(mesh)
  local = lambda q, k, v, ks, ke: _flash(q, k, v, ks, ke, scale)
  return common.shard_batch_heads(local, mesh, rules, q, k, v.astype(q.dtype), (ks, ke))

