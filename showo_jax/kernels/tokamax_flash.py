"""GPU flash attention with the omni mask as per-query key ranges (``attention.dot_product_attention(impl="tokamax")``).

tokamax's Pallas flash kernels take ``Mask(k_start, k_end)`` (one key range per query row) directly and skip
every KV block outside ``[min k_start, max k_end)`` of a query block (tokamax 0.0.12
``_src/ops/attention/pallas_triton.py`` and ``pallas_mosaic_gpu_common.py``); the omni mask *is* such a
range per row (``masks.py``), so no O(l·s) mask or bias is ever materialised — unlike the cuDNN path, which
turns the boolean mask into a bias.

Implementations (``impl``):
  * ``mosaic_gpu``: ``PallasMosaicGpuFlashAttention`` (Hopper/Blackwell, wgmma + TMA).
  * ``triton``: ``PallasTritonFlashAttention`` (any CUDA GPU Triton supports).
  * ``xla``: tokamax's XLA op of the same signature — exact, dense; what CPU runs (tests) use.
  * ``auto``: ``mosaic_gpu`` where tokamax reports support, else ``triton`` on GPUs (also when compiling
    ahead of time for GPUs from a CPU host), else ``xla``.

Segment ids (packing / padding) are folded into the key ranges: for ``l == s`` each query's range is
intersected with the run of equal segment ids around it, which is exact because packed segments are
contiguous runs (a segment id that reappears after another one would be treated as a new segment). With a
KV cache (``s > l``) the range is intersected with the first/last key of the query's segment.

Under a mesh the op runs per shard (batch over ``act_batch``, heads over ``act_heads``) via ``shard_map``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int

from showo_jax import masks as masks_lib
from showo_jax.kernels import common
from tokamax._src import gpu_utils
from tokamax._src.ops.attention import base as tk_base

IMPLS = ("auto", "mosaic_gpu", "triton", "xla")


@functools.cache
def _op(name: str):
  # tokamax reads its options from absl flags and parses sys.argv on first use if nobody has; under pytest or
  # any non-absl entry point that parse fails on foreign arguments. Use the flag defaults instead.
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  if name == "xla":
    return tk_base.DotProductAttention()
  if name == "triton":
    from tokamax._src.ops.attention import pallas_triton
    return pallas_triton.PallasTritonFlashAttention()
  if name == "mosaic_gpu":
    from tokamax._src.ops.attention import pallas_mosaic_gpu
    return pallas_mosaic_gpu.PallasMosaicGpuFlashAttention()
  raise ValueError(f"unknown tokamax implementation {name!r}; choose from {IMPLS}")


def resolve(impl: str, mesh: Mesh | None = None) -> str:
  """The concrete implementation ``impl`` stands for on the target devices."""
  if impl not in IMPLS:
    raise ValueError(f"unknown tokamax implementation {impl!r}; choose from {IMPLS}")
  if impl != "auto":
    return impl
  if common.platform_of(mesh) != "gpu":
    return "xla"
  if jax.default_backend() != "gpu":
    # Cross-compiling (compile-only GPU target from a CPU host): tokamax picks the Mosaic-GPU kernel variant
    # from the *default* device's compute capability, which a CPU host does not have; Triton has no such check.
    return "triton"
  device = mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
  try:
    if gpu_utils.has_mosaic_gpu_support(device):
      return "mosaic_gpu"
  except Exception:  # compile-only device descriptions may lack a compute capability
    pass
  return "triton"


def attention(
    q: Float[Array, "b l n e"],
    k: Float[Array, "b s h e"],
    v: Float[Array, "b s h e"],
    spec: masks_lib.MaskSpec,
    *,
    scale: float | None = None,
    impl: str = "auto",
    mesh: Mesh | None = None,
) -> Float[Array, "b l n e"]:
  """Flash attention of ``q`` over ``k, v`` restricted to ``spec`` (GQA: head ``i`` uses KV head ``i // g``)."""
  n, e = q.shape[2], q.shape[3]
  if n % k.shape[2]:
    raise ValueError(f"{n} query heads are not a multiple of {k.shape[2]} KV heads")
  scale = e ** -0.5 if scale is None else scale
  mesh, rules = common.resolve_mesh(mesh)
  name = resolve(impl, mesh)
  op = _op(name)
  ks, ke = common.key_ranges(spec, k.shape[1])
  if name in ("triton", "mosaic_gpu") and jax.default_backend() != "gpu":
    # Compiling for GPUs that are not this process's backend (AOT for a compile-only CUDA target from a CPU
    # host): tokamax checks kernel support against the default device unless cross-compiling. A process-wide
    # flag, not a context, because the backward kernel is traced later, outside this call.
    from absl import flags
    flags.FLAGS.tokamax_cross_compile = True

  def local(q, k, v, ks, ke):
    # [b, 1, l]: one range per query row, shared by every head (tokamax's "*#B #h #T" layout).
    mask = tk_base.Mask(k_start=ks[:, None, :], k_end=ke[:, None, :])
    return op(q, k, v, mask=mask, logits_scale=scale).astype(q.dtype)

  return common.shard_batch_heads(local, mesh, rules, q, k, v, (ks, ke))
