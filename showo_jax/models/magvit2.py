"""MAGVIT-v2 image tokenizer of Show-o v1: VQGAN-style encoder/decoder + look-up-free quantiser (LFQ).

Reference: ``showlab/Show-o@45a5a2d:models/modeling_magvitv2.py`` (``VQGANEncoder``, ``VQGANDecoder``,
``LFQuantizer``, ``MAGVITv2``) and ``models/common_modules.py`` (``ResnetBlock``, ``AttnBlock``,
``Downsample``, ``Upsample``, ``Normalize``), spec ``showo.md`` §5. Attribute names follow the official
state dict (``encoder.down.1.block.0.nin_shortcut``, ``decoder.up.4.upsample.conv``, ``decoder.mid.attn_1.q``).

* Channels-last (``[b, h, w, c]``); pixels in [-1, 1]; 16x down-sampling (5 levels, 4 down-samplings).
* GroupNorm: 32 groups, eps 1e-6, statistics in float32; swish non-linearity; no timestep embedding.
* ``Downsample`` pads (0, 1, 0, 1) (right/bottom) then a stride-2 VALID 3x3 conv; ``Upsample`` is nearest x2
  then a 3x3 conv. Attention blocks exist only where the resolution is in ``attn_resolutions`` ([5] never
  matches, so the released model has attention only in the ``mid`` blocks).
* LFQ (13 bits, 8192 codes, no learned codebook): ``z_q = +1 if z > 0 else -1`` (exactly 0 → -1), computed
  as the reference ``z + stop_gradient(z_q - z)`` (so values are the same floats); code = Σ_c 2^(12-c)·[z_q_c
  > 0] (channel 0 is the MOST significant bit); codes are flattened row-major over (h, w). The
  ``quantize.embedding`` / ``quantize.power_vals`` buffers are functions of the bit count and are not
  parameters here (the converter checks them and re-creates them on export).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int, UInt8

from showo_jax import attention as attention_lib
from showo_jax import sharding
from showo_jax.models import layers
from showo_jax.models.qwen2 import dtype_of


@dataclasses.dataclass(frozen=True)
class MAGVITv2Config:
  ch: int = 128
  encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)
  encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)
  decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
  decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)
  attn_resolutions: tuple[int, ...] = (5,)
  resolution: int = 256          # only decides where attention blocks go (as upstream)
  in_ch: int = 3
  out_ch: int = 3
  z_channels: int = 13
  codebook_dim: int = 13
  beta: float = 0.25
  entropy_multiplier: float = 0.1
  commit_loss_multiplier: float = 0.1
  num_groups: int = 32
  norm_eps: float = 1e-6
  dtype: str = "float32"
  param_dtype: str = "float32"

  @property
  def codebook_size(self) -> int:
    return 2 ** self.codebook_dim

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.encoder_ch_mult) - 1)

  @classmethod
  def magvitv2(cls, **kw) -> "MAGVITv2Config":
    """``showlab/magvitv2`` (``MAGVITv2()`` defaults)."""
    return cls(**kw)

  @classmethod
  def tiny(cls, **kw) -> "MAGVITv2Config":
    """The ``magvitv2`` fixture sizes: ch 32 with the real multipliers, 64x64 → 4x4 codes."""
    return cls(**{**dict(ch=32, encoder_num_res_blocks=(1, 1, 2, 1, 1), decoder_num_res_blocks=(1, 1, 1, 2, 1),
                         resolution=64), **kw})

  @classmethod
  def from_kwargs(cls, encoder_kwargs: dict, decoder_kwargs: dict, **kw) -> "MAGVITv2Config":
    """From ``VQGANEncoder``/``VQGANDecoder`` constructor kwargs (a fixture's ``*_kwargs_tiny``)."""
    for key in ("ch", "z_channels", "resolution"):
      if encoder_kwargs.get(key) != decoder_kwargs.get(key):
        raise ValueError(f"encoder and decoder disagree on {key}")
    if encoder_kwargs.get("double_z", False):
      raise ValueError("double_z is not used by MAGVIT-v2 (LFQ quantises z directly)")
    return cls(**{**dict(ch=encoder_kwargs["ch"], encoder_ch_mult=tuple(encoder_kwargs["ch_mult"]),
                         encoder_num_res_blocks=tuple(encoder_kwargs["num_res_blocks"]),
                         decoder_ch_mult=tuple(decoder_kwargs["ch_mult"]),
                         decoder_num_res_blocks=tuple(decoder_kwargs["num_res_blocks"]),
                         attn_resolutions=tuple(encoder_kwargs.get("attn_resolutions", (5,))),
                         resolution=encoder_kwargs["resolution"], in_ch=encoder_kwargs.get("in_ch", 3),
                         out_ch=decoder_kwargs.get("out_ch", 3), z_channels=encoder_kwargs["z_channels"]), **kw})

  @classmethod
  def from_fixture(cls, cfg_json: dict, **kw) -> "MAGVITv2Config":
    return cls.from_kwargs(cfg_json["encoder_kwargs_tiny"], cfg_json["decoder_kwargs_tiny"], **kw)


PRESETS = {"magvitv2": MAGVITv2Config.magvitv2, "tiny": MAGVITv2Config.tiny}


# ------------------------------------------------------------------------------------------- blocks
class GroupNorm(nnx.Module):
  """``nn.GroupNorm(32, C, eps=1e-6, affine=True)`` channels-last; statistics in float32."""

  def __init__(self, dim: int, *, num_groups: int = 32, eps: float = 1e-6, param_dtype=jnp.float32):
    if dim % num_groups:
      raise ValueError(f"GroupNorm: {dim} channels are not divisible into {num_groups} groups")
    self.scale = layers.param(None, layers.ones, (dim,), param_dtype, ("norm",))
    self.bias = layers.param(None, layers.zeros, (dim,), param_dtype, ("norm",))
    self.num_groups, self.eps = num_groups, eps

  def __call__(self, x):
    dtype = x.dtype
    shape = x.shape
    g = x.astype(jnp.float32).reshape(shape[:-1] + (self.num_groups, shape[-1] // self.num_groups))
    axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
    mean = jnp.mean(g, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
    y = ((g - mean) * jax.lax.rsqrt(var + self.eps)).reshape(shape)
    return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(dtype)


def _conv(cfg, cin, cout, k, rngs, strides=1, padding=None):
  pad = ((k // 2, k // 2),) * 2 if padding is None else padding
  return layers.Conv(cin, cout, (k, k), strides=(strides, strides), padding=pad, dtype=dtype_of(cfg.dtype),
                     param_dtype=dtype_of(cfg.param_dtype), rngs=rngs)


def _norm(cfg, c):
  return GroupNorm(c, num_groups=cfg.num_groups, eps=cfg.norm_eps, param_dtype=dtype_of(cfg.param_dtype))


def swish(x):
  return x * jax.nn.sigmoid(x)


class ResnetBlock(nnx.Module):
  """GN → swish → conv3 → GN → swish → conv3, plus a 1x1 ``nin_shortcut`` when the width changes."""

  def __init__(self, cfg: MAGVITv2Config, cin: int, cout: int, *, rngs: nnx.Rngs):
    self.norm1 = _norm(cfg, cin)
    self.conv1 = _conv(cfg, cin, cout, 3, rngs)
    self.norm2 = _norm(cfg, cout)
    self.conv2 = _conv(cfg, cout, cout, 3, rngs)
    self.nin_shortcut = _conv(cfg, cin, cout, 1, rngs) if cin != cout else None

  def __call__(self, x):
    h = self.conv1(swish(self.norm1(x)))
    h = self.conv2(swish(self.norm2(h)))
    return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nnx.Module):
  """Single-head self-attention over all spatial positions (1x1 conv q/k/v/proj_out), residual."""

  def __init__(self, cfg: MAGVITv2Config, c: int, *, rngs: nnx.Rngs):
    self.norm = _norm(cfg, c)
    self.q, self.k, self.v, self.proj_out = (_conv(cfg, c, c, 1, rngs) for _ in range(4))

  def __call__(self, x):
    b, h, w, c = x.shape
    n = self.norm(x)
    flat = lambda t: t.reshape(b, h * w, 1, c)  # [b, hw, 1 head, c]
    out = attention_lib.dot_product_attention(flat(self.q(n)), flat(self.k(n)), flat(self.v(n)), None,
                                              scale=c ** -0.5)
    return x + self.proj_out(out.reshape(b, h, w, c))


class Downsample(nnx.Module):
  def __init__(self, cfg: MAGVITv2Config, c: int, *, rngs: nnx.Rngs):
    # "no asymmetric padding in torch conv": pad right/bottom by one, stride-2 VALID conv.
    self.conv = _conv(cfg, c, c, 3, rngs, strides=2, padding=((0, 1), (0, 1)))

  def __call__(self, x):
    return self.conv(x)


class Upsample(nnx.Module):
  def __init__(self, cfg: MAGVITv2Config, c: int, *, rngs: nnx.Rngs):
    self.conv = _conv(cfg, c, c, 3, rngs)

  def __call__(self, x):
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)   # F.interpolate(scale_factor=2, mode="nearest")
    return self.conv(x)


class Level(nnx.Module):
  """One resolution level: ``block`` (ResnetBlocks), ``attn`` (possibly empty), ``downsample``/``upsample``."""

  def __init__(self, cfg, cin, cout, num_blocks, use_attn, resample, *, rngs):
    blocks, attns = [], []
    for _ in range(num_blocks):
      blocks.append(ResnetBlock(cfg, cin, cout, rngs=rngs))
      cin = cout
      if use_attn:
        attns.append(AttnBlock(cfg, cout, rngs=rngs))
    self.block = nnx.List(blocks)
    self.attn = nnx.List(attns)
    self.downsample = Downsample(cfg, cout, rngs=rngs) if resample == "down" else None
    self.upsample = Upsample(cfg, cout, rngs=rngs) if resample == "up" else None

  def __call__(self, x):
    for i, blk in enumerate(self.block):
      x = blk(x)
      if len(self.attn) > 0:
        x = self.attn[i](x)
    if self.downsample is not None:
      x = self.downsample(x)
    if self.upsample is not None:
      x = self.upsample(x)
    return sharding.constrain(x, ("act_batch", "act_spatial", None, None))


class Mid(nnx.Module):
  def __init__(self, cfg, c, *, rngs):
    self.block_1 = ResnetBlock(cfg, c, c, rngs=rngs)
    self.attn_1 = AttnBlock(cfg, c, rngs=rngs)
    self.block_2 = ResnetBlock(cfg, c, c, rngs=rngs)

  def __call__(self, x):
    return self.block_2(self.attn_1(self.block_1(x)))


class VQGANEncoder(nnx.Module):
  def __init__(self, cfg: MAGVITv2Config, *, rngs: nnx.Rngs):
    mult = (1,) + tuple(cfg.encoder_ch_mult)
    self.conv_in = _conv(cfg, cfg.in_ch, cfg.ch, 3, rngs)
    res, levels = cfg.resolution, []
    last = len(cfg.encoder_ch_mult) - 1
    for i, m in enumerate(cfg.encoder_ch_mult):
      levels.append(Level(cfg, cfg.ch * mult[i], cfg.ch * m, cfg.encoder_num_res_blocks[i],
                          res in cfg.attn_resolutions, "down" if i != last else None, rngs=rngs))
      if i != last:
        res //= 2
    self.down = nnx.List(levels)
    c = cfg.ch * cfg.encoder_ch_mult[-1]
    self.mid = Mid(cfg, c, rngs=rngs)
    self.norm_out = _norm(cfg, c)
    self.conv_out = _conv(cfg, c, cfg.z_channels, 3, rngs)
    self.quant_conv = _conv(cfg, cfg.z_channels, cfg.z_channels, 1, rngs)

  def __call__(self, x):
    h = self.conv_in(x)
    for level in self.down:
      h = level(h)
    h = self.mid(h)
    return self.quant_conv(self.conv_out(swish(self.norm_out(h))))


class VQGANDecoder(nnx.Module):
  def __init__(self, cfg: MAGVITv2Config, *, rngs: nnx.Rngs):
    n = len(cfg.decoder_ch_mult)
    c = cfg.ch * cfg.decoder_ch_mult[-1]
    res = cfg.resolution // 2 ** (n - 1)
    self.post_quant_conv = _conv(cfg, cfg.z_channels, cfg.z_channels, 1, rngs)
    self.conv_in = _conv(cfg, cfg.z_channels, c, 3, rngs)
    self.mid = Mid(cfg, c, rngs=rngs)
    levels = {}
    for i in reversed(range(n)):   # built top-down; stored by level index (upstream ``up.insert(0, …)``)
      cout = cfg.ch * cfg.decoder_ch_mult[i]
      levels[i] = Level(cfg, c, cout, cfg.decoder_num_res_blocks[i], res in cfg.attn_resolutions,
                        "up" if i != 0 else None, rngs=rngs)
      c = cout
      if i != 0:
        res *= 2
    self.up = nnx.List([levels[i] for i in range(n)])
    self.norm_out = _norm(cfg, c)
    self.conv_out = _conv(cfg, c, cfg.out_ch, 3, rngs)

  def __call__(self, z):
    h = self.mid(self.conv_in(self.post_quant_conv(z)))
    for i in reversed(range(len(self.up))):   # up.4 first, up.0 last
      h = self.up[i](h)
    return self.conv_out(swish(self.norm_out(h)))


class LFQuantizer(nnx.Module):
  """Look-up-free quantiser; no parameters (the codebook is the set of sign vectors)."""

  def __init__(self, cfg: MAGVITv2Config):
    self.cfg = cfg

  @property
  def power_vals(self) -> np.ndarray:
    return 2 ** np.arange(self.cfg.codebook_dim - 1, -1, -1, dtype=np.int64)

  @property
  def embedding(self) -> np.ndarray:
    return codebook(self.cfg.codebook_dim)

  def get_indices(self, z_q: Float[Array, "b h w c"]) -> Int[Array, "b h w"]:
    bits = (z_q > 0).astype(jnp.int32)
    return jnp.sum(bits * jnp.asarray(self.power_vals, jnp.int32), axis=-1)

  def get_codebook_entry(self, indices: Int[Array, "b n"], shape: tuple[int, int] | None = None
                         ) -> Float[Array, "b h w c"]:
    b, n = indices.shape
    h, w = (int(math.sqrt(n)),) * 2 if shape is None else shape
    shifts = jnp.arange(self.cfg.codebook_dim - 1, -1, -1, dtype=jnp.int32)
    bits = (indices.astype(jnp.int32)[..., None] >> shifts) & 1
    return (bits.astype(jnp.float32) * 2 - 1).reshape(b, h, w, self.cfg.codebook_dim)

  def __call__(self, z: Float[Array, "b h w c"]) -> dict:
    """``{"z": z_q, "quantizer_loss", "entropy_loss", "indices" [b, h, w]}`` (the reference's forward)."""
    cfg = self.cfg
    zf = z.astype(jnp.float32).reshape(-1, cfg.codebook_dim)
    ge = (zf > 0).astype(jnp.float32)
    q = ge - (1 - ge)
    zq = zf + jax.lax.stop_gradient(q - zf)    # straight-through, same float ops as the reference
    logit = jnp.stack([-(zf - 1.0) ** 2, -(zf + 1.0) ** 2], axis=-1)
    logp = jax.nn.log_softmax(logit, axis=-1)
    probs = jnp.exp(logp)
    entropy = -jnp.sum(jnp.maximum(logp, jnp.finfo(jnp.float32).min) * probs, axis=-1).mean()
    mean_prob = probs.mean(0)
    mean_prob = mean_prob / mean_prob.sum(-1, keepdims=True)
    eps = jnp.finfo(jnp.float32).eps
    mean_logp = jnp.log(jnp.clip(mean_prob, eps, 1 - eps))   # torch probs_to_logits clamps
    mean_entropy = -jnp.sum(mean_logp * mean_prob, axis=-1).mean()
    commit = (jnp.mean((jax.lax.stop_gradient(zq) - zf) ** 2)
              + cfg.beta * jnp.mean((zq - jax.lax.stop_gradient(zf)) ** 2))
    zq = zq.reshape(z.shape)
    return {"z": zq, "quantizer_loss": commit * cfg.commit_loss_multiplier,
            "entropy_loss": (entropy - mean_entropy) * cfg.entropy_multiplier, "indices": self.get_indices(zq)}


def codebook(bits: int = 13) -> np.ndarray:
  """``embedding[i, c] = 2·((i >> (bits-1-c)) & 1) − 1`` (float32 ``[2^bits, bits]``), channel 0 = MSB."""
  idx = np.arange(2 ** bits, dtype=np.int64)[:, None]
  return (((idx >> np.arange(bits - 1, -1, -1, dtype=np.int64)) & 1).astype(np.float32) * 2 - 1)


class MAGVITv2(nnx.Module):
  """``encoder`` + ``decoder`` + ``quantize``; images channels-last in [-1, 1]."""

  def __init__(self, cfg: MAGVITv2Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.encoder = VQGANEncoder(cfg, rngs=rngs)
    self.decoder = VQGANDecoder(cfg, rngs=rngs)
    self.quantize = LFQuantizer(cfg)

  def encode(self, pixel_values: Float[Array, "b h w c"]) -> tuple[Float[Array, "b i j z"], Int[Array, "b n"]]:
    """``(quantized [b, h/16, w/16, 13], codes [b, h/16·w/16])``."""
    zq = self.quantize(self.encoder(pixel_values))["z"]
    return zq, self.quantize.get_indices(zq).reshape(pixel_values.shape[0], -1)

  def get_code(self, pixel_values: Float[Array, "b h w c"]) -> Int[Array, "b n"]:
    return self.encode(pixel_values)[1]

  def decode(self, z_q: Float[Array, "b i j z"]) -> Float[Array, "b h w c"]:
    return self.decoder(z_q)

  def decode_code(self, codes: Int[Array, "b n"], shape: tuple[int, int] | None = None) -> Float[Array, "b h w c"]:
    """Unclamped pixels from codes; the grid is square unless ``shape = (h, w)`` (extrapolation)."""
    return self.decoder(self.quantize.get_codebook_entry(codes, shape))


def to_uint8(pixels: Float[Array, "*s"]) -> UInt8[Array, "*s"]:
  """``clamp((x + 1) / 2, 0, 1) · 255`` then truncation to uint8 (the inference scripts)."""
  return (jnp.clip((pixels + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(jnp.uint8)
