"""Show-o2 flow head: time embedding, adaLN-modulated attention blocks, final layer (spec ``showo2.md`` §8).

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/modules.py`` (``TimestepEmbedder``,
``ModulatedAttentionBlock``, ``SdpaAttention``, ``MLP``, ``RMSNorm``, ``FinalLayer``, ``DiffusionHeadConfig``)
as wired in ``modeling_showo2_qwen2_5.py`` (``time_embed``, ``diffusion_head_a``, ``diffusion_head_b``).

Behaviour copied from the code (quirks included):

* ``TimestepEmbedder``: 256-d sinusoid of the *raw* ``t`` (no ×1000), ``[cos, sin]`` (cos first), computed in
  float32 and cast to the model dtype, then ``Linear → SiLU → Linear``.
* ``ModulatedAttentionBlock``: adaLN (``shift, scale, gate`` ×2 from ``Linear(SiLU(c))``, ``c`` = the
  *unprojected* time embedding) is applied **only inside the visual spans** ``[o, o+l)`` of
  ``modality_positions``; every other position gets ``shift = scale = 0, gate = 1`` but is still processed.
  ``modulate`` runs in float32 and casts back. Attention: GQA, no biases, ``q_norm``/``k_norm`` = RMSNorm over
  the head dim with eps 1e-6 (not the config's 1e-5) applied **before** the llama3-scaled RoPE.
* ``FinalLayer``: RMSNorm eps 1e-6, modality-restricted ``shift, scale``, ``Linear(H, p*p*C)``.

PyTorch ``nn.Sequential`` containers keep their integer indices (``time_embed.mlp.{0,2}``,
``adaLN_modulation.1``) as :class:`nnx.List` entries with parameter-free :class:`Activation` modules in the
activation slots, so the converter is a rename-free rule table.

Additions over upstream (not behaviour changes): an optional per-layer KV cache (:class:`FlowKVCache`, same
layout as ``qwen2.KVCache``) so that a prompt prefix can be computed once and reused by every denoising step,
and ``scan_layers`` (stacked layers applied with ``lax.scan``).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Array, Float, Int

from showo_jax import attention as attention_lib
from showo_jax import sharding
from showo_jax.models import layers, remat, rope
from showo_jax.models.qwen2 import dtype_of


@dataclasses.dataclass(frozen=True)
class FlowHeadConfig:
  hidden_size: int = 2048
  head_dim: int = 64
  intermediate_size: int = 8192
  num_attention_heads: int = 32
  num_key_value_heads: int = 8
  num_layers: int = 10                 # num_diffusion_layers
  rms_norm_eps: float = 1e-5           # block norms
  qk_norm_eps: float = 1e-6            # RMSNorm(head_dim) default eps, NOT rms_norm_eps
  final_norm_eps: float = 1e-6         # FinalLayer RMSNorm default eps
  rope_theta: float = 500000.0
  rope_llama3_factor: float | None = 32.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_position: int = 8192
  frequency_embedding_size: int = 256
  patch_size: int = 2
  out_channels: int = 16
  # execution policy
  scan_layers: bool = False
  remat_policy: str = "none"
  dtype: str = "float32"
  param_dtype: str = "float32"
  attention_impl: str = "xla"

  @property
  def out_dim(self) -> int:
    return self.patch_size * self.patch_size * self.out_channels

  @property
  def rope(self) -> rope.RopeConfig:
    return rope.RopeConfig(self.head_dim, self.rope_theta, llama3_factor=self.rope_llama3_factor,
                           llama3_low_freq_factor=self.rope_low_freq_factor,
                           llama3_high_freq_factor=self.rope_high_freq_factor,
                           llama3_original_max_position=self.rope_original_max_position)

  @classmethod
  def showo2(cls, **kw) -> "FlowHeadConfig":
    """The hard-coded ``DiffusionHeadConfig()`` of both released checkpoints, 10 layers."""
    return cls(**kw)

  @classmethod
  def tiny(cls, **kw) -> "FlowHeadConfig":
    return cls(**{**dict(hidden_size=96, head_dim=16, intermediate_size=192, num_attention_heads=6,
                         num_key_value_heads=2, num_layers=2), **kw})

  @classmethod
  def from_diffusion_head_config(cls, d: dict, num_layers: int, *, patch_size: int = 2, out_channels: int = 16,
                                 **kw) -> "FlowHeadConfig":
    """From a ``DiffusionHeadConfig`` dict (fixture ``diffusion_head_config``) plus the layer count."""
    if d.get("hidden_act", "silu") != "silu" or d.get("attention_bias") or d.get("mlp_bias"):
      raise ValueError("the flow head is SwiGLU without biases in every released configuration")
    if d["hidden_size"] // d["num_attention_heads"] != d["head_dim"]:
      # q_norm/k_norm are sized hidden//heads upstream; they only work when that equals head_dim.
      raise ValueError("hidden_size // num_attention_heads must equal head_dim")
    rs = d.get("rope_scaling") or {}
    if rs and rs.get("rope_type", rs.get("type")) != "llama3":
      raise ValueError(f"unsupported rope_scaling {rs}")
    return cls(**{**dict(
        hidden_size=d["hidden_size"], head_dim=d["head_dim"], intermediate_size=d["intermediate_size"],
        num_attention_heads=d["num_attention_heads"], num_key_value_heads=d["num_key_value_heads"],
        num_layers=num_layers, rms_norm_eps=d.get("rms_norm_eps", 1e-5), rope_theta=d.get("rope_theta", 5e5),
        rope_llama3_factor=rs.get("factor") if rs else None,
        rope_low_freq_factor=rs.get("low_freq_factor", 1.0), rope_high_freq_factor=rs.get("high_freq_factor", 4.0),
        rope_original_max_position=rs.get("original_max_position_embeddings", 8192),
        patch_size=patch_size, out_channels=out_channels), **kw})


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class FlowKVCache:
  """Flow-head keys/values ``[layers, b, s_max, k, e]`` and the number of written positions."""
  k: Float[Array, "L b s k e"]
  v: Float[Array, "L b s k e"]
  index: Int[Array, ""]

  @classmethod
  def init(cls, cfg: FlowHeadConfig, batch: int, max_len: int, dtype=None) -> "FlowKVCache":
    dtype = dtype or dtype_of(cfg.dtype)
    shape = (cfg.num_layers, batch, max_len, cfg.num_key_value_heads, cfg.head_dim)
    return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


# ----------------------------------------------------------------------------- small shared pieces
class Activation(nnx.Module):
  """Parameter-free slot of a PyTorch ``nn.Sequential`` (keeps the official integer indices)."""

  def __init__(self, name: str):
    self.name = name

  def __call__(self, x):
    return {"silu": jax.nn.silu, "gelu": layers.gelu_erf, "gelu_tanh": layers.gelu_tanh}[self.name](x)


def sequential(modules: nnx.List, x):
  """Apply an ``nnx.List`` built like a PyTorch ``nn.Sequential``."""
  for m in modules:
    x = m(x)
  return x


def modulate(x, shift, scale):
  """``x * (1 + scale) + shift`` in float32, cast back to ``x``'s dtype (upstream ``modulate``)."""
  f32 = jnp.float32
  return (x.astype(f32) * (1 + scale.astype(f32)) + shift.astype(f32)).astype(x.dtype)


def modality_slots(modality_positions: Int[Array, "b m 2"], length: int,
                   start: int | Int[Array, ""] = 0) -> Int[Array, "b l"]:
  """Flat slot index ``i*M + j`` covering each position ``start + q`` (``[o, o+l)``), or ``-1``.

  Upstream writes the slots in order, so where spans overlap the last slot wins; ``(0, 0)`` slots cover
  nothing.
  """
  mp = jnp.asarray(modality_positions, jnp.int32)
  b, m, _ = mp.shape
  pos = start + jnp.arange(length, dtype=jnp.int32)[None, :]  # [1, l]
  slot = jnp.full((b, length), -1, jnp.int32)
  for j in range(m):
    o, ln = mp[:, j, 0:1], mp[:, j, 1:2]
    inside = (pos >= o) & (pos < o + ln)
    slot = jnp.where(inside, jnp.arange(b, dtype=jnp.int32)[:, None] * m + j, slot)
  return slot


def per_token(vectors: Float[Array, "N f"], slot: Int[Array, "b l"], default: float) -> Float[Array, "b l f"]:
  """Spread per-slot vectors onto their spans; ``default`` elsewhere (0 for shift/scale, 1 for gates)."""
  picked = jnp.take(vectors, jnp.maximum(slot, 0), axis=0)
  return jnp.where((slot >= 0)[..., None], picked, jnp.asarray(default, vectors.dtype))


def timestep_embedding(t: Float[Array, "n"], dim: int = 256, max_period: float = 10000.0) -> Float[Array, "n f"]:
  """Float32 sinusoid ``[cos(t f), sin(t f)]`` with ``f_k = exp(-ln(max_period) k / half)`` (raw ``t``)."""
  half = dim // 2
  # Same float32 arithmetic as torch: (-ln(P) as f32) * arange(half) / half, then exp.
  freqs = np.exp((np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32)) / np.float32(half))
  args = t.astype(jnp.float32)[:, None] * jnp.asarray(freqs.astype(np.float32))[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.concatenate([emb, jnp.zeros_like(emb[:, :1])], axis=-1)
  return emb


# ----------------------------------------------------------------------------- modules
class TimestepEmbedder(nnx.Module):
  """``t [n]`` → ``[n, H]``: float32 sinusoid cast to ``dtype``, then ``mlp`` (indices 0 and 2)."""

  def __init__(self, cfg: FlowHeadConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    h, f = cfg.hidden_size, cfg.frequency_embedding_size
    self.mlp = nnx.List([
        layers.Linear(f, h, names=(None, "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs),
        Activation("silu"),
        layers.Linear(h, h, names=("mlp", "embed"), dtype=dt, param_dtype=pdt, rngs=rngs),
    ])
    self.frequency_embedding_size = f
    self.dtype = dt

  def __call__(self, t: Float[Array, "n"]) -> Float[Array, "n h"]:
    t_freq = timestep_embedding(t, self.frequency_embedding_size).astype(self.dtype)
    return sharding.constrain(sequential(self.mlp, t_freq), ("act_batch", "act_embed"))


class FlowAttention(nnx.Module):
  def __init__(self, cfg: FlowHeadConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    h, e = cfg.hidden_size, cfg.head_dim
    n, k = cfg.num_attention_heads, cfg.num_key_value_heads
    lin = lambda i, o, names: layers.Linear(i, o, use_bias=False, names=names, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.q_proj = lin(h, n * e, ("embed", "heads"))
    self.k_proj = lin(h, k * e, ("embed", "kv_heads"))
    self.v_proj = lin(h, k * e, ("embed", "kv_heads"))
    self.o_proj = lin(n * e, h, ("heads", "embed"))
    self.q_norm = layers.RMSNorm(e, eps=cfg.qk_norm_eps, names=("head_dim",), param_dtype=pdt)
    self.k_norm = layers.RMSNorm(e, eps=cfg.qk_norm_eps, names=("head_dim",), param_dtype=pdt)
    self.cfg = cfg

  def __call__(self, x, cos, sin, mask, cache_kv=None, index=None):
    cfg = self.cfg
    b, l, _ = x.shape
    n, k, e = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = checkpoint_name(self.q_proj(x), "query_proj").reshape(b, l, n, e)
    kk = checkpoint_name(self.k_proj(x), "key_proj").reshape(b, l, k, e)
    v = checkpoint_name(self.v_proj(x), "value_proj").reshape(b, l, k, e)
    # qk-norm BEFORE RoPE (upstream order).
    q, kk = rope.apply(self.q_norm(q), cos, sin), rope.apply(self.k_norm(kk), cos, sin)
    q = sharding.constrain(q, ("act_batch", "act_len", "act_heads", None))
    new_kv = None
    if cache_kv is not None:
      ck, cv = cache_kv
      ck = jax.lax.dynamic_update_slice_in_dim(ck, kk.astype(ck.dtype), index, axis=1)
      cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), index, axis=1)
      kk, v, new_kv = ck, cv, (ck, cv)
    out = attention_lib.dot_product_attention(q, kk, v, mask, scale=e ** -0.5, impl=cfg.attention_impl)
    out = checkpoint_name(out.reshape(b, l, n * e), "attn_out")
    return self.o_proj(out), new_kv


class FlowMLP(nnx.Module):
  def __init__(self, cfg: FlowHeadConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    h, f = cfg.hidden_size, cfg.intermediate_size
    self.gate_proj = layers.Linear(h, f, use_bias=False, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs)
    self.up_proj = layers.Linear(h, f, use_bias=False, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs)
    self.down_proj = layers.Linear(f, h, use_bias=False, names=("mlp", "embed"), dtype=dt, param_dtype=pdt, rngs=rngs)

  def __call__(self, x):
    gate = checkpoint_name(self.gate_proj(x), "mlp_gate")
    up = checkpoint_name(self.up_proj(x), "mlp_up")
    return self.down_proj(sharding.constrain(jax.nn.silu(gate) * up, ("act_batch", "act_len", "act_mlp")))


class ModulatedAttentionBlock(nnx.Module):
  """One ``diffusion_head_a`` layer (pre-norm Llama block with modality-restricted adaLN)."""

  def __init__(self, cfg: FlowHeadConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    h = cfg.hidden_size
    self.self_attn = FlowAttention(cfg, rngs=rngs)
    self.mlp = FlowMLP(cfg, rngs=rngs)
    self.input_layernorm = layers.RMSNorm(h, eps=cfg.rms_norm_eps, param_dtype=pdt)
    self.post_attention_layernorm = layers.RMSNorm(h, eps=cfg.rms_norm_eps, param_dtype=pdt)
    self.adaLN_modulation = nnx.List([
        Activation("silu"),
        layers.Linear(h, 6 * h, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs),
    ])

  def __call__(self, x: Float[Array, "b l h"], c: Float[Array, "N h"], slot: Int[Array, "b l"], cos, sin, mask,
               cache_kv=None, index=None):
    mods = sequential(self.adaLN_modulation, c).astype(x.dtype)  # [N, 6h]
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(mods, 6, axis=-1)
    # Only the visual spans are modulated; text rows get shift = scale = 0 and gate = 1.
    # The branch outputs are pinned to the residual-stream layout before the gated add: without it the
    # CPU SPMD partitioner (jax 0.10.2) miscompiles o_proj/down_proj under the fsdp_tp rules (wrong values).
    act = ("act_batch", "act_len", "act_embed")
    a, new_kv = self.self_attn(
        modulate(self.input_layernorm(x), per_token(shift_msa, slot, 0.0), per_token(scale_msa, slot, 0.0)),
        cos, sin, mask, cache_kv, index)
    h = x + per_token(gate_msa, slot, 1.0) * sharding.constrain(a, act)
    m = self.mlp(modulate(self.post_attention_layernorm(h), per_token(shift_mlp, slot, 0.0),
                          per_token(scale_mlp, slot, 0.0)))
    y = h + per_token(gate_mlp, slot, 1.0) * sharding.constrain(m, act)
    return sharding.constrain(y, ("act_batch", "act_len", "act_embed")), new_kv


class FinalLayer(nnx.Module):
  """``diffusion_head_b``: modality-restricted adaLN (shift, scale), RMSNorm eps 1e-6, ``Linear(H, p*p*C)``."""

  def __init__(self, cfg: FlowHeadConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    h = cfg.hidden_size
    self.norm_final = layers.RMSNorm(h, eps=cfg.final_norm_eps, param_dtype=pdt)
    self.linear = layers.Linear(h, cfg.out_dim, names=("embed", None), dtype=dt, param_dtype=pdt, rngs=rngs)
    self.adaLN_modulation = nnx.List([
        Activation("silu"),
        layers.Linear(h, 2 * h, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs),
    ])

  def __call__(self, x: Float[Array, "b l h"], c: Float[Array, "N h"], slot: Int[Array, "b l"]
               ) -> Float[Array, "b l o"]:
    shift, scale = jnp.split(sequential(self.adaLN_modulation, c).astype(x.dtype), 2, axis=-1)
    return self.linear(modulate(self.norm_final(x), per_token(shift, slot, 0.0), per_token(scale, slot, 0.0)))


# ----------------------------------------------------------------------------- the layer stack
def make_blocks(cfg: FlowHeadConfig, rngs: nnx.Rngs):
  """``diffusion_head_a``: an ``nnx.List`` of blocks, or one stacked block (``scan_layers``)."""
  if cfg.scan_layers:
    @nnx.split_rngs(splits=cfg.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def create(r):
      return ModulatedAttentionBlock(cfg, rngs=r)
    return create(rngs)
  return nnx.List([ModulatedAttentionBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])


def apply_blocks(blocks, cfg: FlowHeadConfig, x: Float[Array, "b l h"], c: Float[Array, "N h"],
                 slot: Int[Array, "b l"], mask, *, cache: FlowKVCache | None = None,
                 collect: bool = False):
  """Run ``diffusion_head_a`` over all positions.

  Positions are ``arange(l)`` (offset by the cache index): the flow head recomputes RoPE from
  ``position_ids = arange(L)`` upstream. Returns ``(x, new_cache, per_layer_outputs | None)``.
  """
  b, l, _ = x.shape
  index = cache.index if cache is not None else jnp.zeros((), jnp.int32)
  positions = (index + jnp.arange(l, dtype=jnp.int32))[None, :]
  cos, sin = rope.cos_sin(cfg.rope, positions, dtype_of(cfg.dtype))
  x = sharding.constrain(x.astype(dtype_of(cfg.dtype)), ("act_batch", "act_len", "act_embed"))

  def layer_fn(layer, x, kv):
    return layer(x, c, slot, cos, sin, mask, kv, index)

  outs = [] if collect else None
  if cfg.scan_layers:
    graphdef, stacked = nnx.split(blocks)

    def body(carry, xs):
      layer_state, kv = xs
      y, nkv = layer_fn(nnx.merge(graphdef, layer_state), carry, kv)
      return y, (y if collect else None, nkv)

    x, (ys, nkv) = jax.lax.scan(remat.wrap(body, cfg.remat_policy), x,
                                (stacked, None if cache is None else (cache.k, cache.v)))
    if collect:
      outs = list(ys)
    new_cache = None if cache is None else FlowKVCache(nkv[0], nkv[1], index + l)
    return x, new_cache, outs
  new_k, new_v = [], []
  for i, layer in enumerate(blocks):
    kv = None if cache is None else (cache.k[i], cache.v[i])
    g, st = nnx.split(layer)
    x, nkv = remat.wrap(lambda st, x, kv, g=g: layer_fn(nnx.merge(g, st), x, kv), cfg.remat_policy)(st, x, kv)
    if collect:
      outs.append(x)
    if cache is not None:
      new_k.append(nkv[0])
      new_v.append(nkv[1])
  new_cache = None if cache is None else FlowKVCache(jnp.stack(new_k), jnp.stack(new_v), index + l)
  return x, new_cache, outs


class FlowHead(nnx.Module):
  """Stand-alone container of the flow-head pieces (``time_embed``, ``diffusion_head_a``, ``diffusion_head_b``).

  Used for the ``showo2_flow_head`` fixture and for tests; :class:`~showo_jax.models.showo2.Showo2` holds the
  same three attributes directly (official state-dict prefixes) and uses the same functions.
  """

  def __init__(self, cfg: FlowHeadConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.time_embed = TimestepEmbedder(cfg, rngs=rngs)
    self.diffusion_head_a = make_blocks(cfg, rngs)
    self.diffusion_head_b = FinalLayer(cfg, rngs=rngs)

  def __call__(self, hidden: Float[Array, "b l h"], t: Float[Array, "N"], modality_positions: Int[Array, "b m 2"],
               mask, *, cache: FlowKVCache | None = None, collect: bool = False):
    """Returns ``(v_tokens [b, l, p*p*C], time_embeds [N, H], per_layer_outputs | None, new_cache)``."""
    c = self.time_embed(t)
    start = cache.index if cache is not None else 0
    slot = modality_slots(modality_positions, hidden.shape[1], start)
    x, new_cache, outs = apply_blocks(self.diffusion_head_a, self.cfg, hidden, c, slot, mask, cache=cache,
                                      collect=collect)
    return self.diffusion_head_b(x, c, slot), c, outs, new_cache
