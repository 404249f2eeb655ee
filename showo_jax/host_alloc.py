"""Keep XLA:CPU's per-execution scratch memory resident instead of re-faulting it every step.

Why: an XLA:CPU executable allocates its whole temporary buffer (hundreds of MB for a train step) once per
call and frees it on return. glibc serves an allocation that large with a fresh ``mmap`` whenever the
calling thread owns a secondary arena (those heaps are capped at 64 MiB, so no ``mallopt`` threshold can
keep it on the heap), and ``munmap``s it on free. Every step then page-faults the scratch in again and the
kernel zeroes it: measured on the 2-core dev machine, 70k minor faults and 0.2 s of system time per
``showo2_train_step`` (about 17 % of its CPU time), 91k per ``showo1_train_step``.

With one malloc arena, no mmap-served blocks and no heap trimming, freed scratch stays in the process and
the next step reuses the same (already mapped, cache- and TLB-warm) pages: zero faults per step.
The cost is that peak host memory is retained rather than returned, which a training or serving process
wants anyway. The arena limit only applies to threads that have not malloc'ed yet, so this must run
before the XLA backend starts its worker threads: ``import showo_jax`` calls :func:`tune` (idempotent),
and entry points import the package before touching devices. ``SHOWO_JAX_HOST_ALLOC=default`` opts out.
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

_STATE = {"applied": None}


def tune() -> bool:
  """Apply the resident-scratch malloc settings once; returns whether they are in effect."""
  if _STATE["applied"] is not None:
    return _STATE["applied"]
  ok = False
  if sys.platform.startswith("linux") and os.environ.get("SHOWO_JAX_HOST_ALLOC", "") != "default":
    try:
      libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
      mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt: leave it alone
      mallopt = None
    if mallopt is not None:
      mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
      # mallopt returns 1 on success; all three must hold for the faults to go away.
      ok = all(mallopt(p, v) == 1 for p, v in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                                               (_M_TRIM_THRESHOLD, 2**31 - 1)))
  _STATE["applied"] = ok
  return ok
