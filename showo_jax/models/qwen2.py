"""Qwen2 / Qwen2.5 decoder (the Show-o2 LLM backbone), spec ``showo2.md`` §2.

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/qwen2.py`` (a copy of transformers 4.47 Qwen2 whose
model passes the given 4-D mask straight to SDPA). Attribute names follow the HF state dict
(``model.layers.N.self_attn.q_proj`` …) so the converter is layout rules only.

* RMSNorm in float32, cast back, then times the weight; GQA with q/k/v bias, no o_proj bias; rotate-half
  RoPE with theta 1e6; SwiGLU MLP; final norm; tied (1.5B) or untied (7B) LM head.
* The mask is a :class:`~showo_jax.masks.MaskSpec` (omni, causal …) or ``None`` (causal); positions are
  ``arange(L)`` (offset by the cache index when decoding) unless given.
* ``scan_layers``: the layers are created stacked (``nnx.vmap``) and applied with ``lax.scan`` (flat compile
  time in depth); otherwise a Python loop over an ``nnx.List``. Both give identical outputs (tested).
* KV cache: :class:`KVCache` holds ``[layers, b, s_max, k, e]`` keys/values and the write index; decoding
  one or more new tokens equals full recomputation (tested).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Array, Float, Int

from showo_jax import attention as attention_lib
from showo_jax import masks as masks_lib
from showo_jax import sharding
from showo_jax.models import layers, rope, stack

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_of(name: str):
  if name not in DTYPES:
    raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}")
  return DTYPES[name]


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
  vocab_size: int = 151669
  hidden_size: int = 1536
  intermediate_size: int = 8960
  num_hidden_layers: int = 28
  num_attention_heads: int = 12
  num_key_value_heads: int = 2
  head_dim: int | None = None          # None = hidden_size // num_attention_heads
  rope_theta: float = 1e6
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = True
  # execution policy
  scan_layers: bool = False
  remat_policy: str = "none"
  dtype: str = "float32"               # activation / matmul dtype
  param_dtype: str = "float32"
  attention_impl: str = "xla"

  @property
  def kv_dim(self) -> int:
    return self.num_key_value_heads * self.dim_head

  @property
  def dim_head(self) -> int:
    return self.head_dim or self.hidden_size // self.num_attention_heads

  @classmethod
  def qwen2_5_1_5b(cls, **kw) -> "Qwen2Config":
    """Qwen2.5-1.5B-Instruct resized to Show-o2's 151669-row vocabulary (tied head)."""
    return cls(**{**dict(vocab_size=151669, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True), **kw})

  @classmethod
  def qwen2_5_7b(cls, **kw) -> "Qwen2Config":
    """Qwen2.5-7B-Instruct resized to 151669 rows (untied head)."""
    return cls(**{**dict(vocab_size=151669, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False), **kw})

  @classmethod
  def tiny(cls, **kw) -> "Qwen2Config":
    return cls(**{**dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True), **kw})

  @classmethod
  def from_hf(cls, hf: dict, **kw) -> "Qwen2Config":
    """From an HF ``config.json`` dict (unknown execution keys are not read from it)."""
    if hf.get("use_sliding_window"):
      raise ValueError("sliding-window attention is not used by Show-o2 and not supported")
    if hf.get("rope_scaling"):
      raise ValueError(f"rope_scaling {hf['rope_scaling']} is not supported for the Qwen2 backbone")
    return cls(**{**dict(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                         intermediate_size=hf["intermediate_size"], num_hidden_layers=hf["num_hidden_layers"],
                         num_attention_heads=hf["num_attention_heads"],
                         num_key_value_heads=hf["num_key_value_heads"], head_dim=hf.get("head_dim"),
                         rope_theta=hf.get("rope_theta", 1e6), rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
                         tie_word_embeddings=hf.get("tie_word_embeddings", False)), **kw})


PRESETS = {"qwen2_5_1_5b": Qwen2Config.qwen2_5_1_5b, "qwen2_5_7b": Qwen2Config.qwen2_5_7b,
           "tiny": Qwen2Config.tiny}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """Keys/values of every layer, ``[layers, b, s_max, k, e]``, and how many positions are written."""
  k: Float[Array, "L b s k e"]
  v: Float[Array, "L b s k e"]
  index: Int[Array, ""]

  @classmethod
  def init(cls, cfg: Qwen2Config, batch: int, max_len: int, dtype=None) -> "KVCache":
    dtype = dtype or dtype_of(cfg.dtype)
    shape = (cfg.num_hidden_layers, batch, max_len, cfg.num_key_value_heads, cfg.dim_head)
    return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Qwen2Output:
  logits: Any
  last_hidden_state: Any          # after the final norm (what the Show-o2 flow head consumes)
  hidden_states: Any = None       # [L+1, b, l, d]: embeddings, then each layer's output (pre final norm)
  cache: KVCache | None = None


class Qwen2Attention(nnx.Module):
  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    d, e = cfg.hidden_size, cfg.dim_head
    lin = lambda i, o, bias, names: layers.Linear(i, o, use_bias=bias, names=names, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.q_proj = lin(d, cfg.num_attention_heads * e, True, ("embed", "heads"))
    self.k_proj = lin(d, cfg.kv_dim, True, ("embed", "kv_heads"))
    self.v_proj = lin(d, cfg.kv_dim, True, ("embed", "kv_heads"))
    self.o_proj = lin(cfg.num_attention_heads * e, d, False, ("heads", "embed"))
    self.cfg = cfg

  def __call__(self, x, cos, sin, mask, cache_kv=None, index=None):
    cfg = self.cfg
    b, l, _ = x.shape
    n, k, e = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.dim_head
    q = checkpoint_name(self.q_proj(x), "query_proj").reshape(b, l, n, e)
    kk = checkpoint_name(self.k_proj(x), "key_proj").reshape(b, l, k, e)
    v = checkpoint_name(self.v_proj(x), "value_proj").reshape(b, l, k, e)
    q, kk = rope.apply(q, cos, sin), rope.apply(kk, cos, sin)
    q = sharding.constrain(q, ("act_batch", "act_len", "act_heads", None))
    if cache_kv is not None:
      ck, cv = cache_kv
      ck = jax.lax.dynamic_update_slice_in_dim(ck, kk.astype(ck.dtype), index, axis=1)
      cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), index, axis=1)
      kk, v, new_kv = ck, cv, (ck, cv)
    else:
      new_kv = None
    out = attention_lib.dot_product_attention(q, kk, v, mask, scale=e ** -0.5, impl=cfg.attention_impl)
    out = checkpoint_name(out.reshape(b, l, n * e), "attn_out")
    return self.o_proj(out), new_kv


class Qwen2MLP(nnx.Module):
  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.gate_proj = layers.Linear(d, f, use_bias=False, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs)
    self.up_proj = layers.Linear(d, f, use_bias=False, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs)
    self.down_proj = layers.Linear(f, d, use_bias=False, names=("mlp", "embed"), dtype=dt, param_dtype=pdt, rngs=rngs)

  def __call__(self, x):
    gate = checkpoint_name(self.gate_proj(x), "mlp_gate")
    up = checkpoint_name(self.up_proj(x), "mlp_up")
    h = sharding.constrain(jax.nn.silu(gate) * up, ("act_batch", "act_len", "act_mlp"))
    return self.down_proj(h)


class Qwen2DecoderLayer(nnx.Module):
  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs):
    pdt = dtype_of(cfg.param_dtype)
    self.self_attn = Qwen2Attention(cfg, rngs=rngs)
    self.mlp = Qwen2MLP(cfg, rngs=rngs)
    self.input_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=pdt)
    self.post_attention_layernorm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=pdt)

  def __call__(self, x, cos, sin, mask, cache_kv=None, index=None):
    a, new_kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache_kv, index)
    # Pin the branch outputs before each residual add: with fsdp_tp rules and no constraint here, XLA's
    # SPMD partitioner on jax 0.10.2 was seen to miscompile chained matmuls whose operands are sharded
    # on both fsdp and tensor (wrong values, not just a slow layout).
    act = ("act_batch", "act_len", "act_embed")
    h = x + sharding.constrain(a, act)
    y = h + sharding.constrain(self.mlp(self.post_attention_layernorm(h)), act)
    return sharding.constrain(y, ("act_batch", "act_len", "act_embed")), new_kv


class Qwen2Model(nnx.Module):
  """Embedding, decoder stack and final norm (HF ``Qwen2Model``)."""

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    self.cfg = cfg
    self.embed_tokens = layers.Embed(cfg.vocab_size, cfg.hidden_size, dtype=dt, param_dtype=pdt, rngs=rngs)
    if cfg.scan_layers:
      @nnx.split_rngs(splits=cfg.num_hidden_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
      def create(r):
        return Qwen2DecoderLayer(cfg, rngs=r)
      self.layers = create(rngs)
    else:
      self.layers = nnx.List([Qwen2DecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])
    self.norm = layers.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=pdt)

  def __call__(self, inputs_embeds, *, mask=None, positions=None, cache: KVCache | None = None,
               return_hidden: bool = False):
    cfg = self.cfg
    b, l, _ = inputs_embeds.shape
    dt = dtype_of(cfg.dtype)
    index = cache.index if cache is not None else jnp.zeros((), jnp.int32)
    if positions is None:
      positions = (index + jnp.arange(l, dtype=jnp.int32))[None, :]
    if mask is None:
      q = index + jnp.arange(l, dtype=jnp.int32)
      mask = masks_lib.MaskSpec(jnp.zeros((b, l), jnp.int32), jnp.broadcast_to(q + 1, (b, l)))
    cos, sin = rope.cos_sin(rope.RopeConfig(cfg.dim_head, cfg.rope_theta), positions, dt)
    x = sharding.constrain(inputs_embeds.astype(dt), ("act_batch", "act_len", "act_embed"))

    def layer_fn(layer, x, kv):
      return layer(x, cos, sin, mask, kv, index)

    x, hiddens, nkv = stack.run(self.layers, x, layer_fn, scan=cfg.scan_layers, remat_policy=cfg.remat_policy,
                                cache_kv=None if cache is None else (cache.k, cache.v),
                                return_hidden=return_hidden)
    new_cache = None if cache is None else KVCache(nkv[0], nkv[1], index + l)
    return self.norm(x), hiddens, new_cache


class Qwen2ForCausalLM(nnx.Module):
  """Decoder plus LM head; ``__call__`` returns :class:`Qwen2Output`."""

  def __init__(self, cfg: Qwen2Config, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.model = Qwen2Model(cfg, rngs=rngs)
    if not cfg.tie_word_embeddings:
      self.lm_head = layers.Linear(cfg.hidden_size, cfg.vocab_size, use_bias=False, names=("embed", "vocab"),
                                   dtype=dtype_of(cfg.dtype), param_dtype=dtype_of(cfg.param_dtype), rngs=rngs)
    else:
      self.lm_head = None

  def embed(self, ids: Int[Array, "b l"]) -> Float[Array, "b l d"]:
    return self.model.embed_tokens(ids)

  def logits(self, hidden: Float[Array, "b l d"]) -> Float[Array, "b l v"]:
    out = self.model.embed_tokens.attend(hidden) if self.lm_head is None else self.lm_head(hidden)
    return sharding.constrain(out, ("act_batch", "act_len", "act_vocab"))

  def __call__(self, input_ids: Int[Array, "b l"] | None = None, *,
               inputs_embeds: Float[Array, "b l d"] | None = None,
               mask: masks_lib.MaskSpec | None = None, positions: Int[Array, "b l"] | None = None,
               cache: KVCache | None = None, return_hidden: bool = False,
               compute_logits: bool = True) -> Qwen2Output:
    """Run the LM. ``mask`` rows are the *new* queries; key ranges are absolute positions."""
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if inputs_embeds is None:
      inputs_embeds = self.embed(input_ids)
    last, hiddens, new_cache = self.model(inputs_embeds, mask=mask, positions=positions, cache=cache,
                                          return_hidden=return_hidden)
    logits = self.logits(last) if compute_logits else None
    return Qwen2Output(logits=logits, last_hidden_state=last, hidden_states=hiddens, cache=new_cache)
