"""Host-process settings for XLA:CPU, applied once by ``import showo_jax`` before any backend starts.

Both are measured on the 2-core development machine (``python -m showo_jax.tools.bench``) and both only
matter where XLA runs on the CPU (tests, ``:runlocal`` runs, the CPU benchmarks, the host side of AOT).

1. Resident scratch memory (:func:`tune_malloc`). An XLA:CPU executable allocates its whole temporary
   buffer (hundreds of MB for a train step) once per call and frees it on return. glibc serves an
   allocation that large with a fresh ``mmap`` whenever the calling thread owns a secondary arena (those
   heaps are capped at 64 MiB, so no ``mallopt`` threshold can keep it on the heap) and ``munmap``s it on
   free, so every step page-faults the scratch in again and the kernel zeroes it: 70k minor faults and
   0.2 s of system time per ``showo2_train_step`` (about 17 % of its CPU time), 91k per
   ``showo1_train_step``. With one malloc arena, no mmap-served blocks and no heap trimming, freed scratch
   stays in the process and the next call reuses the same warm pages: zero faults per step. The cost is
   that peak host memory is retained rather than returned, which a training or serving process wants
   anyway. The arena limit only applies to threads that have not malloc'ed yet, hence "before any backend".

2. Convolutions on Eigen rather than YNNPACK (:func:`default_xla_flags`). jax 0.10's XLA:CPU routes dots
   and convolutions to YNNPACK fusions. For dots that is the faster choice here, but its convolutions are
   slower than XLA's Eigen convolutions on every Wan-VAE layer shape we timed (3x3 NHWC, 96-384 channels,
   16-64 px: 113-136 vs 153-215 GFLOP/s), so we drop ``individual_convolution`` from the YNN fusion set.
   Any ``xla_cpu_experimental_ynn_fusion_type`` the user puts in ``XLA_FLAGS`` wins.

``SHOWO_JAX_CPU_RUNTIME=default`` opts out of both.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"

_STATE: dict = {}


def _opted_out() -> bool:
  return os.environ.get("SHOWO_JAX_CPU_RUNTIME", "") == "default"


def tune_malloc() -> bool:
  """Apply the resident-scratch malloc settings once; returns whether they are in effect."""
  if "malloc" in _STATE:
    return _STATE["malloc"]
  ok = False
  if sys.platform.startswith("linux") and not _opted_out():
    try:
      mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt: leave it alone
      mallopt = None
    if mallopt is not None:
      mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
      # mallopt returns 1 on success; all three must hold for the faults to go away.
      ok = all(mallopt(p, v) == 1 for p, v in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                                               (_M_TRIM_THRESHOLD, 2**31 - 1)))
  _STATE["malloc"] = ok
  return ok


def default_xla_flags() -> str:
  """Add our XLA:CPU defaults to ``XLA_FLAGS`` unless the user set the same option; returns the flags.

  XLA reads ``XLA_FLAGS`` when the first backend is created, so this must run before that; it is a no-op
  for flags already present.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if not _opted_out() and "xla_cpu_experimental_ynn_fusion_type" not in flags:
    flags = (flags + " " + YNN_FLAG).strip()
    os.environ["XLA_FLAGS"] = flags
  return flags


def apply() -> None:
  """Everything above, idempotent (``import showo_jax`` calls it)."""
  tune_malloc()
  default_xla_flags()
