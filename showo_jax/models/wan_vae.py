"""Wan2.1 3D causal VAE (the Show-o2 image/video tokenizer), spec ``showo2.md`` §6.

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/wan21_vae.py`` (``WanVAE_`` holds the weights, ``WanVAE``
is the wrapper with the latent normalisation and autocast). Attribute paths equal the official state-dict
names (``encoder.downsamples.3.residual.2``, ``decoder.head.0`` …; ``nn.Sequential`` slots without weights are
kept as parameterless modules so the indices line up), with conv ``weight`` → ``kernel`` in channels-last
layout and ``RMS_norm.gamma`` flattened to ``(C,)``. Arrays are channels-last: videos ``[b, t, h, w, c]``.

Two temporal schedules give the same numbers (tested to float rounding):

* ``"chunked"`` (the reference algorithm): encode the first frame alone, then chunks of 4 frames; decode one
  latent frame per chunk. Each temporal-kernel-3 causal conv carries a cache of the last 2 input frames;
  ``downsample3d`` skips its time conv on the first chunk and keeps the last frame; ``upsample3d`` skips its
  time conv on the first chunk and starts the next one from zeros (the reference's ``'Rep'`` marker). Caches
  start as zeros, which is exactly the reference's "no cache" (2 zero frames of causal padding), so they have
  fixed shapes after the first chunk and the remaining chunks run in one ``jax.lax.scan``: a clip compiles
  once whatever its length and activation memory is that of one chunk.
* ``"full"``: the closed form of spec §6.5 on the whole sequence at once (faster for short clips).

Temporal-kernel-3 convs are computed as 2-D convs over shifted frame windows: taps that only see the zero
padding are skipped, and pairs of output frames use the 1-D Winograd transform F(2, 3) over time (4 frame
convs per pair instead of 6; ``temporal_conv="direct"`` keeps the plain three taps). A 1-frame input
therefore runs as an ordinary 2-D VAE (only ``weight[:, :, 2]`` is used and no time conv runs), which is the
path all released Show-o2 functionality takes.

Deviations: dropout is not implemented (the released VAE has ``dropout=0``; a non-zero rate raises);
``sample`` draws its noise from a JAX key (the reference uses torch's global RNG), or takes it explicitly.
Dtype policy (spec §6.8, CUDA autocast): convs and attention run in ``cfg.dtype``; ``RMS_norm`` computes and
returns float32 (``F.normalize`` is on autocast's fp32 list); the posterior ``exp`` is float32; latent
constants are rounded to ``cfg.dtype`` (``inv_std = rnd(1 / rnd(std))``) like the wrapper's tensors.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, PRNGKeyArray

from showo_jax import attention as attention_lib
from showo_jax import sharding
from showo_jax.models import layers
from showo_jax.models.qwen2 import dtype_of

# Per-channel latent statistics of Wan2.1 (``WanVAE.__init__``).
LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
               3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

CHUNK = 4  # frames per encoder chunk after the first frame (``WanVAE_.encode``)
CACHE_T = 2  # frames kept per temporal-kernel-3 causal conv
_VIDEO = ("act_batch", None, "act_spatial", None, None)  # logical names of a [b, t, h, w, c] activation
TEMPORAL_MODES = ("chunked", "full")
TEMPORAL_CONVS = ("winograd", "direct")


@dataclasses.dataclass(frozen=True)
class WanVAEConfig:
  """``_video_vae`` hyper-parameters (the official ``temperal_*`` spelling is kept) plus execution policy."""
  dim: int = 96
  z_dim: int = 16
  dim_mult: tuple[int, ...] = (1, 2, 4, 4)
  num_res_blocks: int = 2
  attn_scales: tuple[float, ...] = ()
  temperal_downsample: tuple[bool, ...] = (False, True, True)
  dropout: float = 0.0
  latents_mean: tuple[float, ...] = LATENTS_MEAN
  latents_std: tuple[float, ...] = LATENTS_STD
  # execution policy
  temporal_mode: str = "chunked"   # "chunked" (reference schedule, lax.scan over chunks) | "full" (closed form)
  dtype: str = "float32"           # conv / attention dtype (the wrapper's autocast dtype)
  param_dtype: str = "float32"
  attention_impl: str = "xla"
  temporal_conv: str = "winograd"  # "winograd" (F(2,3) over time, 2/3 of the frame convs) | "direct"

  def __post_init__(self):
    if self.dropout != 0.0:
      raise ValueError("WanVAE dropout > 0 is not supported (the released VAE uses 0 and runs in eval mode)")
    if self.temporal_mode not in TEMPORAL_MODES:
      raise ValueError(f"temporal_mode {self.temporal_mode!r} not in {TEMPORAL_MODES}")
    if self.temporal_conv not in TEMPORAL_CONVS:
      raise ValueError(f"temporal_conv {self.temporal_conv!r} not in {TEMPORAL_CONVS}")
    if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
      raise ValueError("latents_mean / latents_std need z_dim entries")

  @property
  def temperal_upsample(self) -> tuple[bool, ...]:
    return tuple(self.temperal_downsample[::-1])

  @classmethod
  def wan2_1(cls, **kw) -> "WanVAEConfig":
    """``Wan2.1_VAE.pth`` (126,892,531 parameters)."""
    return cls(**{**dict(dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                         temperal_downsample=(False, True, True)), **kw})

  @classmethod
  def tiny(cls, **kw) -> "WanVAEConfig":
    """The real structure (same key set) at width 8, as in the parity fixture."""
    return cls.wan2_1(**{"dim": 8, **kw})

  @classmethod
  def from_fixture(cls, cfg_json: dict, **kw) -> "WanVAEConfig":
    """From a fixture ``config.json`` (``vae_cfg`` and, when present, ``latent_normalisation``)."""
    v = cfg_json["vae_cfg"]
    norm = cfg_json.get("latent_normalisation", {})
    return cls(**{**dict(dim=v["dim"], z_dim=v["z_dim"], dim_mult=tuple(v["dim_mult"]),
                         num_res_blocks=v["num_res_blocks"], attn_scales=tuple(v.get("attn_scales", ())),
                         temperal_downsample=tuple(bool(b) for b in v["temperal_downsample"]),
                         dropout=float(v.get("dropout", 0.0)),
                         latents_mean=tuple(norm.get("mean", LATENTS_MEAN)),
                         latents_std=tuple(norm.get("std", LATENTS_STD))), **kw})


PRESETS = {"wan2_1": WanVAEConfig.wan2_1, "tiny": WanVAEConfig.tiny}


# ------------------------------------------------------------------ feature cache
class FeatCache:
  """Trace-time cursor over the per-conv caches: the reference's ``feat_cache`` list plus ``feat_idx``.

  ``old is None`` marks the first chunk (every cache is zeros / ``'Rep'``). Modules ``take()`` their entry
  in call order and ``put()`` the entry for the next chunk; ``new`` then has the same structure as ``old``.
  Passing ``cache=None`` to a module instead selects the full-sequence closed form.
  """

  def __init__(self, old: Sequence[jax.Array] | None = None):
    self.old = None if old is None else list(old)
    self.new: list[jax.Array] = []
    self._i = 0

  @property
  def first(self) -> bool:
    return self.old is None

  def take(self) -> jax.Array | None:
    value = None if self.old is None else self.old[self._i]
    self._i += 1
    return value

  def put(self, value: jax.Array) -> None:
    self.new.append(value)


# ------------------------------------------------------------------ blocks
def _conv(x, kernel, strides, padding, dtype):
  """Channels-last 2-D conv of ``[n, h, w, c]`` with ``kernel [kh, kw, i, o]`` in ``dtype``."""
  return jax.lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), strides, padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _per_frame(fn, x):
  """Apply a ``[n, h, w, c]`` op to every frame of ``[b, t, h, w, c]`` (frames folded into the batch)."""
  b, t = x.shape[:2]
  y = fn(x.reshape((b * t,) + x.shape[2:]))
  return y.reshape((b, t) + y.shape[1:])


class CausalConv3d(nnx.Module):
  """``nn.Conv3d`` with causal time padding: ``2·pt`` frames in front (zeros or cached frames), none behind.

  ``kernel [kt, kh, kw, in, out]``. ``__call__(x, cache)``: with a :class:`FeatCache` the conv takes its
  history (the last ``2·pt`` input frames, zeros on the first chunk) and stores the new one; with ``None``
  the whole sequence is convolved with zero history.
  """

  def __init__(self, in_dim: int, out_dim: int, kernel_size: int | Sequence[int], *,
               stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, dtype=jnp.float32,
               param_dtype=jnp.float32, temporal_conv: str = "winograd", rngs: nnx.Rngs):
    k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
    self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    self.pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
    # The Wan VAE uses: kt=1 (pointwise in time), kt=3 with causal pad 1, and kt=3 unpadded (stride 2).
    supported = (k[0] == 1 and self.pad[0] == 0 and self.stride[0] == 1) or (
        k[0] == 3 and (self.pad[0] == 0 or (self.pad[0] == 1 and self.stride[0] == 1)))
    if not supported or self.stride[1:] != (1, 1):
      raise ValueError(f"unsupported causal conv kernel={k} stride={self.stride} padding={self.pad}")
    fan_in = in_dim * k[0] * k[1] * k[2]
    init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # torch Conv3d default
    self.kernel = layers.param(rngs, init, k + (in_dim, out_dim), param_dtype,
                               (None, None, None, "conv_in", "conv_out"))
    bound = 1.0 / math.sqrt(fan_in)
    self.bias = layers.param(rngs, jax.nn.initializers.uniform(2 * bound), (out_dim,), param_dtype, ("conv_out",))
    self.dtype = dtype
    self.temporal_conv = temporal_conv

  def _frames(self, x, k):
    """2-D conv of every frame with the 2-D kernel ``k [kh, kw, in, out]`` (one temporal tap, or a mix of taps)."""
    if self.kernel.shape[1:3] == (1, 1):  # pointwise in space: a matmul over channels
      return jnp.einsum("bthwc,co->bthwo", x.astype(self.dtype), k[0, 0].astype(self.dtype))
    ph, pw = self.pad[1], self.pad[2]
    return _per_frame(lambda f: _conv(f, k, (1, 1), ((ph, ph), (pw, pw)), self.dtype), x)

  def __call__(self, x: Float[Array, "b t h w ci"], cache: FeatCache | None = None) -> Float[Array, "b t2 h2 w2 co"]:
    kt = self.kernel.shape[0]
    w = self.kernel[...]
    bias = self.bias[...].astype(self.dtype)
    if kt == 1:  # pointwise in time: never cached (reference calls these without a cache)
      return self._frames(x, w[0]) + bias
    if self.pad[0] == 0:  # valid temporal conv (the downsample3d time_conv): stride over frames
      t_out = (x.shape[1] - kt) // self.stride[0] + 1
      y = 0
      for j in range(kt):
        frames = jax.lax.slice_in_dim(x, j, j + self.stride[0] * (t_out - 1) + 1, self.stride[0], axis=1)
        y = y + self._frames(frames, w[j])
      return y + bias
    hist = None
    if cache is not None:
      hist = cache.take()
      prev = jnp.zeros(x.shape[:1] + (CACHE_T,) + x.shape[2:], x.dtype) if hist is None else hist.astype(x.dtype)
      cache.put(jnp.concatenate([prev, x], axis=1)[:, -CACHE_T:])
    return _causal3(self._frames, w, x, hist, self.temporal_conv) + bias


def _causal3(frames_fn, w, x, hist, algorithm="winograd"):
  """Temporal kernel 3 causal conv: ``y_t = Σ_k W_k · x_{t-2+k}`` with ``x_{-2}, x_{-1}`` = ``hist`` or zeros.

  ``frames_fn(frames, k2d)`` convolves every frame with a 2-D kernel; ``w [3, ...]`` holds the temporal taps.
  """
  t = x.shape[1]
  if hist is not None:
    return _taps3(frames_fn, w, jnp.concatenate([hist.astype(x.dtype), x], axis=1), algorithm)
  # Zero history: y_0 = W_2 x_0 and y_1 = W_1 x_0 + W_2 x_1 skip the products with the zero padding (3 frame
  # convs for 2 frames). With a single frame this is exactly the 2-D conv with weight[:, :, 2] (spec §6.5,
  # images). Frames 2.. have a real history inside ``x``.
  pad = lambda v, n: jnp.pad(v, ((0, 0), (n, 0)) + ((0, 0),) * (v.ndim - 2))
  y = frames_fn(x[:, :2], w[2])
  if t > 1:
    y = y + pad(frames_fn(x[:, :1], w[1]), 1)
  if t <= 2:
    return y
  return jnp.concatenate([y, _taps3(frames_fn, w, x, algorithm)], axis=1)


def _taps3(frames_fn, w, s, algorithm):
  """``y_j = W_0 s_j + W_1 s_{j+1} + W_2 s_{j+2}`` for the ``len(s) - 2`` full windows of ``s``.

  ``"winograd"`` takes the output frames in pairs with the 1-D Winograd transform F(2, 3) over time: the conv
  is linear in both the frames and the kernel, so a pair costs 4 frame convs with the transformed kernels
  ``W_0, (W_0+W_1+W_2)/2, (W_0-W_1+W_2)/2, W_2`` instead of 6 (a third fewer FLOPs on every multi-frame
  chunk, the bulk of video encode/decode). ``"direct"`` is the textbook sum of three taps.
  """
  m = s.shape[1] - 2
  pairs = m // 2 if algorithm == "winograd" else 0
  ys = []
  if pairs:
    d = [s[:, i:i + 2 * pairs:2] for i in range(4)]  # d_i[:, p] = s[:, 2p + i]
    w32 = w.astype(jnp.float32)
    m1 = frames_fn(d[0] - d[2], w32[0])
    m2 = frames_fn(d[1] + d[2], (w32[0] + w32[1] + w32[2]) * 0.5)
    m3 = frames_fn(d[2] - d[1], (w32[0] - w32[1] + w32[2]) * 0.5)
    m4 = frames_fn(d[1] - d[3], w32[2])
    even, odd = m1 + m2 + m3, m2 - m3 - m4
    y = jnp.stack([even, odd], axis=2)
    ys.append(y.reshape(y.shape[:1] + (2 * pairs,) + y.shape[3:]))
  if 2 * pairs < m:
    r = s[:, 2 * pairs:]
    ys.append(frames_fn(r[:, 2:], w[2]) + frames_fn(r[:, 1:-1], w[1]) + frames_fn(r[:, :-2], w[0]))
  return ys[0] if len(ys) == 1 else jnp.concatenate(ys, axis=1)


class RMS_norm(nnx.Module):  # noqa: N801 - official class name
  """``F.normalize(x, dim=channels) · sqrt(dim) · gamma`` (L2 norm with ``max(‖x‖, 1e-12)``), in float32.

  Upstream ``gamma`` is ``(C,1,1,1)`` (video) or ``(C,1,1)`` (``images=True``); here ``(C,)`` channels-last.
  """

  def __init__(self, dim: int, *, images: bool = False, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    self.gamma = layers.param(None, layers.ones, (dim,), param_dtype, ("norm",))
    self.factor = dim ** 0.5
    self.images = images

  def __call__(self, x: Float[Array, "*b c"]) -> Float[Array, "*b c"]:
    x = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, 1e-12) * self.factor * self.gamma[...].astype(jnp.float32)


class SiLU(nnx.Module):
  """Parameterless ``nn.SiLU`` slot (keeps the ``nn.Sequential`` indices of the official names)."""

  def __call__(self, x):
    return jax.nn.silu(x)


class Identity(nnx.Module):
  """Parameterless slot for ``nn.Dropout(0)`` (eval mode)."""

  def __call__(self, x):
    return x


class ZeroPad2d(nnx.Module):
  """``nn.ZeroPad2d((0, 1, 0, 1))``: the asymmetric pad before the stride-2 downsample conv."""

  def __call__(self, x):
    return jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))


class Upsample2x(nnx.Module):
  """``Upsample(scale_factor=2, mode='nearest-exact')``: for an exact ×2 factor, pixel repetition.

  Kept as the ``resample.0`` slot and as the reference for :meth:`Conv2d.upsample2x`, which
  ``Resample`` uses instead (same result without materialising the 4× image).
  """

  def __call__(self, x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Conv2d(nnx.Module):
  """``nn.Conv2d`` channels-last (``kernel [kh, kw, in, out]``), explicit ``(lo, hi)`` padding."""

  def __init__(self, in_dim: int, out_dim: int, kernel_size: int, *, stride: int = 1, padding=((0, 0), (0, 0)),
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    fan_in = in_dim * kernel_size * kernel_size
    init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    self.kernel = layers.param(rngs, init, (kernel_size, kernel_size, in_dim, out_dim), param_dtype,
                               (None, None, "conv_in", "conv_out"))
    bound = 1.0 / math.sqrt(fan_in)
    self.bias = layers.param(rngs, jax.nn.initializers.uniform(2 * bound), (out_dim,), param_dtype, ("conv_out",))
    self.stride, self.padding, self.dtype = (stride, stride), tuple(padding), dtype

  def __call__(self, x: Float[Array, "n h w ci"]) -> Float[Array, "n h2 w2 co"]:
    if self.kernel.shape[:2] == (1, 1) and self.stride == (1, 1):
      y = jnp.einsum("nhwc,co->nhwo", x.astype(self.dtype), self.kernel[0, 0].astype(self.dtype))
    else:
      y = _conv(x, self.kernel[...], self.stride, self.padding, self.dtype)
    return y + self.bias[...].astype(self.dtype)

  def upsample2x(self, x: Float[Array, "n h w ci"]) -> Float[Array, "n h2 w2 co"]:
    """``conv(nearest_upsample_2x(x))`` (3×3, padding 1) without materialising the upsampled image.

    Output pixel ``(2i+di, 2j+dj)`` sees input rows ``{i-1, i}`` (``di=0``) with row taps ``{W0, W1+W2}``
    or rows ``{i, i+1}`` (``di=1``) with ``{W0+W1, W2}``, and likewise for columns; so each of the 4 output
    phases is a 2×2 conv on the input (16 instead of 36 multiply-adds per input pixel and channel pair).
    """
    n, h, w, _ = x.shape
    k = self.kernel[...].astype(jnp.float32)
    rows = (jnp.stack([k[0], k[1] + k[2]]), jnp.stack([k[0] + k[1], k[2]]))  # per di: [2, 3, i, o]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    phases = []
    for di in range(2):
      kr = rows[di]
      cols = (jnp.stack([kr[:, 0], kr[:, 1] + kr[:, 2]], 1), jnp.stack([kr[:, 0] + kr[:, 1], kr[:, 2]], 1))
      for dj in range(2):
        window = xp[:, di:di + h + 1, dj:dj + w + 1]
        phases.append(_conv(window, cols[dj], (1, 1), "VALID", self.dtype))  # [n, h, w, o]
    y = jnp.stack(phases, axis=3).reshape(n, h, w, 2, 2, -1)  # [n, h, w, di, dj, o]
    y = y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, -1)
    return y + self.bias[...].astype(self.dtype)


class ResidualBlock(nnx.Module):
  """``residual = [RMS_norm, SiLU, CausalConv3d(3), RMS_norm, SiLU, Dropout, CausalConv3d(3)]`` + shortcut."""

  def __init__(self, in_dim: int, out_dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
               temporal_conv: str = "winograd", rngs: nnx.Rngs):
    conv = lambda i, o, k, p: CausalConv3d(i, o, k, padding=p, dtype=dtype, param_dtype=param_dtype,
                                           temporal_conv=temporal_conv, rngs=rngs)
    self.residual = nnx.List([
        RMS_norm(in_dim, param_dtype=param_dtype), SiLU(), conv(in_dim, out_dim, 3, 1),
        RMS_norm(out_dim, param_dtype=param_dtype), SiLU(), Identity(), conv(out_dim, out_dim, 3, 1)])
    self.shortcut = conv(in_dim, out_dim, 1, 0) if in_dim != out_dim else None

  def __call__(self, x: Float[Array, "b t h w ci"], cache: FeatCache | None = None) -> Float[Array, "b t h w co"]:
    h = x if self.shortcut is None else self.shortcut(x)
    r = self.residual
    y = r[2](r[1](r[0](x)), cache)
    y = r[6](r[5](r[4](r[3](y))), cache)
    return sharding.constrain(y + h, _VIDEO)


class AttentionBlock(nnx.Module):
  """Single-head self-attention over the pixels of each frame (no mask, scale ``1/sqrt(c)``)."""

  def __init__(self, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, attention_impl: str = "xla",
               rngs: nnx.Rngs):
    self.norm = RMS_norm(dim, images=True, param_dtype=param_dtype)
    self.to_qkv = Conv2d(dim, 3 * dim, 1, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.proj = Conv2d(dim, dim, 1, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attention_impl = attention_impl

  def __call__(self, x: Float[Array, "b t h w c"], cache: FeatCache | None = None) -> Float[Array, "b t h w c"]:
    del cache  # per-frame: nothing is carried between chunks
    b, t, h, w, c = x.shape
    qkv = self.to_qkv(self.norm(x.reshape(b * t, h, w, c))).reshape(b * t, h * w, 1, 3 * c)
    # The fused projection splits channels [q | k | v] (``chunk(3, dim=-1)`` after the permute).
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    o = attention_lib.dot_product_attention(q, k, v, None, scale=c ** -0.5, impl=self.attention_impl)
    o = self.proj(o.reshape(b * t, h, w, c)).reshape(b, t, h, w, c)
    return sharding.constrain(o + x, _VIDEO)


class Resample(nnx.Module):
  """Spatial ×2 down/up-sampling, with a causal time conv in the ``*3d`` modes (spec §6.2, §6.5)."""

  def __init__(self, dim: int, mode: str, *, dtype=jnp.float32, param_dtype=jnp.float32,
               temporal_conv: str = "winograd", rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.mode = mode
    if mode in ("upsample2d", "upsample3d"):
      self.resample = nnx.List([Upsample2x(), Conv2d(dim, dim // 2, 3, padding=((1, 1), (1, 1)), **kw)])
    elif mode in ("downsample2d", "downsample3d"):
      self.resample = nnx.List([ZeroPad2d(), Conv2d(dim, dim, 3, stride=2, **kw)])
    else:
      raise ValueError(f"unknown resample mode {mode!r}")
    if mode == "upsample3d":
      self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0), temporal_conv=temporal_conv, **kw)
    elif mode == "downsample3d":
      self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=0, **kw)
    else:
      self.time_conv = None

  def _spatial(self, x):
    if self.mode.startswith("upsample"):
      return _per_frame(self.resample[1].upsample2x, x)
    return _per_frame(lambda f: self.resample[1](self.resample[0](f)), x)

  def __call__(self, x: Float[Array, "b t h w c"], cache: FeatCache | None = None) -> Float[Array, "b t2 h2 w2 c2"]:
    if self.mode == "upsample3d":
      x = self._time_upsample(x, cache)
    x = self._spatial(x)
    if self.mode == "downsample3d":
      x = self._time_downsample(x, cache)
    return sharding.constrain(x, _VIDEO)

  def _time_upsample(self, x, cache):
    b, t, h, w, c = x.shape
    if cache is not None and cache.first:
      # Reference: cache := 'Rep' and no time conv (the first frame is not doubled). 'Rep' later means a
      # zero history, i.e. the same zeros a fresh cache holds.
      cache.take()
      cache.put(jnp.zeros((b, CACHE_T, h, w, c), x.dtype))
      return x
    if cache is None:  # closed form: frame 0 passes; frames 1.. form their own causal sequence
      if t == 1:
        return x
      head, x = x[:, :1], x[:, 1:]
      t -= 1
    y = self.time_conv(x, cache)  # [b, t, h, w, 2c]
    # reshape(b, 2, c, t, h, w) + stack on a new frame axis: frame 2τ takes channels [0:c], 2τ+1 [c:2c].
    y = y.reshape(b, t, h, w, 2, c).transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, c)
    return y if cache is not None else jnp.concatenate([head.astype(y.dtype), y], axis=1)

  def _time_downsample(self, x, cache):
    if cache is not None:
      prev = cache.take()
      cache.put(x[:, -1:])
      if prev is None:  # first chunk: no time conv, keep the frame for the next chunk
        return x
      return self.time_conv(jnp.concatenate([prev.astype(x.dtype), x], axis=1))
    if x.shape[1] == 1:  # closed form: y_0 = x_0, y_j = conv_valid(x_{2j-2}, x_{2j-1}, x_{2j})
      return x
    y = self.time_conv(x)
    return jnp.concatenate([x[:, :1].astype(y.dtype), y], axis=1)


def _head(out_dim, z, *, dtype, param_dtype, temporal_conv, rngs):
  return nnx.List([RMS_norm(out_dim, param_dtype=param_dtype), SiLU(),
                   CausalConv3d(out_dim, z, 3, padding=1, dtype=dtype, param_dtype=param_dtype,
                                temporal_conv=temporal_conv, rngs=rngs)])


class Encoder3d(nnx.Module):
  """``conv1`` → ``downsamples`` (residual blocks + Resample) → ``middle`` (res, attn, res) → ``head``."""

  def __init__(self, cfg: WanVAEConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    akw = dict(dtype=dt, param_dtype=pdt, attention_impl=cfg.attention_impl, rngs=rngs)  # AttentionBlock
    kw = dict(dtype=dt, param_dtype=pdt, temporal_conv=cfg.temporal_conv, rngs=rngs)
    dims = [cfg.dim * u for u in (1,) + tuple(cfg.dim_mult)]
    scale = 1.0
    self.conv1 = CausalConv3d(3, dims[0], 3, padding=1, **kw)
    downsamples = []
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
      for _ in range(cfg.num_res_blocks):
        downsamples.append(ResidualBlock(in_dim, out_dim, **kw))
        if scale in cfg.attn_scales:
          downsamples.append(AttentionBlock(out_dim, **akw))
        in_dim = out_dim
      if i != len(cfg.dim_mult) - 1:
        mode = "downsample3d" if cfg.temperal_downsample[i] else "downsample2d"
        downsamples.append(Resample(out_dim, mode, **kw))
        scale /= 2.0
    self.downsamples = nnx.List(downsamples)
    self.middle = nnx.List([ResidualBlock(out_dim, out_dim, **kw),
                            AttentionBlock(out_dim, **akw),
                            ResidualBlock(out_dim, out_dim, **kw)])
    self.head = _head(out_dim, 2 * cfg.z_dim, **kw)

  def __call__(self, x: Float[Array, "b t h w 3"], cache: FeatCache | None = None) -> Float[Array, "b t2 h2 w2 z"]:
    x = sharding.constrain(self.conv1(x, cache), _VIDEO)
    for layer in self.downsamples:
      x = layer(x, cache)
    for layer in self.middle:
      x = layer(x, cache)
    return self.head[2](self.head[1](self.head[0](x)), cache)


class Decoder3d(nnx.Module):
  """``conv1`` → ``middle`` → ``upsamples`` (residual blocks + Resample) → ``head``."""

  def __init__(self, cfg: WanVAEConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    akw = dict(dtype=dt, param_dtype=pdt, attention_impl=cfg.attention_impl, rngs=rngs)  # AttentionBlock
    kw = dict(dtype=dt, param_dtype=pdt, temporal_conv=cfg.temporal_conv, rngs=rngs)
    mult = tuple(cfg.dim_mult)
    dims = [cfg.dim * u for u in (mult[-1],) + mult[::-1]]
    scale = 1.0 / 2 ** (len(mult) - 2)
    self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1, **kw)
    self.middle = nnx.List([ResidualBlock(dims[0], dims[0], **kw),
                            AttentionBlock(dims[0], **akw),
                            ResidualBlock(dims[0], dims[0], **kw)])
    upsamples = []
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
      if i in (1, 2, 3):  # the previous Resample halved the channels
        in_dim = in_dim // 2
      for _ in range(cfg.num_res_blocks + 1):
        upsamples.append(ResidualBlock(in_dim, out_dim, **kw))
        if scale in cfg.attn_scales:
          upsamples.append(AttentionBlock(out_dim, **akw))
        in_dim = out_dim
      if i != len(mult) - 1:
        mode = "upsample3d" if cfg.temperal_upsample[i] else "upsample2d"
        upsamples.append(Resample(out_dim, mode, **kw))
        scale *= 2.0
    self.upsamples = nnx.List(upsamples)
    self.head = _head(out_dim, 3, **kw)

  def __call__(self, x: Float[Array, "b t h w z"], cache: FeatCache | None = None) -> Float[Array, "b t2 h2 w2 3"]:
    x = sharding.constrain(self.conv1(x, cache), _VIDEO)
    for layer in self.middle:
      x = layer(x, cache)
    for layer in self.upsamples:
      x = layer(x, cache)
    return self.head[2](self.head[1](self.head[0](x)), cache)


# ------------------------------------------------------------------ the VAE
class WanVAE(nnx.Module):
  """``WanVAE_`` (weights: ``encoder``, ``conv1``, ``conv2``, ``decoder``) with the ``WanVAE`` wrapper API.

  Videos are ``[b, t, h, w, 3]`` in [-1, 1] with ``t = 1 + 4k``; latents ``[b, 1 + k, h/8, w/8, z_dim]``.
  ``chunked`` arguments override ``cfg.temporal_mode`` per call (``True`` = reference chunk schedule).
  """

  def __init__(self, cfg: WanVAEConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    z = cfg.z_dim
    self.cfg = cfg
    self.encoder = Encoder3d(cfg, rngs=rngs)
    self.conv1 = CausalConv3d(2 * z, 2 * z, 1, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.conv2 = CausalConv3d(z, z, 1, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.decoder = Decoder3d(cfg, rngs=rngs)

  # -------------------------------------------------------------- latent constants (wrapper dtype)
  def latent_stats(self) -> tuple[jax.Array, jax.Array]:
    """``(mean, inv_std)`` as the wrapper stores them: rounded to ``cfg.dtype``, ``inv_std = rnd(1/rnd(std))``."""
    dt = dtype_of(self.cfg.dtype)
    # From the Python floats straight to `dt` (torch.tensor(list, dtype=dt)), then the reciprocal in `dt`.
    mean = jnp.asarray(np.asarray(self.cfg.latents_mean, np.float64), dt)
    inv_std = (1.0 / jnp.asarray(np.asarray(self.cfg.latents_std, np.float64), dt)).astype(dt)
    return mean, inv_std

  def _chunked(self, chunked: bool | None) -> bool:
    return self.cfg.temporal_mode == "chunked" if chunked is None else chunked

  # -------------------------------------------------------------- encode
  def encode_raw(self, x: Float[Array, "b t h w 3"], *, chunked: bool | None = None
                 ) -> tuple[Float[Array, "b tl hl wl z"], Float[Array, "b tl hl wl z"], Float[Array, "b tl hl wl z2"]]:
    """``WanVAE_.encode(x, scale=[0, 1])``: un-normalised ``(mu, log_var, encoder_out)``."""
    x = sharding.constrain(x, _VIDEO)
    n = 1 + (x.shape[1] - 1) // CHUNK  # frames beyond 1 + 4(n-1) are dropped, as in the reference loop
    x = x[:, :1 + CHUNK * (n - 1)]
    if self._chunked(chunked):
      out = _run_chunks(self.encoder, x[:, :1], _split_chunks(x[:, 1:], CHUNK))
    else:
      out = self.encoder(x)
    mu_logvar = self.conv1(out)
    z = self.cfg.z_dim
    return mu_logvar[..., :z], mu_logvar[..., z:], out

  def encode(self, x: Float[Array, "b t h w 3"], *, chunked: bool | None = None
             ) -> tuple[Float[Array, "b tl hl wl z"], Float[Array, "b tl hl wl z"]]:
    """``(mu_normalised, log_var)`` with ``mu_normalised = (mu - mean) · inv_std`` (wrapper dtype)."""
    mu, log_var, _ = self.encode_raw(x, chunked=chunked)
    mean, inv_std = self.latent_stats()
    return (mu - mean) * inv_std, log_var

  def sample(self, x: Float[Array, "b t h w 3"], *, deterministic: bool = True, key: PRNGKeyArray | None = None,
             noise: Float[Array, "b tl hl wl z"] | None = None, chunked: bool | None = None
             ) -> Float[Array, "b tl hl wl z"]:
    """``WanVAE.sample``: the normalised mean, or ``mu_n + exp(0.5·clamp(log_var, -30, 20)) · eps`` (float32).

    As upstream, the posterior std is not divided by the per-channel latent std. ``eps`` is ``noise`` when
    given, else ``N(0, 1)`` from ``key``. Every official caller uses the stochastic form.
    """
    if not deterministic and key is None and noise is None:
      raise ValueError("sample(deterministic=False) needs a key or explicit noise")
    mu, log_var = self.encode(x, chunked=chunked)
    if deterministic:
      return mu.astype(jnp.float32)
    std = jnp.exp(0.5 * jnp.clip(log_var.astype(jnp.float32), -30.0, 20.0))
    if noise is None:
      noise = jax.random.normal(key, std.shape, jnp.float32)
    return (mu + std * noise.astype(jnp.float32)).astype(jnp.float32)

  # -------------------------------------------------------------- decode
  def decode(self, z: Float[Array, "b tl hl wl z"], *, clamp: bool = True, chunked: bool | None = None
             ) -> Float[Array, "b t h w 3"]:
    """``WanVAE.batch_decode`` (``clamp=True``) or ``WanVAE_.decode`` (``clamp=False``), float32 output.

    ``z / inv_std + mean`` divides by the rounded reciprocal, as upstream; ``t = 1 + 4(tl - 1)`` frames.
    """
    mean, inv_std = self.latent_stats()
    z = sharding.constrain(z / inv_std + mean, _VIDEO)
    x = self.conv2(z)
    if self._chunked(chunked):
      out = _run_chunks(self.decoder, x[:, :1], _split_chunks(x[:, 1:], 1))
    else:
      out = self.decoder(x)
    out = out.astype(jnp.float32)
    return jnp.clip(out, -1.0, 1.0) if clamp else out

  # -------------------------------------------------------------- images (t = 1)
  def encode_image(self, img: Float[Array, "b h w 3"], *, deterministic: bool = True,
                   key: PRNGKeyArray | None = None) -> Float[Array, "b hl wl z"]:
    """``vae.sample(img[:, :, None]).squeeze(2)``: a single frame runs as a 2-D VAE."""
    return self.sample(img[:, None], deterministic=deterministic, key=key)[:, 0]

  def decode_image(self, z: Float[Array, "b hl wl z"], *, clamp: bool = True) -> Float[Array, "b h w 3"]:
    """``vae.batch_decode(z[:, :, None]).squeeze(2)``."""
    return self.decode(z[:, None], clamp=clamp)[:, 0]


# ------------------------------------------------------------------ private
def _split_chunks(x, size):
  """``[b, n·size, ...]`` → ``[n, b, size, ...]`` (scan axis first)."""
  b, t = x.shape[:2]
  return jnp.moveaxis(x.reshape((b, t // size, size) + x.shape[2:]), 1, 0)


def _run_chunks(module: nnx.Module, first: jax.Array, rest: jax.Array) -> jax.Array:
  """Reference chunk loop: ``first`` alone (zero caches), then ``lax.scan`` over ``rest [n, b, ...]``."""
  cache = FeatCache()
  out = module(first, cache)
  if rest.shape[0] == 0:
    return out
  graphdef, state = nnx.split(module)

  def body(carry, chunk):
    c = FeatCache(carry)
    y = nnx.merge(graphdef, state)(chunk, c)
    return [v.astype(o.dtype) for v, o in zip(c.new, carry)], y

  _, ys = jax.lax.scan(body, cache.new, rest)  # ys [n, b, t_chunk, h, w, c]
  ys = jnp.moveaxis(ys, 0, 1)
  ys = ys.reshape((ys.shape[0], ys.shape[1] * ys.shape[2]) + ys.shape[3:])
  return jnp.concatenate([out.astype(ys.dtype), ys], axis=1)
