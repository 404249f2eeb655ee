"""Static row layouts (``showo_jax/rows.py``): heads on a subset of rows give the same loss and gradients."""
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest
from flax import nnx

from showo_jax import rows
from showo_jax.models.showo2 import Showo2
from showo_jax.tools.workloads import showo2_forward as fw
from showo_jax.tools.workloads import showo2_train_step as ts
from showo_jax.train import tasks


def _loss_cfg(und_max_t0=1.0):
  return mlc.ConfigDict(dict(ntp_coeff=0.2, flow_coeff=1.0, und_max_t0=und_max_t0, transport_seq_len=65,
                             clean_prefix_prob=0.0))


@pytest.fixture(scope="module")
def model():
  cfg = fw.bench_config()
  return Showo2(cfg, rngs=nnx.Rngs(0))


def _batch(order):
  """The benchmark batch (rows T2I, T2I, MMU, MMU) with its rows re-ordered by ``order``."""
  b = ts.batch()
  order = np.asarray(order)
  out = {k: v[order] for k, v in b.items() if k != "latents"}
  out["latents"] = b["latents"][order]          # one slot per row
  types = tuple(fw.ROWS[i] for i in order)
  return {k: jnp.asarray(v) for k, v in out.items()}, types


def _loss_and_grads(model, batch, loss_cfg, row_types):
  graphdef, params = nnx.split(model, nnx.Param)

  def f(p):
    m = nnx.merge(graphdef, p)
    return tasks.get("showo2").loss(m, batch, jax.random.key(3), loss_cfg, row_types=row_types)

  return jax.jit(jax.value_and_grad(f, has_aux=True))(params)


@pytest.mark.parametrize("order,und_max_t0", [((0, 1, 2, 3), 1.0),      # contiguous: slices
                                              ((2, 0, 3, 1), 1.0),      # interleaved: gathers
                                              ((0, 2, 1, 3), 0.5),      # und rows keep a flow loss
                                              ((0, 1, 0, 1), 1.0),      # no NTP rows
                                              ((2, 3, 2, 3), 1.0)])     # no flow rows
def test_row_split_equals_all_rows(model, order, und_max_t0):
  batch, types = _batch(order)
  cfg = _loss_cfg(und_max_t0)
  (loss_a, m_a), g_a = _loss_and_grads(model, batch, cfg, None)
  (loss_s, m_s), g_s = _loss_and_grads(model, batch, cfg, types)
  assert float(loss_a) > 0
  np.testing.assert_allclose(float(loss_s), float(loss_a), rtol=1e-5)
  for k in m_a:
    np.testing.assert_allclose(np.asarray(m_s[k]), np.asarray(m_a[k]), rtol=1e-5, atol=1e-7, err_msg=k)
  flat_a, flat_s = jax.tree.leaves(g_a), jax.tree.leaves(g_s)
  scale = max(float(jnp.max(jnp.abs(g))) for g in flat_a)
  assert scale > 0
  for a, s in zip(flat_a, flat_s):
    np.testing.assert_allclose(np.asarray(s), np.asarray(a), atol=2e-5 * scale, rtol=1e-4)


def test_row_lists():
  types = rows.concat_layout([("t2i", 2), ("mmu", 1), ("lm", 1), ("interleaved", 1)])
  assert types == ("t2i", "t2i", "mmu", "lm", "interleaved")
  assert rows.flow_rows(types, 1.0) == (0, 1, 4)
  assert rows.flow_rows(types, 0.5) == (0, 1, 2, 4)         # und rows carry a flow loss when t < 1 is drawn
  assert rows.ntp_rows(types) == (2, 3, 4)
  assert rows.slots_of((1, 4), 2) == (2, 3, 8, 9)
  x = jnp.arange(10)
  np.testing.assert_array_equal(rows.take(x, (2, 3, 4)), [2, 3, 4])
  np.testing.assert_array_equal(rows.take(x, (4, 1)), [4, 1])


def test_subset_outputs_match_full_forward(model):
  """``logit_rows`` / ``flow_rows`` return exactly those rows of the full forward."""
  batch, _ = _batch((0, 1, 2, 3))
  t = jnp.asarray([0.3, 0.7, 1.0, 1.0])
  full = model(batch["text_tokens"], batch["latents"], t, batch["modality_positions"])
  sub = model(batch["text_tokens"], batch["latents"], t, batch["modality_positions"], logit_rows=(3, 1),
              flow_rows=(1,))
  np.testing.assert_allclose(sub.logits, full.logits[jnp.asarray([3, 1])], atol=1e-5)
  np.testing.assert_allclose(sub.v_tokens, full.v_tokens[1:2], atol=1e-5)
  np.testing.assert_allclose(sub.v_pred, full.v_pred[1:2], atol=1e-5)


@pytest.mark.parametrize("order,split,rows", [((0, 1, 2, 3), True, 1), ((2, 0, 3, 1), False, 2)])
def test_packed_llm_equals_padded(model, order, split, rows):
  """``batch["llm_pack"]``: the LLM on pad-free packed rows (``showo_jax/packing.py``) gives the padded
  batch's loss, metrics and gradients, with and without the row split."""
  from showo_jax import masks, packing
  batch, types = _batch(order)
  spec = masks.omni(batch["modality_positions"], batch["text_tokens"].shape[1])
  pack = packing.pack_llm(batch["text_tokens"], batch["text_labels"], spec.k_start, spec.k_end, pad_id=fw.PAD,
                          rows=rows)
  assert int(pack.valid.sum()) < batch["text_tokens"].size and pack.index.shape[0] == rows
  cfg = _loss_cfg()
  rt = types if split else None
  (loss_a, m_a), g_a = _loss_and_grads(model, batch, cfg, rt)
  (loss_p, m_p), g_p = _loss_and_grads(model, {**batch, "llm_pack": pack}, cfg, rt)
  np.testing.assert_allclose(float(loss_p), float(loss_a), rtol=1e-5)
  for k in m_a:
    np.testing.assert_allclose(np.asarray(m_p[k]), np.asarray(m_a[k]), rtol=1e-5, atol=1e-7, err_msg=k)
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_a))
  for a, p in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_p)):
    np.testing.assert_allclose(np.asarray(p), np.asarray(a), atol=2e-5 * scale, rtol=1e-4)
