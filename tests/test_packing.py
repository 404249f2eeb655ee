"""Pad-free packing of Show-o v1 batches (``showo_jax/packing.py``): the packed loss and gradients equal the
padded batch's, what is dropped is exactly what nothing reads, and unpackable batches are refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import maskgit, masks, packing
from showo_jax.data import pipeline_v1, prompting_v1
from showo_jax.models.showo import Showo, ShowoConfig

MAX_TEXT = 12


def _batch(cfg, seed=0, lens=((3, 9), (5,), (4,))):
  """Padded ``[t2i, t2i, lm, mmu]`` rows with part of the t2i image tokens masked, plus their key ranges."""
  rng = np.random.default_rng(seed)
  up = prompting_v1.UniversalPrompting(cfg.token_ids, MAX_TEXT)
  n, off = cfg.num_vq_tokens, cfg.image_token_offset
  text = lambda k: [int(x) for x in rng.integers(3, cfg.llm_vocab_size, k)]
  codes = rng.integers(0, cfg.codebook_size, (len(lens[0]), n)) + off
  masked = rng.random(codes.shape) < 0.5
  ids_img = np.where(masked, cfg.mask_token_id, codes)
  t2i_ids, t2i_lab = up.t2i_prompt([text(k) for k in lens[0]], ids_img, np.where(masked, codes, -100),
                                   drop=[False] * len(lens[0]))
  lm_ids, lm_lab = up.lm_prompt([text(k) for k in lens[1]], t2i_ids.shape[1])
  mmu_ids, mmu_lab = up.mmu_prompt(codes[:1], [text(k) for k in lens[2]])
  width = t2i_ids.shape[1]
  mmu_ids = np.pad(mmu_ids, ((0, 0), (0, width - mmu_ids.shape[1])), constant_values=cfg.token_ids.pad)
  mmu_lab = np.pad(mmu_lab, ((0, 0), (0, width - mmu_lab.shape[1])), constant_values=-100)
  ids = np.concatenate([t2i_ids, lm_ids, mmu_ids]).astype(np.int32)
  labels = np.concatenate([t2i_lab, lm_lab, mmu_lab]).astype(np.int32)
  counts = (len(lens[0]), len(lens[1]), len(lens[2]))
  tok = cfg.token_ids
  ks, ke = pipeline_v1.row_masks(jnp.asarray(ids), counts=counts, pad=tok.pad, soi=tok.soi, eoi=tok.eoi)
  return ids, labels, np.asarray(ks), np.asarray(ke), counts


@pytest.fixture(scope="module")
def model():
  return Showo(ShowoConfig.tiny(), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("rows", [1, 2])
def test_packed_loss_and_gradients_equal_the_padded_batch(model, rows):
  cfg = model.cfg
  ids, labels, ks, ke, counts = _batch(cfg)
  padded = maskgit.ShowoBatch(labels=jnp.asarray(labels), mask=masks.MaskSpec(jnp.asarray(ks), jnp.asarray(ke)),
                              input_ids=jnp.asarray(ids), batch_size_t2i=counts[0], batch_size_lm=counts[1],
                              batch_size_mmu=counts[2], max_seq_length=MAX_TEXT)
  packed = packing.pack(ids, labels, ks, ke, counts=counts, max_seq_length=MAX_TEXT, pad_id=cfg.token_ids.pad,
                        num_vq_tokens=cfg.num_vq_tokens, rows=rows, multiple=8)
  assert packed.input_ids.shape[0] == rows and packed.input_ids.size < ids.size
  g, p = nnx.split(model)
  run = lambda fn, b: jax.jit(jax.value_and_grad(lambda p: fn(nnx.merge(g, p), b), has_aux=True))(p)
  (_, want), gw = run(maskgit.showo_loss, padded)
  (_, got), gg = run(packing.packed_loss, packed)
  for k in want:
    np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=2e-6, err_msg=k)
  for a, b in zip(jax.tree.leaves(gg), jax.tree.leaves(gw)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6 * float(jnp.abs(b).max()) + 1e-9)
  # the t2i image tokens are where the index says (the device-side MTP corruption writes there)
  flat = np.asarray(packed.input_ids).reshape(-1)
  lo = MAX_TEXT + 2
  np.testing.assert_array_equal(flat[np.asarray(packed.t2i_image_index)], ids[:counts[0], lo:lo + cfg.num_vq_tokens])


def test_dropped_tokens_are_exactly_the_unread_pads():
  pad = 0
  ids = np.array([[0, 0, 5, 6, 7, 0, 0, 0]])
  targets = np.full((1, 8), -100)
  targets[0, 3] = 7
  ks = np.array([[0, 0, 2, 2, 2, 0, 0, 0]])
  ke = np.array([[1, 2, 3, 4, 5, 6, 7, 8]])
  np.testing.assert_array_equal(packing.kept_tokens(ids, targets, ks, ke, pad)[0], [0, 0, 1, 1, 1, 0, 0, 0])
  # a kept query reading a pad keeps the pad, and then whatever that pad's own range reads
  ks2 = ks.copy()
  ks2[0, 4] = 1
  np.testing.assert_array_equal(packing.kept_tokens(ids, targets, ks2, ke, pad)[0], [1, 1, 1, 1, 1, 0, 0, 0])
  # a pad whose logit has a target (the shifted label of a real token) is kept too
  targets[0, 6] = 5
  np.testing.assert_array_equal(packing.kept_tokens(ids, targets, ks, ke, pad)[0], [1, 1, 1, 1, 1, 1, 1, 0])


def test_unpackable_batches_are_refused(model):
  cfg = model.cfg
  ids, labels, ks, ke, counts = _batch(cfg, seed=1)
  kw = dict(max_seq_length=MAX_TEXT, pad_id=cfg.token_ids.pad, num_vq_tokens=cfg.num_vq_tokens)
  with pytest.raises(ValueError, match="batch_size_mmu == 0"):
    packing.pack(ids, labels, ks, ke, counts=(counts[0], counts[1] + 1, 0), **kw)
  with pytest.raises(ValueError, match="do not add up"):
    packing.pack(ids, labels, ks, ke, counts=(1, 1, 1), **kw)
  bad = ke.copy()
  bad[0, 3] = ks[0, 3]
  with pytest.raises(ValueError, match="empty key range"):
    packing.pack(ids, labels, ks, bad, counts=counts, **kw)
  with pytest.raises(ValueError, match="cannot hold"):
    packing.pack(ids, labels, ks, ke, counts=counts, rows=2, row_len=16, **kw)
