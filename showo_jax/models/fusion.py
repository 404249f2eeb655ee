"""Show-o2 dual-path visual encoder and spatial(-temporal) fusion (spec ``showo2.md`` §7).

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/modeling_showo2_qwen2_5.py`` (``forward``: dual path,
``interpolate_pos_encoding`` branch, fusion), ``show-o2/models/misc.py`` (``PatchEmbed``,
``interpolate_pos_encoding``) and ``show-o2/models/modeling_semantic_layers.py`` (``ShowoSemanticLayers``).

* Semantic path: ``image_embedder_und`` (2×2 stride-2 conv on VAE latents, tokens row-major) + the SigLIP
  position table + ``und_trans`` (SigLIP layers, ``siglip.py``).
* Position table branch (quirk kept): the table is added as-is when its size equals
  ``image_latent_height * image_latent_width`` **from the config** (27·27 for the 432-px checkpoints);
  otherwise it is resized with PyTorch's bicubic ``F.interpolate`` (``align_corners=False``, A = −0.75, clamped
  borders, no antialias) to the *input's* token grid. A config-grid model fed another size fails, as upstream.
* Low-level path: ``image_embedder_gen`` (2×2 conv to the LLM width).
* Fusion: ``fusion_proj = [RMSNorm(Ds+D, 1e-6), Linear(Ds+D, D), GELU(erf), Linear(D, D)]`` (PyTorch
  ``Sequential`` indices 0/1/3; index 2 is the parameter-free GELU). Token-wise only.
* Video ``[n, T, H, W, C]``: frames are folded into the batch for both paths, then unfolded frame-major
  (``(n, T·L, ·)``); the same position table is added to every frame.

Arrays are channels-last; the interpolation weights are computed on the host in float32 exactly like
PyTorch's CPU kernel (source index ``scale·(dst+0.5) − 0.5`` with ``scale = in/out``), applied in float32.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from showo_jax import sharding
from showo_jax.models import layers
from showo_jax.models.flow_head import Activation
from showo_jax.models.qwen2 import dtype_of
from showo_jax.models.siglip import SiglipConfig, SiglipEncoder


class PatchEmbed(nnx.Module):
  """``proj``: Conv2d(k = s = p) on ``[n, H, W, C]`` → tokens ``[n, (H/p)·(W/p), D]`` in row-major order."""

  def __init__(self, in_chans: int, embed_dim: int, patch_size: int = 2, *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.proj = layers.Conv(in_chans, embed_dim, (patch_size, patch_size), strides=(patch_size, patch_size),
                            padding="VALID", names=(None, None, "conv_in", "conv_out"), dtype=dtype,
                            param_dtype=param_dtype, rngs=rngs)
    self.patch_size = patch_size

  def __call__(self, x: Float[Array, "n h w c"]) -> Float[Array, "n l d"]:
    y = self.proj(x)  # [n, h_, w_, d]
    n, h_, w_, d = y.shape
    return sharding.constrain(y.reshape(n, h_ * w_, d), ("act_batch", "act_len", "act_embed"))


# ----------------------------------------------------------------------------- bicubic resize
def _cubic_coefficients(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """PyTorch ``get_cubic_upsample_coefficients`` (cubic convolution, A = -0.75), float32."""
  a = np.float32(a)
  one = np.float32(1)

  def cc1(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + one

  def cc2(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([cc2(t + one), cc1(t), cc1(one - t), cc2(np.float32(2) - t)], axis=-1).astype(np.float32)


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out, in]`` float32 matrix of PyTorch ``bicubic`` (align_corners=False) along one axis."""
  if in_size == out_size:  # PyTorch copies the input when sizes match
    return np.eye(in_size, dtype=np.float32)
  scale = np.float32(in_size) / np.float32(out_size)
  src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
  idx = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  lam = np.clip(src - idx.astype(np.float32), 0, 1).astype(np.float32)
  w = _cubic_coefficients(lam)
  m = np.zeros((out_size, in_size), np.float32)
  for k in range(4):
    cols = np.clip(idx - 1 + k, 0, in_size - 1)  # borders are clamped (replicate)
    np.add.at(m, (np.arange(out_size), cols), w[:, k])
  return m


def interpolate_pos_encoding(table: Float[Array, "p d"], height: int, width: int) -> Float[Array, "q d"]:
  """Resize a square ``[S*S, d]`` position table to ``[height*width, d]`` (row-major), bicubic like torch."""
  s = int(round(table.shape[0] ** 0.5))
  if s * s != table.shape[0]:
    raise ValueError(f"position table of {table.shape[0]} rows is not square")
  my, mx = jnp.asarray(bicubic_matrix(s, height)), jnp.asarray(bicubic_matrix(s, width))
  grid = table.astype(jnp.float32).reshape(s, s, -1)
  out = jnp.einsum("yi,xj,ijd->yxd", my, mx, grid, precision=jax.lax.Precision.HIGHEST)
  return out.reshape(height * width, -1)


def position_embeds(table: Float[Array, "p d"], config_grid: tuple[int, int], grid: tuple[int, int]
                    ) -> Float[Array, "q d"]:
  """The table to add for an input token ``grid`` (h_, w_), choosing the branch like upstream.

  ``config_grid`` is ``(image_latent_height, image_latent_width)`` of the model config: when the table has
  exactly that many rows it is used as is (and the input grid must match it), otherwise it is interpolated.
  """
  num = table.shape[0]
  if num == config_grid[0] * config_grid[1]:
    if grid[0] * grid[1] != num:
      raise ValueError(
          f"the position table ({num} rows) matches the configured grid {config_grid}, so upstream adds it "
          f"without interpolation; an input grid {grid} cannot be used with this config (set "
          f"image_latent_height/width to another value to take the interpolating branch)")
    return table
  return interpolate_pos_encoding(table, grid[0], grid[1])


# ----------------------------------------------------------------------------- fusion pieces
def make_fusion_proj(in_dim: int, d: int, *, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.List:
  """``fusion_proj``: RMSNorm → Linear → GELU(erf) → Linear (indices 0/1/3)."""
  return nnx.List([
      layers.RMSNorm(in_dim, eps=1e-6, param_dtype=param_dtype),
      layers.Linear(in_dim, d, names=("embed", "mlp"), dtype=dtype, param_dtype=param_dtype, rngs=rngs),
      Activation("gelu"),
      layers.Linear(d, d, names=("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs),
  ])


def fold_video(x: jax.Array) -> tuple[jax.Array, int]:
  """``[n, T, H, W, C]`` → ``([n·T, H, W, C], T)``; images pass through with ``T = 0``."""
  if x.ndim == 5:
    n, t = x.shape[:2]
    return x.reshape((n * t,) + x.shape[2:]), t
  return x, 0


def unfold_tokens(x: Float[Array, "nt l d"], frames: int) -> Float[Array, "n tl d"]:
  """``[n·T, L, d]`` → ``[n, T·L, d]`` (frame-major); identity for images (``frames = 0``)."""
  if frames == 0:
    return x
  nt, l, d = x.shape
  return x.reshape(nt // frames, frames * l, d)


# ----------------------------------------------------------------------------- stage-0 distillation module
@dataclasses.dataclass(frozen=True)
class SemanticLayersConfig:
  semantic: SiglipConfig
  image_latent_dim: int = 16
  patch_size: int = 2
  image_latent_height: int = 27
  image_latent_width: int = 27

  @classmethod
  def from_fixture(cls, cfg_json: dict, **kw) -> "SemanticLayersConfig":
    ik = cfg_json["init_kwargs"]
    sig = SiglipConfig.from_hf(cfg_json["siglip_vision_config_tiny"], **kw)
    if sig.hidden_size != ik["clip_latent_dim"]:
      raise ValueError("clip_latent_dim must equal the SigLIP width")
    return cls(semantic=sig, image_latent_dim=ik["image_latent_dim"], patch_size=ik["patch_size"],
               image_latent_height=ik["image_latent_height"], image_latent_width=ik["image_latent_width"])


class ShowoSemanticLayers(nnx.Module):
  """``ShowoSemanticLayers``: PatchEmbed + position table + SigLIP layers, distilled towards SigLIP features.

  Upstream adds ``position_embedding(arange(image_latent_height * image_latent_width))`` without any branch.
  """

  def __init__(self, cfg: SemanticLayersConfig, *, rngs: nnx.Rngs):
    sc = cfg.semantic
    dt, pdt = dtype_of(sc.dtype), dtype_of(sc.param_dtype)
    self.cfg = cfg
    self.image_embedder_und = PatchEmbed(cfg.image_latent_dim, sc.hidden_size, cfg.patch_size, dtype=dt,
                                         param_dtype=pdt, rngs=rngs)
    self.position_embedding = layers.Embed(sc.num_positions, sc.hidden_size, names=(None, "embed"), dtype=dt,
                                           param_dtype=pdt, rngs=rngs)
    self.und_trans = SiglipEncoder(sc, rngs=rngs)

  def __call__(self, latents: Float[Array, "n h w c"]) -> Float[Array, "n l d"]:
    cfg = self.cfg
    dt = dtype_of(cfg.semantic.dtype)
    x = self.image_embedder_und(latents.astype(dt))
    ids = jnp.arange(cfg.image_latent_height * cfg.image_latent_width)
    x = x + self.position_embedding(ids)[None]
    return self.und_trans(sharding.constrain(x, ("act_batch", "act_len", "act_embed")))

  def distill(self, latents: Float[Array, "n h w c"], clip_features: Float[Array, "n l d"]):
    """``(normalised features [n·l, d], loss)``: ``-mean(log(clamp(cos, 1e-4, 0.9999)))`` per token."""
    return distill_loss(self(latents), clip_features)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """``F.normalize(x, dim=-1)``: ``x / max(||x||, eps)``."""
  x32 = x.astype(jnp.float32)
  return (x32 / jnp.maximum(jnp.sqrt(jnp.sum(x32 * x32, axis=-1, keepdims=True)), eps)).astype(x.dtype)


def distill_loss(features: Float[Array, "n l d"], clip_features: Float[Array, "n l d"]):
  """The semantic-layer distillation objective of ``ShowoSemanticLayers.forward``."""
  d = features.shape[-1]
  f = l2_normalize(features.reshape(-1, d))
  c = l2_normalize(clip_features.reshape(-1, d).astype(features.dtype))
  sims = jnp.sum(c * f, axis=-1)
  loss = -jnp.mean(jnp.log(jnp.clip(sims, 1e-4, 0.9999)))
  return f, loss.astype(features.dtype)
