"""Phi-1.5 backbone (Show-o v1): scan == loop, cached == uncached, mask forms, QK-LayerNorm + partial RoPE,
converter round trip and strictness, HF config handling, dtype policy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import masks
from showo_jax.convert import common, phi as cphi
from showo_jax.models import rope
from showo_jax.models.phi import KVCache, PhiConfig, PhiForCausalLM


def _model(**kw):
  cfg = PhiConfig.tiny(**kw)
  return cfg, PhiForCausalLM(cfg, rngs=nnx.Rngs(0))


def _ids(b=2, l=12, seed=0, vocab=175):
  return jax.random.randint(jax.random.key(seed), (b, l), 0, vocab)


def _randomize(model, seed=1):
  """Non-trivial norms/biases so that QK-LayerNorm and biases matter in the comparisons."""
  flat = common.export_flat(model)
  rng = np.random.default_rng(seed)
  out = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in flat.items()}
  return common.load_into(model, out)


def test_scan_equals_loop():
  _, loop = _model()
  _randomize(loop)
  scfg, scan = _model(scan_layers=True)
  common.load_into(scan, common.stack_layers(common.export_flat(loop), "model.layers"))
  ids = _ids()
  spec = masks.blocks(jnp.asarray([[[3, 8]], [[0, 0]]]), ids.shape[1])
  run = jax.jit(lambda m, x, s: m(x, mask=s, return_hidden=True))
  a, b = run(loop, ids, spec), run(scan, ids, spec)
  np.testing.assert_allclose(np.asarray(a.logits), np.asarray(b.logits), atol=1e-5)
  np.testing.assert_allclose(np.asarray(a.hidden_states), np.asarray(b.hidden_states), atol=1e-5)
  assert a.hidden_states.shape == (3, 2, 12, 64)


@pytest.mark.parametrize("scan", [True])
def test_kv_cache_decoding_equals_full_recompute(scan):
  cfg, model = _model(scan_layers=scan)
  _randomize(model)
  ids = _ids(l=14, seed=3)
  b, l = ids.shape
  spec = masks.prefix_full(b, l, 6)
  run = jax.jit(lambda m, x, s, c: m(x, mask=s, cache=c))
  full = run(model, ids, spec, None).logits
  cache = KVCache.init(cfg, b, 16)
  out = run(model, ids[:, :10], masks.slice_queries(spec, 0, 10), cache)
  pieces, cache = [out.logits], out.cache
  for start, size in ((10, 1), (11, 1), (12, 1), (13, 1)):
    out = run(model, ids[:, start:start + size], masks.slice_queries(spec, start, size), cache)
    pieces.append(out.logits)
    cache = out.cache
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, 1)), np.asarray(full), atol=1e-5)
  assert int(cache.index) == l
  # mask=None with a cache is causal at the absolute positions
  causal = jax.jit(lambda m, x, c: m(x, cache=c))
  a = causal(model, ids[:, :10], KVCache.init(cfg, b, 16))
  c = causal(model, ids[:, 10:11], a.cache)
  np.testing.assert_allclose(np.asarray(jnp.concatenate([a.logits, c.logits], 1)),
                             np.asarray(run(model, ids, masks.causal(b, l), None).logits[:, :11]), atol=1e-5)


def test_dense_and_keyrange_masks_agree():
  _, model = _model()
  ids = _ids()
  spec = masks.blocks(jnp.asarray([[[2, 5]], [[4, 6]]]), ids.shape[1])
  run = jax.jit(lambda m, x, s: m(x, mask=s).logits)
  a, b = run(model, ids, spec), run(model, ids, masks.dense(spec))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_qk_layernorm_before_partial_rope():
  """Reference attention recomputed by hand for layer 0 (LN over head_dim, then rotate the first half)."""
  cfg, model = _model()
  _randomize(model)
  x = jax.random.normal(jax.random.key(0), (1, 5, cfg.hidden_size))
  att = model.model.layers[0].self_attn
  n, e, r = cfg.num_attention_heads, cfg.dim_head, cfg.rotary_dim
  assert r == e // 2

  def ln(t, mod):
    mu = t.mean(-1, keepdims=True)
    var = ((t - mu) ** 2).mean(-1, keepdims=True)
    return (t - mu) / np.sqrt(var + 1e-5) * np.asarray(mod.scale[...]) + np.asarray(mod.bias[...])

  xn = np.asarray(x)
  proj = lambda lin: (xn @ np.asarray(lin.kernel[...]) + np.asarray(lin.bias[...])).reshape(1, 5, n, e)
  q, k, v = ln(proj(att.q_proj), att.q_layernorm), ln(proj(att.k_proj), att.k_layernorm), proj(att.v_proj)
  inv = 1.0 / 10000 ** (np.arange(0, r, 2) / r)
  ang = np.arange(5)[:, None] * inv[None]
  cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

  def rot(t):
    a, rest = t[..., :r], t[..., r:]
    half = np.concatenate([-a[..., r // 2:], a[..., :r // 2]], -1)
    return np.concatenate([a * cos[None, :, None] + half * sin[None, :, None], rest], -1)

  q, k = rot(q), rot(k)
  s = np.einsum("blne,bsne->bnls", q, k) / np.sqrt(e) + np.triu(np.full((5, 5), -1e30), 1)
  p = np.exp(s - s.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  o = np.einsum("bnls,bsne->blne", p, v).reshape(1, 5, n * e)
  want = o @ np.asarray(att.dense.kernel[...]) + np.asarray(att.dense.bias[...])
  cos_j, sin_j = rope.cos_sin(rope.RopeConfig(e, 1e4, rotary_dim=r), jnp.arange(5)[None], jnp.float32)
  got, _ = att(x, cos_j, sin_j, masks.causal(1, 5))
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


def test_parallel_block_single_layernorm():
  cfg, model = _model()
  _randomize(model)
  layer = model.model.layers[0]
  x = jax.random.normal(jax.random.key(2), (2, 6, cfg.hidden_size))
  cos, sin = rope.cos_sin(rope.RopeConfig(cfg.dim_head, 1e4, rotary_dim=cfg.rotary_dim), jnp.arange(6)[None],
                          jnp.float32)

  @jax.jit
  def both(layer, x):
    y, _ = layer(x, cos, sin, masks.causal(2, 6))
    n = layer.input_layernorm(x)
    a, _ = layer.self_attn(n, cos, sin, masks.causal(2, 6))
    return y, x + a + layer.mlp(n)

  y, want = both(layer, x)
  np.testing.assert_allclose(np.asarray(y), np.asarray(want), atol=1e-6)


def test_hf_state_dict_round_trip_and_strictness():
  cfg, model = _model()
  _randomize(model)
  sd = cphi.from_flat(common.export_flat(model), cfg)
  assert list(sd) == cphi.official_keys(cfg)
  assert sd["lm_head.weight"].shape == (175, 64) and sd["model.layers.0.self_attn.q_layernorm.weight"].shape == (16,)
  _, other = _model()
  common.load_into(other, cphi.to_flat(sd, cfg))
  ids = _ids()
  np.testing.assert_array_equal(np.asarray(model(ids).logits), np.asarray(other(ids).logits))
  # scanned layout round trip
  scfg = PhiConfig.tiny(scan_layers=True)
  smodel = PhiForCausalLM(scfg, rngs=nnx.Rngs(1))
  common.load_into(smodel, cphi.to_flat(sd, scfg))
  back = cphi.from_flat(common.export_flat(smodel), scfg)
  assert all(np.array_equal(back[k], sd[k]) for k in sd) and list(back) == list(sd)
  # strictness: unknown key, missing key, wrong shape
  with pytest.raises(common.ConversionError, match="unused source keys"):
    cphi.to_flat({**sd, "model.layers.0.self_attn.o_proj.weight": sd["lm_head.weight"]}, cfg)
  missing = {k: v for k, v in sd.items() if "k_layernorm.bias" not in k}
  with pytest.raises(common.ConversionError, match="unfilled"):
    common.load_into(PhiForCausalLM(cfg, rngs=nnx.Rngs(0)), cphi.to_flat(missing, cfg))
  bad = dict(sd, **{"model.final_layernorm.weight": np.ones(63, np.float32)})
  with pytest.raises(common.ConversionError, match="shape mismatch"):
    common.load_into(PhiForCausalLM(cfg, rngs=nnx.Rngs(0)), cphi.to_flat(bad, cfg))


def test_from_phi_pretrained_adds_qk_norms_and_resizes():
  src_cfg = PhiConfig.tiny(vocab_size=150, qk_layernorm=False)
  src = PhiForCausalLM(src_cfg, rngs=nnx.Rngs(0))
  sd = cphi.from_flat(common.export_flat(src), src_cfg)
  assert not any("q_layernorm" in k for k in sd)
  cfg = PhiConfig.tiny(vocab_size=175)
  out = cphi.from_phi_pretrained(sd, cfg, seed=0)
  assert out["model.embed_tokens.weight"].shape == (175, 64) and out["lm_head.bias"].shape == (175,)
  np.testing.assert_array_equal(out["model.embed_tokens.weight"][:150], sd["model.embed_tokens.weight"])
  np.testing.assert_array_equal(out["lm_head.bias"][150:], 0)
  np.testing.assert_array_equal(out["model.layers.1.self_attn.k_layernorm.weight"], 1)
  model = PhiForCausalLM(cfg, rngs=nnx.Rngs(0))
  common.load_into(model, cphi.to_flat(out, cfg))


def test_from_hf_config():
  hf = {"vocab_size": 51200, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
        "num_attention_heads": 32, "num_key_value_heads": 32, "partial_rotary_factor": 0.5, "rope_theta": 10000.0,
        "layer_norm_eps": 1e-5, "hidden_act": "gelu_new", "qk_layernorm": False, "tie_word_embeddings": False,
        "max_position_embeddings": 2048}
  cfg = PhiConfig.from_hf(hf)
  assert cfg == PhiConfig.phi_1_5() and cfg.qk_layernorm and cfg.rotary_dim == 32
  for bad in ({"rope_scaling": {"type": "linear", "factor": 2.0}}, {"hidden_act": "relu"},
              {"tie_word_embeddings": True}):
    with pytest.raises(ValueError):
      PhiConfig.from_hf({**hf, **bad})
  with pytest.raises(ValueError, match="exactly one"):
    _model()[1](None)


def test_real_size_shapes_and_count():
  model = nnx.eval_shape(lambda: PhiForCausalLM(PhiConfig.phi_1_5(scan_layers=True), rngs=nnx.Rngs(0)))
  shapes = common.flat_shapes(model)
  # microsoft/phi-1_5 plus Show-o's 24 x 2 QK-LayerNorms (64 weight + 64 bias each).
  assert sum(int(np.prod(s)) for s in shapes.values()) == 1418270720 + 24 * 2 * 128
  assert shapes["model.layers.mlp.fc1.kernel"] == (24, 2048, 8192)


def test_bf16_compute_close_to_f32():
  _, m32 = _model()
  _, m16 = _model(dtype="bfloat16")
  nnx.update(m16, nnx.state(m32))
  ids = _ids()
  run = jax.jit(lambda m, x: m(x).logits)
  a, b = run(m32, ids), run(m16, ids)
  assert b.dtype == jnp.float32  # logits are always float32 (the reference's .float())
  rel = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
  assert rel < 3e-2, rel
