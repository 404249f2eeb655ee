"""Shared building blocks: Linear, Embed, RMSNorm, LayerNorm, Conv, with logical axis names.

Every parameter is created with its logical axis names as ``out_sharding`` metadata so that
``sharding.shard_model`` can place it; names of attributes follow PyTorch (``weight`` becomes ``kernel`` for
matmuls/convs, ``scale`` for norms, ``embedding`` for tables) so converters are layout rules only.

Dtype policy: parameters are stored in ``param_dtype``; matmuls run in ``dtype``; norms compute their
statistics in float32 and follow the reference's cast order (documented per class).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = jax.nn.initializers.Initializer

default_kernel_init = jax.nn.initializers.lecun_normal()
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones


def param(rngs: nnx.Rngs | None, init: Initializer, shape: Sequence[int], dtype, names: Sequence[str | None]):
  """An ``nnx.Param`` carrying logical axis names (``rngs=None`` only for constant inits)."""
  key = rngs.params() if rngs is not None else jax.random.key(0)
  return nnx.Param(init(key, tuple(shape), dtype), out_sharding=tuple(names))


class Linear(nnx.Module):
  """``y = x @ kernel + bias`` with ``kernel [in, out]`` (PyTorch ``weight.T``)."""

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               names: tuple[str | None, str | None] = ("embed", "mlp"), dtype=jnp.float32,
               param_dtype=jnp.float32, kernel_init: Initializer = default_kernel_init,
               bias_init: Initializer = zeros, rngs: nnx.Rngs):
    self.kernel = param(rngs, kernel_init, (in_features, out_features), param_dtype, names)
    self.bias = param(rngs, bias_init, (out_features,), param_dtype, (names[1],)) if use_bias else None
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    # A rank-2 matmul, not an einsum over the leading dims: the weight gradient is then one plain
    # [in, N] @ [N, out] product, and XLA:CPU avoids materialising transposed copies of the
    # activations for it (~25 % of the small-model train step on CPU).
    lead = x.shape[:-1]
    y = jnp.dot(x.reshape(-1, x.shape[-1]).astype(self.dtype), self.kernel[...].astype(self.dtype))
    y = y.reshape(*lead, y.shape[-1])
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class Embed(nnx.Module):
  """Token table ``embedding [num, dim]``; ``attend`` gives tied-head logits."""

  def __init__(self, num_embeddings: int, features: int, *, names=("vocab", "embed"), dtype=jnp.float32,
               param_dtype=jnp.float32, init: Initializer = jax.nn.initializers.normal(0.02), rngs: nnx.Rngs):
    self.embedding = param(rngs, init, (num_embeddings, features), param_dtype, names)
    self.dtype = dtype

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

  def attend(self, x: jax.Array) -> jax.Array:
    return jnp.einsum("...d,vd->...v", x.astype(self.dtype), self.embedding[...].astype(self.dtype))


class RMSNorm(nnx.Module):
  """Qwen2/Llama RMSNorm: statistics in float32, cast back to the input dtype, *then* times ``scale``."""

  def __init__(self, dim: int, *, eps: float = 1e-6, names=("norm",), param_dtype=jnp.float32,
               rngs: nnx.Rngs | None = None):
    self.scale = param(None, ones, (dim,), param_dtype, names)
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    # Reference order: normalise in f32, cast to the activation dtype, then multiply by the weight
    # (in the activation dtype, so mixed precision with f32 master weights stays in `dtype`).
    return x32.astype(dtype) * self.scale[...].astype(dtype)


class LayerNorm(nnx.Module):
  """LayerNorm with ``scale``/``bias``; ``fp32=True`` upcasts input and affine params (SigLIP edit, Phi)."""

  def __init__(self, dim: int, *, eps: float = 1e-5, use_bias: bool = True, fp32: bool = True,
               names=("norm",), param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    self.scale = param(None, ones, (dim,), param_dtype, names)
    self.bias = param(None, zeros, (dim,), param_dtype, names) if use_bias else None
    self.eps = eps
    self.fp32 = fp32

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    cdt = jnp.float32 if self.fp32 else dtype
    xc = x.astype(jnp.float32)
    mean = jnp.mean(xc, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xc - mean), axis=-1, keepdims=True)
    y = ((xc - mean) * jax.lax.rsqrt(var + self.eps)).astype(cdt)
    y = y * self.scale[...].astype(cdt)
    if self.bias is not None:
      y = y + self.bias[...].astype(cdt)
    return y.astype(dtype)


class Conv(nnx.Module):
  """N-d convolution, channels-last, ``kernel [*k, in, out]`` (PyTorch ``[out, in, *k]`` transposed).

  ``padding`` is given explicitly per spatial dim as ``(lo, hi)`` pairs or a string; causal/asymmetric
  padding is applied by callers where the reference pads outside the conv.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
               strides: Sequence[int] | None = None, padding="VALID", use_bias: bool = True,
               names=None, dtype=jnp.float32, param_dtype=jnp.float32,
               kernel_init: Initializer = default_kernel_init, rngs: nnx.Rngs):
    k = tuple(kernel_size)
    names = names or (None,) * len(k) + ("conv_in", "conv_out")
    self.kernel = param(rngs, kernel_init, k + (in_features, out_features), param_dtype, names)
    self.bias = param(rngs, zeros, (out_features,), param_dtype, (names[-1],)) if use_bias else None
    self.strides = tuple(strides or (1,) * len(k))
    self.padding = padding
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    nd = self.kernel.shape[:-2]
    spatial = "".join("DHW"[-len(nd):]) if len(nd) <= 3 else None
    dn = jax.lax.conv_dimension_numbers(x.shape, self.kernel.shape,
                                        (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                                     self.strides, self.padding, dimension_numbers=dn)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


def gelu_tanh(x):
  return jax.nn.gelu(x, approximate=True)


def gelu_erf(x):
  return jax.nn.gelu(x, approximate=False)
