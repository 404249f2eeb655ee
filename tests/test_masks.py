"""Masks: key-range form == the official dense construction, for random layouts."""
import jax.numpy as jnp
import numpy as np
import pytest

from showo_jax import masks


def _random_layout(rng, b, m, length):
  mp = np.zeros((b, m, 2), np.int64)
  for i in range(b):
    cursor = rng.integers(0, 4)
    for j in range(rng.integers(0, m + 1)):
      ln = int(rng.integers(1, 7))
      if cursor + ln > length:
        break
      mp[i, j] = (cursor, ln)
      cursor += ln + int(rng.integers(0, 4))
  return mp


@pytest.mark.parametrize("seed", range(5))
def test_omni_matches_official_naive_mask(seed):
  rng = np.random.default_rng(seed)
  length = 40
  mp = _random_layout(rng, 3, 3, length)
  ours = np.asarray(masks.dense(masks.omni(jnp.asarray(mp), length)))
  np.testing.assert_array_equal(ours, masks.omni_dense_reference(mp, length))


@pytest.mark.parametrize("seed", range(3))
def test_block_ids_form_is_equivalent(seed):
  rng = np.random.default_rng(100 + seed)
  length = 32
  mp = _random_layout(rng, 2, 3, length)
  blk = np.asarray(masks.block_ids(jnp.asarray(mp), length))
  via_ids = blk[:, :, None] >= blk[:, None, :]
  np.testing.assert_array_equal(via_ids, masks.omni_dense_reference(mp, length))


def test_padding_slots_are_inert_and_no_row_is_empty():
  mp = np.array([[[3, 4], [0, 0]]])
  d = np.asarray(masks.dense(masks.omni(jnp.asarray(mp), 10)))
  np.testing.assert_array_equal(d, masks.omni_dense_reference(mp, 10))
  assert d.any(axis=-1).all()
  # query 3 (first block token) sees the whole block [3, 7) but nothing after it
  assert d[0, 3, :7].all() and not d[0, 3, 7:].any()


def test_causal_full_prefix_and_segments():
  np.testing.assert_array_equal(np.asarray(masks.dense(masks.causal(1, 5)))[0], np.tril(np.ones((5, 5), bool)))
  assert np.asarray(masks.dense(masks.full(2, 4))).all()
  p = np.asarray(masks.dense(masks.prefix_full(1, 6, 3)))[0]
  expected = np.tril(np.ones((6, 6), bool))
  expected[:3, :3] = True
  np.testing.assert_array_equal(p, expected)
  seg = jnp.asarray([[0, 0, 0, 1, 1, 1]])
  s = np.asarray(masks.dense(masks.with_segments(masks.causal(1, 6), seg)))[0]
  assert not s[3:, :3].any() and s[4, 3] and s[1, 0]


def test_slice_queries_keeps_absolute_ranges():
  spec = masks.omni(jnp.asarray([[[2, 3]]]), 8)
  rows = masks.slice_queries(spec, 4, 2)
  np.testing.assert_array_equal(np.asarray(masks.dense(rows, 8))[0], np.asarray(masks.dense(spec))[0, 4:6])
