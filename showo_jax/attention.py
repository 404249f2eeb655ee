"""The only attention backend switch in the package.

``dot_product_attention(q, k, v, mask, impl=...)`` with ``q [b, l, n, e]``, ``k, v [b, s, k, e]`` (GQA:
query head ``h`` uses KV head ``h // (n // k)``, the reference's ``repeat_kv`` order) and ``mask`` a
:class:`~showo_jax.masks.MaskSpec`, a boolean ``[b, l, s]`` array (``True`` = attend) or ``None`` (full).

Backends:
  * ``xla``: dense reference, used in every parity test. Scores and softmax in float32 whatever the
    activation dtype (the reference's eager path upcasts the softmax; SDPA accumulates in f32).
  * ``cpu_flash``: fused CPU kernel (XLA FFI, compiled on first use) taking the per-query key ranges; float32
    (``kernels/cpu_flash.py``).
  * ``cudnn``: ``jax.nn.dot_product_attention(implementation='cudnn')`` (GPU; the boolean mask is turned
    into a bias by JAX, so it reads an O(l·s) tensor).
  * ``tokamax``: block-skipping Pallas flash kernels taking the per-query key ranges directly
    (``kernels/tokamax_flash.py``; Triton / Mosaic-GPU on GPU, interpret mode on CPU for tests).
  * ``splash``: TPU Splash attention with the omni mask (``kernels/splash.py``).
  * ``auto``: ``splash`` on TPU, ``cudnn`` on GPU; on CPU ``cpu_flash`` where it is built and takes the call
    (float32, key-range mask), else ``xla``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from showo_jax import masks as masks_lib

IMPLS = ("xla", "cpu_flash", "cudnn", "tokamax", "splash", "auto")

_NEG = -0.7 * float(jnp.finfo(jnp.float32).max)


def resolve(impl: str, q=None, k=None, mask=None) -> str:
  """The backend ``impl`` stands for; for ``auto`` on CPU that depends on the call (``q, k, mask``)."""
  if impl not in IMPLS:
    raise ValueError(f"unknown attention implementation {impl!r}; choose from {IMPLS}")
  if impl != "auto":
    return impl
  platform = jax.default_backend()
  if platform == "cpu" and q is not None:
    from showo_jax.kernels import common, cpu_flash
    # The mesh's platform, not the process's: compiling ahead of time for TPU/GPU from a CPU host must not
    # pick a CPU custom call.
    if common.platform_of(common.resolve_mesh(None)[0]) == "cpu" and cpu_flash.supports(q, k, mask) \
        and cpu_flash.available():
      return "cpu_flash"
  return {"tpu": "splash", "gpu": "cudnn", "cuda": "cudnn"}.get(platform, "xla")


def dot_product_attention(
    q: Float[Array, "b l n e"],
    k: Float[Array, "b s k e"],
    v: Float[Array, "b s k e"],
    mask: masks_lib.MaskSpec | Bool[Array, "b l s"] | None,
    *,
    scale: float | None = None,
    impl: str = "xla",
) -> Float[Array, "b l n e"]:
  """Multi-head (GQA) attention under ``mask``; see the module docstring for the backends."""
  impl = resolve(impl, q, k, mask)
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  if impl == "xla":
    return _xla(q, k, v, _as_dense(mask, k.shape[1]), scale)
  if impl == "cpu_flash":
    from showo_jax.kernels import cpu_flash
    return cpu_flash.attention(q, k, v, mask, scale=scale)
  if impl == "cudnn":
    m = _as_dense(mask, k.shape[1])
    return jax.nn.dot_product_attention(q, k, v, mask=None if m is None else m[:, None], scale=scale,
                                        implementation="cudnn")
  if impl == "tokamax":
    from showo_jax.kernels import tokamax_flash
    return tokamax_flash.attention(q, k, v, _as_spec(mask, q, k), scale=scale)
  from showo_jax.kernels import splash
  return splash.attention(q, k, v, _as_spec(mask, q, k), scale=scale)


def _as_dense(mask, kv_length):
  if mask is None or not isinstance(mask, masks_lib.MaskSpec):
    return mask
  return masks_lib.dense(mask, kv_length)


def _as_spec(mask, q, k):
  if isinstance(mask, masks_lib.MaskSpec):
    return mask
  if mask is None:
    return masks_lib.full(q.shape[0], q.shape[1])
  raise TypeError("block-skipping kernels take a MaskSpec (key ranges), not a dense boolean mask")


def _xla(q, k, v, mask, scale):
  b, l, n, e = q.shape
  kh = k.shape[2]
  if n % kh:
    raise ValueError(f"{n} query heads are not a multiple of {kh} KV heads")
  g, s = n // kh, k.shape[1]
  # Head-major layout so both einsums (and their gradients) are plain batched gemms with one contracting
  # dim: XLA:CPU runs the [b, l, k, g, e] form ~2x slower forward and ~1.4x slower backward.
  qh = q.reshape(b, l, kh, g, e).transpose(0, 2, 3, 1, 4).reshape(b, kh, g * l, e)  # [b, k, g*l, e]
  kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)                         # [b, k, s, e]
  logits = jnp.einsum("bkqe,bkse->bkqs", qh, kt, preferred_element_type=jnp.float32) * scale
  logits = logits.reshape(b, kh, g, l, s)
  if mask is not None:
    logits = jnp.where(mask[:, None, None, :, :], logits, _NEG)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype).reshape(b, kh, g * l, s)
  out = jnp.einsum("bkqs,bkse->bkqe", probs, vt)                                   # [b, k, g*l, e]
  return out.reshape(b, kh, g, l, e).transpose(0, 3, 1, 2, 4).reshape(b, l, n, e)
