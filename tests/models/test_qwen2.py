"""Qwen2 backbone: parity, scan == loop, cached == uncached, dtype policy, remat, sharding, real sizes."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import masks, sharding
from showo_jax.convert import common, qwen2 as cq
from showo_jax.models.qwen2 import KVCache, Qwen2Config, Qwen2ForCausalLM
from showo_jax.tools import parity


def _model(**kw):
  cfg = Qwen2Config.tiny(**kw)
  return cfg, Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))


def _ids(b=2, l=12, seed=0, vocab=320):
  return jax.random.randint(jax.random.key(seed), (b, l), 0, vocab)


@pytest.mark.parity
def test_backbone_fixture_parity(fixtures_dir):
  status, comps = parity.run_fixture("showo2_llm_backbone", os.path.join(fixtures_dir, "showo2_llm_backbone"))
  assert status == "ok", status
  assert len(comps) >= 14
  bad = [(c.name, c.max_abs) for c in comps if not c.passed]
  assert not bad, bad


def test_scan_equals_loop():
  cfg, loop = _model(tie_word_embeddings=False)
  scfg, scan = _model(tie_word_embeddings=False, scan_layers=True)
  flat = common.export_flat(loop)
  common.load_into(scan, common.stack_layers(flat, "model.layers"))
  ids = _ids()
  spec = masks.omni(jnp.asarray([[[3, 4]], [[0, 0]]]), ids.shape[1])
  run = jax.jit(lambda m, x, s: m(x, mask=s, return_hidden=True))
  a, b = run(loop, ids, spec), run(scan, ids, spec)
  # Same math; XLA may fuse the scanned body and the unrolled loop differently (float reassociation).
  np.testing.assert_allclose(np.asarray(a.logits), np.asarray(b.logits), rtol=0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(a.hidden_states), np.asarray(b.hidden_states), rtol=0, atol=1e-5)


@pytest.mark.parametrize("scan", [False, True])
def test_kv_cache_decoding_equals_full_recompute(scan):
  cfg, model = _model(scan_layers=scan)
  ids = _ids(l=14, seed=3)
  b, l = ids.shape
  spec = masks.omni(jnp.asarray([[[2, 5]], [[4, 3]]]), l)
  full = model(ids, mask=spec).logits
  # prefill 9 tokens (covering the visual block), then decode 3 one at a time, then the last 2 at once
  cache = KVCache.init(cfg, b, 16)
  out = model(ids[:, :9], mask=masks.slice_queries(spec, 0, 9), cache=cache)
  pieces, cache = [out.logits], out.cache
  for start, size in ((9, 1), (10, 1), (11, 1), (12, 2)):
    out = model(ids[:, start:start + size], mask=masks.slice_queries(spec, start, size), cache=cache)
    pieces.append(out.logits)
    cache = out.cache
  np.testing.assert_allclose(np.asarray(jnp.concatenate(pieces, 1)), np.asarray(full), atol=1e-5)
  assert int(cache.index) == l


def test_bf16_compute_close_to_f32_and_norms_in_f32():
  cfg, m32 = _model()
  _, m16 = _model(dtype="bfloat16")
  nnx.update(m16, nnx.state(m32))
  ids = _ids()
  a = m32(ids).logits
  b = m16(ids).logits
  assert b.dtype == jnp.bfloat16
  rel = float(jnp.max(jnp.abs(a - b.astype(jnp.float32))) / jnp.max(jnp.abs(a)))
  assert rel < 3e-2, rel


def test_remat_policies_do_not_change_values_or_grads():
  ids = _ids()
  results = []
  for policy in ("none", "full", "minimal"):
    cfg, model = _model(remat_policy=policy, scan_layers=True)
    loss = lambda m: jnp.mean(m(ids).logits ** 2)
    val, grads = nnx.value_and_grad(loss)(model)
    results.append((val, jax.tree.leaves(nnx.state(grads, nnx.Param))))
  for val, g in results[1:]:
    np.testing.assert_allclose(float(val), float(results[0][0]), rtol=1e-6)
    for x, y in zip(g, results[0][1]):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)


@pytest.mark.parametrize("rules", ["fsdp", "fsdp_tp"])
def test_sharded_forward_equals_single_device(rules):
  cfg, model = _model(scan_layers=True, tie_word_embeddings=False)
  ids = _ids(b=4)
  spec = masks.omni(jnp.asarray([[[2, 5]]] * 4), ids.shape[1])
  ref = model(ids, mask=spec).logits
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  with sharding.use_mesh(mesh, rules):
    sharding.shard_model(model, mesh, rules)
    kernel = model.model.layers.mlp.gate_proj.kernel.get_value()
    assert "fsdp" in str(kernel.sharding.spec)
    if rules == "fsdp_tp":
      assert "tensor" in str(kernel.sharding.spec)
    ids_s = sharding.shard_batch(np.asarray(ids), mesh, rules)
    out = jax.jit(lambda m, x, s: m(x, mask=s).logits)(model, ids_s, spec)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-5)
  assert sharding.sharded_fraction(nnx.state(model, nnx.Param), mesh, rules) > 0.9


@pytest.mark.parametrize("size,manifest", [("qwen2_5_1_5b", "showo2_1.5b.tsv"), ("qwen2_5_7b", "showo2_7b.tsv")])
def test_real_sizes_match_manifest_rows(size, manifest, manifests_dir):
  cfg = getattr(Qwen2Config, size)(scan_layers=True)
  abstract = nnx.eval_shape(lambda: Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0)))
  ours = common.flat_shapes(abstract)
  sd = {k: v for k, v in common.read_manifest(os.path.join(manifests_dir, manifest)).items() if k.startswith("showo.")}
  mapped = common.shapes_to_flat(sd, cq.rules(cfg, prefix="showo."), aliases=cq.aliases(cfg, "showo."))
  mapped = {k: v for k, v in mapped.items()}
  stacked = {}
  for k, v in mapped.items():  # the scanned model stacks layer entries on a leading axis
    if k.startswith("model.layers."):
      rest = k.split(".", 3)[3]
      stacked.setdefault("model.layers." + rest, [0, v])[0] += 1
    else:
      stacked[k] = v
  expected = {k: ((v[0],) + tuple(v[1])) if isinstance(v, list) else tuple(v) for k, v in stacked.items()}
  common.check_against(ours, expected)
  n = sum(int(np.prod(s)) for s in ours.values())
  manifest_n = sum(int(np.prod(s)) for s in sd.values())
  head = 0 if cfg.tie_word_embeddings else 0
  assert n + (cfg.vocab_size * cfg.hidden_size if cfg.tie_word_embeddings else 0) == manifest_n + head
  # >= 98 % of parameter bytes sharded under the fsdp preset on a real-size mesh shape
  mesh = sharding.make_mesh(data=1, fsdp=8, tensor=1)
  assert sharding.sharded_fraction(nnx.state(abstract, nnx.Param), mesh, "fsdp") >= 0.98
