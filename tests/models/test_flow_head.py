"""Flow head: fixture parity, scan == loop, KV cache == full pass, modality-restricted adaLN."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import masks
from showo_jax.convert import common
from showo_jax.models import flow_head as fh
from showo_jax.tools import parity


@pytest.mark.parity
def test_flow_head_fixture_parity(fixtures_dir):
  status, comps = parity.run_fixture("showo2_flow_head", os.path.join(fixtures_dir, "showo2_flow_head"))
  assert status == "ok", status
  assert len(comps) == 10  # mask, t_freq, then time embeds / 2 layers / output for loop and scan
  bad = [(c.name, c.max_abs) for c in comps if not c.passed]
  assert not bad, bad


def host_random_init(model, seed=0):
  """Fill every parameter from numpy (no per-op XLA compiles): N(0, 1/fan_in), norm scales 1 + 0.1·N."""
  rng = np.random.default_rng(seed)
  for path, var in common.flat_state(model).items():
    shape = var.get_value().shape
    if path.endswith("scale"):
      value = 1 + 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1:
      value = 0.05 * rng.standard_normal(shape)
    else:
      value = rng.standard_normal(shape) / np.sqrt(shape[-2])
    var.set_value(jnp.asarray(value, var.get_value().dtype))
  return model


def _random_head(scan=False, seed=0):
  cfg = fh.FlowHeadConfig.tiny(scan_layers=scan)
  # adaLN / final weights are non-zero, so the modulation is exercised.
  return cfg, host_random_init(nnx.eval_shape(lambda: fh.FlowHead(cfg, rngs=nnx.Rngs(seed))), seed)


def _inputs(b=2, l=14, seed=1):
  h = jax.random.normal(jax.random.key(seed), (b, l, 96))
  mp = jnp.asarray([[[3, 6]], [[5, 5]]])
  t = jnp.asarray([0.3, 0.9])
  return h, t, mp, masks.omni(mp, l)


def test_timestep_embedding_cos_first_raw_t():
  e = np.asarray(fh.timestep_embedding(jnp.asarray([0.0, 0.5]), 256))
  np.testing.assert_array_equal(e[0, :128], 1.0)    # cos(0) first
  np.testing.assert_array_equal(e[0, 128:], 0.0)
  assert e[1, 0] == pytest.approx(np.cos(0.5), abs=1e-7)  # raw t, frequency 1 for k = 0 (no ×1000)


def test_modality_slots_last_wins_and_empty_slots_inert():
  mp = jnp.asarray([[[2, 3], [4, 3], [0, 0]]])
  slot = np.asarray(fh.modality_slots(mp, 9))
  np.testing.assert_array_equal(slot[0], [-1, -1, 0, 0, 1, 1, 1, -1, -1])
  np.testing.assert_array_equal(np.asarray(fh.modality_slots(mp, 4, start=3))[0], [0, 1, 1, 1])


def test_scan_equals_loop():
  _, loop = _random_head(False)
  scfg = fh.FlowHeadConfig.tiny(scan_layers=True)
  scan = nnx.eval_shape(lambda: fh.FlowHead(scfg, rngs=nnx.Rngs(0)))
  common.load_into(scan, common.stack_layers(common.export_flat(loop), "diffusion_head_a"))
  h, t, mp, spec = _inputs()
  run = jax.jit(lambda m, h, t, mp: m(h, t, mp, masks.omni(mp, h.shape[1]))[0])
  np.testing.assert_allclose(np.asarray(run(loop, h, t, mp)), np.asarray(run(scan, h, t, mp)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("scan", [False, True])
def test_kv_cache_prefix_equals_full(scan):
  cfg, model = _random_head(scan)
  h, t, mp, spec = _inputs()
  b, l, _ = h.shape
  run = jax.jit(lambda m, h, t, mp, spec, cache: m(h, t, mp, spec, cache=cache))
  full = run(model, h, t, mp, spec, None)[0]
  p = 3  # the prefix ends before the first visual block
  total = masks.omni(mp, 16)
  cache = fh.FlowKVCache.init(cfg, b, 16)
  v1, _, _, cache = run(model, h[:, :p], t, mp, masks.slice_queries(total, 0, p), cache)
  v2, _, _, cache = run(model, h[:, p:], t, mp, masks.slice_queries(total, p, l - p), cache)
  assert int(cache.index) == l
  np.testing.assert_allclose(np.asarray(jnp.concatenate([v1, v2], 1)), np.asarray(full), rtol=0, atol=1e-5)


def test_modulation_only_inside_spans():
  _, model = _random_head()
  h, t, mp, spec = _inputs()
  run = jax.jit(lambda m, h, t, mp, spec: m(h, t, mp, spec)[0])
  a = np.asarray(run(model, h, t, mp, spec))
  b = np.asarray(run(model, h, jnp.asarray([0.05, 0.6]), mp, spec))
  # positions before each row's block see neither the block nor any modulation
  np.testing.assert_array_equal(a[0, :3], b[0, :3])
  np.testing.assert_array_equal(a[1, :5], b[1, :5])
  assert np.abs(a[0, 3:9] - b[0, 3:9]).max() > 1e-3
  # with no spans at all, t has no effect anywhere
  none = jnp.zeros((2, 1, 2), jnp.int32)
  c = np.asarray(run(model, h, t, none, masks.causal(2, 14)))
  d = np.asarray(run(model, h, jnp.asarray([0.05, 0.6]), none, masks.causal(2, 14)))
  np.testing.assert_array_equal(c, d)
