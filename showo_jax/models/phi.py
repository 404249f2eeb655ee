"""Phi-1.5 decoder with Show-o's forced QK-LayerNorm (the Show-o v1 backbone), spec ``showo.md`` §2.

Reference: ``showlab/Show-o@45a5a2d:models/phi.py`` (a copy of transformers' Phi whose ``PhiForCausalLM``
forces ``qk_layernorm=True`` and whose ``PhiModel`` passes the given 4-D mask straight to attention).
Attribute names follow the HF state dict (``model.layers.N.self_attn.dense``, ``mlp.fc1``,
``model.final_layernorm`` …) so the converter is layout rules only.

* Parallel block with ONE LayerNorm: ``y = x + dense(attn(LN(x))) + fc2(gelu_new(fc1(LN(x))))``.
* q/k/v/dense all have biases. ``q_layernorm`` / ``k_layernorm`` are LayerNorms over head_dim, applied per
  head BEFORE the partial rotary embedding (rotate-half on the first ``rotary_dim`` channels only).
* ``lm_head`` is untied and has a bias; logits are returned in float32 (the reference's ``.float()``).
* The mask is a :class:`~showo_jax.masks.MaskSpec`, a boolean ``[b, l, s]`` array (needed for the
  non-contiguous CLIP-ViT MMU mask) or ``None`` (causal). Positions are ``arange(L)`` (offset by the cache
  index when decoding), as the reference: left padding shifts text positions.
* ``scan_layers``: stacked layers (``nnx.vmap``) applied with ``lax.scan``; otherwise a Python loop over an
  ``nnx.List``. KV cache: :class:`KVCache` ``[layers, b, s_max, k, e]`` + write index (Qwen2 pattern).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Array, Bool, Float, Int

from showo_jax import attention as attention_lib
from showo_jax import masks as masks_lib
from showo_jax import sharding
from showo_jax.models import layers, rope, stack
from showo_jax.models.qwen2 import dtype_of

Mask = masks_lib.MaskSpec | Bool[Array, "b l s"] | None


def _dense(linear: layers.Linear, x: jax.Array) -> jax.Array:
  """``linear`` on ``x`` flattened to 2-D: XLA:CPU turns the weight gradient of a 3-D ``bli,io->blo``
  einsum (two contracting dims) into a slow loop; one ``[b·l, i] @ [i, o]`` gemm is ~2.4x faster there."""
  return linear(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (-1,))


@dataclasses.dataclass(frozen=True)
class PhiConfig:
  vocab_size: int = 51200
  hidden_size: int = 2048
  intermediate_size: int = 8192
  num_hidden_layers: int = 24
  num_attention_heads: int = 32
  num_key_value_heads: int | None = None   # None = num_attention_heads (Phi-1.5 has no GQA)
  partial_rotary_factor: float = 0.5
  rope_theta: float = 10000.0
  layer_norm_eps: float = 1e-5
  max_position_embeddings: int = 2048
  qk_layernorm: bool = True                # Show-o forces it (PhiForCausalLM.__init__)
  # execution policy
  scan_layers: bool = False
  remat_policy: str = "none"
  dtype: str = "float32"
  param_dtype: str = "float32"
  attention_impl: str = "xla"

  @property
  def dim_head(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def kv_heads(self) -> int:
    return self.num_key_value_heads or self.num_attention_heads

  @property
  def rotary_dim(self) -> int:
    # The reference: int(partial_rotary_factor * head_dim).
    return int(self.partial_rotary_factor * self.dim_head)

  @classmethod
  def phi_1_5(cls, **kw) -> "PhiConfig":
    """``microsoft/phi-1_5`` (51200 rows; Show-o resizes to 58498, see ``ShowoConfig.show_o``)."""
    return cls(**{**dict(vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
                         num_attention_heads=32, num_key_value_heads=32), **kw})

  @classmethod
  def tiny(cls, **kw) -> "PhiConfig":
    return cls(**{**dict(vocab_size=175, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4), **kw})

  @classmethod
  def from_hf(cls, hf: dict, **kw) -> "PhiConfig":
    """From an HF Phi ``config.json`` dict. ``qk_layernorm`` is forced on, as Show-o's PhiForCausalLM does."""
    if hf.get("rope_scaling"):
      raise ValueError(f"rope_scaling {hf['rope_scaling']} is not used by Show-o and not supported")
    if hf.get("hidden_act", "gelu_new") != "gelu_new":
      raise ValueError(f"hidden_act {hf['hidden_act']!r} is not supported (Phi-1.5 uses gelu_new)")
    if hf.get("tie_word_embeddings", False):
      raise ValueError("Show-o's Phi has an untied lm_head with a bias; tie_word_embeddings must be false")
    return cls(**{**dict(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                         intermediate_size=hf["intermediate_size"], num_hidden_layers=hf["num_hidden_layers"],
                         num_attention_heads=hf["num_attention_heads"],
                         num_key_value_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
                         partial_rotary_factor=hf.get("partial_rotary_factor", 0.5),
                         rope_theta=hf.get("rope_theta", 10000.0), layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
                         max_position_embeddings=hf.get("max_position_embeddings", 2048),
                         qk_layernorm=True), **kw})


PRESETS = {"phi_1_5": PhiConfig.phi_1_5, "tiny": PhiConfig.tiny}


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
  """Keys/values of every layer, ``[layers, b, s_max, k, e]``, and how many positions are written."""
  k: Float[Array, "L b s k e"]
  v: Float[Array, "L b s k e"]
  index: Int[Array, ""]

  @classmethod
  def init(cls, cfg: PhiConfig, batch: int, max_len: int, dtype=None) -> "KVCache":
    dtype = dtype or dtype_of(cfg.dtype)
    shape = (cfg.num_hidden_layers, batch, max_len, cfg.kv_heads, cfg.dim_head)
    return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class PhiOutput:
  logits: Any                     # float32 [b, l, v] (None with compute_logits=False)
  last_hidden_state: Any          # after final_layernorm
  hidden_states: Any = None       # [L+1, b, l, d]: embeddings, then each layer's output (pre final norm)
  cache: KVCache | None = None


class PhiAttention(nnx.Module):
  def __init__(self, cfg: PhiConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    d, e = cfg.hidden_size, cfg.dim_head
    lin = lambda i, o, names: layers.Linear(i, o, use_bias=True, names=names, dtype=dt, param_dtype=pdt, rngs=rngs)
    self.q_proj = lin(d, cfg.num_attention_heads * e, ("embed", "heads"))
    self.k_proj = lin(d, cfg.kv_heads * e, ("embed", "kv_heads"))
    self.v_proj = lin(d, cfg.kv_heads * e, ("embed", "kv_heads"))
    self.dense = lin(cfg.num_attention_heads * e, d, ("heads", "embed"))
    if cfg.qk_layernorm:
      self.q_layernorm = layers.LayerNorm(e, eps=cfg.layer_norm_eps, names=("head_dim",), param_dtype=pdt)
      self.k_layernorm = layers.LayerNorm(e, eps=cfg.layer_norm_eps, names=("head_dim",), param_dtype=pdt)
    else:
      self.q_layernorm = self.k_layernorm = None
    self.cfg = cfg

  def __call__(self, x, cos, sin, mask, cache_kv=None, index=None):
    cfg = self.cfg
    b, l, _ = x.shape
    n, k, e = cfg.num_attention_heads, cfg.kv_heads, cfg.dim_head
    q = checkpoint_name(_dense(self.q_proj, x), "query_proj").reshape(b, l, n, e)
    kk = checkpoint_name(_dense(self.k_proj, x), "key_proj").reshape(b, l, k, e)
    v = checkpoint_name(_dense(self.v_proj, x), "value_proj").reshape(b, l, k, e)
    if self.q_layernorm is not None:
      # Per-head LayerNorm over head_dim, BEFORE the rotary embedding (reference order).
      q, kk = self.q_layernorm(q), self.k_layernorm(kk)
    q, kk = rope.apply(q, cos, sin), rope.apply(kk, cos, sin)  # partial: first rotary_dim channels
    q = sharding.constrain(q, ("act_batch", "act_len", "act_heads", None))
    if cache_kv is not None:
      ck, cv = cache_kv
      ck = jax.lax.dynamic_update_slice_in_dim(ck, kk.astype(ck.dtype), index, axis=1)
      cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), index, axis=1)
      kk, v, new_kv = ck, cv, (ck, cv)
    else:
      new_kv = None
    # The reference divides fp32 scores by sqrt(head_dim); the xla backend scores in fp32 too.
    out = attention_lib.dot_product_attention(q, kk, v, mask, scale=e ** -0.5, impl=cfg.attention_impl)
    out = checkpoint_name(out.reshape(b, l, n * e), "attn_out")
    return _dense(self.dense, out), new_kv


class PhiMLP(nnx.Module):
  def __init__(self, cfg: PhiConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.fc1 = layers.Linear(d, f, use_bias=True, names=("embed", "mlp"), dtype=dt, param_dtype=pdt, rngs=rngs)
    self.fc2 = layers.Linear(f, d, use_bias=True, names=("mlp", "embed"), dtype=dt, param_dtype=pdt, rngs=rngs)

  def __call__(self, x):
    h = checkpoint_name(_dense(self.fc1, x), "mlp_up")
    # gelu_new = tanh approximation.
    h = sharding.constrain(layers.gelu_tanh(h), ("act_batch", "act_len", "act_mlp"))
    return _dense(self.fc2, h)


class PhiDecoderLayer(nnx.Module):
  def __init__(self, cfg: PhiConfig, *, rngs: nnx.Rngs):
    self.self_attn = PhiAttention(cfg, rngs=rngs)
    self.mlp = PhiMLP(cfg, rngs=rngs)
    self.input_layernorm = layers.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps,
                                            param_dtype=dtype_of(cfg.param_dtype))

  def __call__(self, x, cos, sin, mask, cache_kv=None, index=None):
    # Parallel attention / MLP on the same normalised input (one LayerNorm per layer).
    n = self.input_layernorm(x)
    a, new_kv = self.self_attn(n, cos, sin, mask, cache_kv, index)
    y = a + self.mlp(n) + x
    return sharding.constrain(y, ("act_batch", "act_len", "act_embed")), new_kv


class PhiModel(nnx.Module):
  """Embedding, decoder stack and final LayerNorm (HF ``PhiModel``)."""

  def __init__(self, cfg: PhiConfig, *, rngs: nnx.Rngs):
    dt, pdt = dtype_of(cfg.dtype), dtype_of(cfg.param_dtype)
    self.cfg = cfg
    self.embed_tokens = layers.Embed(cfg.vocab_size, cfg.hidden_size, dtype=dt, param_dtype=pdt, rngs=rngs)
    if cfg.scan_layers:
      @nnx.split_rngs(splits=cfg.num_hidden_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
      def create(r):
        return PhiDecoderLayer(cfg, rngs=r)
      self.layers = create(rngs)
    else:
      self.layers = nnx.List([PhiDecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_hidden_layers)])
    self.final_layernorm = layers.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, param_dtype=pdt)

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
    cos, sin = rope.cos_sin(rope.RopeConfig(cfg.dim_head, cfg.rope_theta, rotary_dim=cfg.rotary_dim), positions, dt)
    x = sharding.constrain(inputs_embeds.astype(dt), ("act_batch", "act_len", "act_embed"))

    def layer_fn(layer, x, kv):
      return layer(x, cos, sin, mask, kv, index)

    x, hiddens, nkv = stack.run(self.layers, x, layer_fn, scan=cfg.scan_layers, remat_policy=cfg.remat_policy,
                                cache_kv=None if cache is None else (cache.k, cache.v),
                                return_hidden=return_hidden)
    new_cache = None if cache is None else KVCache(nkv[0], nkv[1], index + l)
    return self.final_layernorm(x), hiddens, new_cache


class PhiForCausalLM(nnx.Module):
  """Decoder plus the biased, untied LM head; ``__call__`` returns :class:`PhiOutput`."""

  def __init__(self, cfg: PhiConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.model = PhiModel(cfg, rngs=rngs)
    self.lm_head = layers.Linear(cfg.hidden_size, cfg.vocab_size, use_bias=True, names=("embed", "vocab"),
                                 dtype=dtype_of(cfg.dtype), param_dtype=dtype_of(cfg.param_dtype), rngs=rngs)

  def embed(self, ids: Int[Array, "b l"]) -> Float[Array, "b l d"]:
    return self.model.embed_tokens(ids)

  def logits(self, hidden: Float[Array, "*b d"]) -> Float[Array, "*b v"]:
    out = _dense(self.lm_head, hidden).astype(jnp.float32)
    return sharding.constrain(out, ("act_batch", "act_len", "act_vocab")) if out.ndim == 3 else out

  def logits_range(self, hidden: Float[Array, "*b d"], start: int, stop: int) -> Float[Array, "*b r"]:
    """Logits of the vocabulary rows ``[start, stop)`` only (MaskGIT needs just the codebook slice)."""
    dt = dtype_of(self.cfg.dtype)
    w = self.lm_head.kernel[...][:, start:stop].astype(dt)
    y = jnp.einsum("...d,dv->...v", hidden.astype(dt), w) + self.lm_head.bias[...][start:stop].astype(dt)
    return y.astype(jnp.float32)

  def __call__(self, input_ids: Int[Array, "b l"] | None = None, *,
               inputs_embeds: Float[Array, "b l d"] | None = None, mask: Mask = None,
               positions: Int[Array, "b l"] | None = None, cache: KVCache | None = None,
               return_hidden: bool = False, compute_logits: bool = True) -> PhiOutput:
    """Run the LM. With a cache, ``mask`` rows are the *new* queries with absolute key positions."""
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("pass exactly one of input_ids or inputs_embeds")
    if inputs_embeds is None:
      inputs_embeds = self.embed(input_ids)
    last, hiddens, new_cache = self.model(inputs_embeds, mask=mask, positions=positions, cache=cache,
                                          return_hidden=return_hidden)
    logits = self.logits(last) if compute_logits else None
    return PhiOutput(logits=logits, last_hidden_state=last, hidden_states=hiddens, cache=new_cache)
