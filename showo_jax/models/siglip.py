"""SigLIP vision encoder layers: Show-o2's "semantic layers" (``und_trans``), spec ``showo2.md`` §7.

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/modeling_siglip.py`` (a copy of transformers 4.47
``SiglipEncoder``) used through ``Showo2Qwen2_5.und_trans = siglip.vision_model.encoder`` with the last layer
deleted (so400m: 27 → 26 layers). Only the encoder body is implemented: Show-o2 feeds it its own 2×2 patch
embeddings of VAE latents (``fusion.py``), so SigLIP's patch embedding, ``post_layernorm`` and head are absent.

Each layer: ``h = x + out_proj(MHA(layer_norm1(x)))``, ``y = h + fc2(gelu_tanh(fc1(layer_norm2(h))))``; full
(unmasked) attention with q/k/v/out biases and scale ``head_dim**-0.5``. Local edit kept from upstream: the
LayerNorm is computed entirely in float32 (input *and* affine parameters upcast) and cast back.

Attribute names follow the HF state dict (``layers.N.self_attn.{q,k,v,out}_proj``, ``layer_norm1/2``,
``mlp.fc1/fc2``). ``scan_layers`` stacks the layers (``nnx.vmap``) and applies them with ``lax.scan``.
"""
from __future__ import annotations

import dataclasses

import jax
from flax import nnx
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Array, Float

from showo_jax import attention as attention_lib
from showo_jax import sharding
from showo_jax.models import layers, remat
from showo_jax.models.qwen2 import dtype_of


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
  hidden_size: int = 1152
  intermediate_size: int = 4304
  num_hidden_layers: int = 26          # layers actually KEPT (upstream deletes the last one)
  num_attention_heads: int = 16
  layer_norm_eps: float = 1e-6
  hidden_act: str = "gelu_pytorch_tanh"
  num_positions: int = 729             # (image_size / patch_size)**2 of the SigLIP position table
  # execution policy
  scan_layers: bool = False
  remat_policy: str = "none"
  dtype: str = "float32"
  param_dtype: str = "float32"
  attention_impl: str = "xla"

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def so400m_patch14_384(cls, **kw) -> "SiglipConfig":
    """google/siglip-so400m-patch14-384 vision tower minus its last layer (26 of 27 layers kept)."""
    return cls(**{**dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                         layer_norm_eps=1e-6, num_positions=729), **kw})

  @classmethod
  def tiny(cls, **kw) -> "SiglipConfig":
    return cls(**{**dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_positions=16), **kw})

  @classmethod
  def from_hf(cls, hf: dict, *, drop_last_layer: bool = True, **kw) -> "SiglipConfig":
    """From an HF ``SiglipVisionConfig`` dict; ``drop_last_layer`` mirrors ``del und_trans.layers[-1]``."""
    act = hf.get("hidden_act", "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu"):
      raise ValueError(f"unsupported SigLIP activation {act!r}")
    n = hf["num_hidden_layers"] - (1 if drop_last_layer else 0)
    grid = hf["image_size"] // hf["patch_size"]
    return cls(**{**dict(hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
                         num_hidden_layers=n, num_attention_heads=hf["num_attention_heads"],
                         layer_norm_eps=hf.get("layer_norm_eps", 1e-6), hidden_act=act,
                         num_positions=grid * grid), **kw})


class SiglipAttention(nnx.Module):
  def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    d = cfg.hidden_size
    lin = lambda names: layers.Linear(d, d, use_bias=True, names=names, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.q_proj = lin(("embed", "heads"))
    self.k_proj = lin(("embed", "heads"))
    self.v_proj = lin(("embed", "heads"))
    self.out_proj = lin(("heads", "embed"))
    self.cfg = cfg

  def __call__(self, x: Float[Array, "b l d"]) -> Float[Array, "b l d"]:
    cfg = self.cfg
    b, l, _ = x.shape
    n, e = cfg.num_attention_heads, cfg.head_dim
    q = checkpoint_name(self.q_proj(x), "query_proj").reshape(b, l, n, e)
    k = checkpoint_name(self.k_proj(x), "key_proj").reshape(b, l, n, e)
    v = checkpoint_name(self.v_proj(x), "value_proj").reshape(b, l, n, e)
    # No mask: every semantic token sees every other token of its frame.
    out = attention_lib.dot_product_attention(q, k, v, None, scale=e ** -0.5, impl=cfg.attention_impl)
    out = checkpoint_name(out.reshape(b, l, n * e), "attn_out")
    return self.out_proj(out)


class SiglipMLP(nnx.Module):
  def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    self.fc1 = layers.Linear(cfg.hidden_size, cfg.intermediate_size, names=("embed", "mlp"), dtype=dt,
                             param_dtype=pdt, rngs=rngs)
    self.fc2 = layers.Linear(cfg.intermediate_size, cfg.hidden_size, names=("mlp", "embed"), dtype=dt,
                             param_dtype=pdt, rngs=rngs)
    self.act = layers.gelu_tanh if cfg.hidden_act == "gelu_pytorch_tanh" else layers.gelu_erf

  def __call__(self, x):
    h = checkpoint_name(self.act(self.fc1(x)), "mlp_up")
    return self.fc2(sharding.constrain(h, ("act_batch", "act_len", "act_mlp")))


class SiglipEncoderLayer(nnx.Module):
  def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
    pdt = dtype_of(cfg.param_dtype)
    # Upstream edit: LayerNorm fully in float32 (input and affine params upcast), then cast back.
    self.layer_norm1 = layers.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, fp32=True, param_dtype=pdt)
    self.self_attn = SiglipAttention(cfg, rngs=rngs)
    self.layer_norm2 = layers.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, fp32=True, param_dtype=pdt)
    self.mlp = SiglipMLP(cfg, rngs=rngs)

  def __call__(self, x: Float[Array, "b l d"]) -> Float[Array, "b l d"]:
    h = x + self.self_attn(self.layer_norm1(x))
    y = h + self.mlp(self.layer_norm2(h))
    return sharding.constrain(y, ("act_batch", "act_len", "act_embed"))


class SiglipEncoder(nnx.Module):
  """The (truncated) SigLIP encoder; ``__call__`` returns the last hidden state (no post-LayerNorm)."""

  def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    if cfg.scan_layers:
      @nnx.split_rngs(splits=cfg.num_hidden_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
      def create(r):
        return SiglipEncoderLayer(cfg, rngs=r)
      self.layers = create(rngs)
    else:
      self.layers = nnx.List([SiglipEncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])

  def __call__(self, x: Float[Array, "b l d"]) -> Float[Array, "b l d"]:
    cfg = self.cfg
    x = sharding.constrain(x.astype(dtype_of(cfg.dtype)), ("act_batch", "act_len", "act_embed"))
    if cfg.scan_layers:
      graphdef, stacked = nnx.split(self.layers)

      def body(carry, layer_state):
        return nnx.merge(graphdef, layer_state)(carry), None

      x, _ = jax.lax.scan(remat.wrap(body, cfg.remat_policy), x, stacked)
      return x
    for layer in self.layers:
      g, st = nnx.split(layer)
      x = remat.wrap(lambda st, x, g=g: nnx.merge(g, st)(x), cfg.remat_policy)(st, x)
    return x
