"""Text decoding: fixture MMU parity, KV-cached decoding == full recompute, ragged batches, sampling rules, video."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import masks
from showo_jax.data import sequence
from showo_jax.models.showo2 import Showo2, Showo2Config
from showo_jax.sampling import text
from showo_jax.text.qwen_offline import SpecialIds

SP = SpecialIds(bos=300, eos=301, boi=302, eoi=303, pad=304, img_pad=305, vid_pad=306, img=307, bov=308, eov=309)


@pytest.fixture(scope="module")
def model():
  return Showo2(Showo2Config.tiny(), rngs=nnx.Rngs(7))


@pytest.fixture(scope="module")
def image_inputs(model):
  lat = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  return nnx.jit(lambda m, x: text.visual_inputs(m, x, 1.0))(model, lat)


def mmu_rows(questions, n=16, reference_offset=True):
  prefix = [20, 21, 22]
  return [sequence.format_mmu_inference(SP, prefix, q + [30, 31], n, reference_offset=reference_offset)
          for q in questions]


@pytest.mark.parity
def test_fixture_mmu_infer(fixtures_dir):
  from showo_jax.tools.parity import load_fixture
  from showo_jax.tools.parity_checks import showo2_full, showo2_full_sampling
  cfg_json, inp, out, sd = load_fixture(os.path.join(fixtures_dir, "showo2_full"))
  _, m = showo2_full.build(cfg_json, sd)
  results = list(showo2_full_sampling.mmu_scenario(m, cfg_json, inp, out))
  names = {r.name for r in results}
  assert {"mmu_infer.prefill_logits", "mmu_infer.greedy_tokens", "mmu_infer.attention_mask"} <= names
  bad = [r for r in results if not r.passed]
  assert not bad, bad


@nnx.jit
def _recompute(model, embeds, generated, omni):
  ext = jnp.concatenate([embeds, model.showo.embed(generated[None])], axis=1)
  spec = masks.omni(omni[None], ext.shape[1])
  return model.showo(inputs_embeds=ext, mask=spec).logits[0]


def full_recompute_logits(model, row, img, tp, generated):
  """Reference path: the whole (unpadded) sequence, no cache, mask grown causally (mmu_generate)."""
  prompt = text.build_prompt(model, [row], SP.pad, img[None, None], tp[None, None])
  return _recompute(model, prompt.embeds, jnp.asarray(generated, jnp.int32), jnp.asarray(row.omni_positions))


def test_cached_decoding_equals_full_recompute_ragged_batch(model, image_inputs):
  img, tp = image_inputs
  rows = mmu_rows([[40, 41, 42, 43, 44, 45], [50]])          # lengths differ by 5 -> left padding
  prompt = text.build_prompt(model, rows, SP.pad, img[:, None], tp[:, None])
  assert prompt.pad.tolist() == [0, 5]
  gen = text.generate(model, prompt, max_new_tokens=6, sampling=text.Sampling(), pad_id=SP.pad,
                      return_logits=True)
  assert gen.lengths.tolist() == [6, 6]
  for i, row in enumerate(rows):
    ref = full_recompute_logits(model, row, img[i], tp[i], gen.row(i)[:-1])
    length = len(row)
    want = np.asarray(ref[length - 1:])
    np.testing.assert_allclose(np.asarray(gen.step_logits[i]), want, atol=5e-5, rtol=1e-5)
    assert gen.row(i) == np.argmax(want, axis=-1).tolist()
    # the row alone (no padding) decodes the same tokens
    alone = text.generate(model, text.build_prompt(model, [row], SP.pad, img[i:i + 1, None], tp[i:i + 1, None]),
                          max_new_tokens=6, pad_id=SP.pad)
    assert alone.row(0) == gen.row(i)


def test_reference_offset_changes_the_mask(model, image_inputs):
  img, tp = image_inputs
  ref_row, = mmu_rows([[40]], reference_offset=True)
  fix_row, = mmu_rows([[40]], reference_offset=False)
  o, ln = ref_row.modality_positions[0]
  assert tuple(ref_row.omni_positions[0]) == (o + 1, ln) and tuple(fix_row.omni_positions[0]) == (o, ln)
  a = text.build_prompt(model, [ref_row], SP.pad, img[:1, None], tp[:1, None])
  d = np.asarray(masks.dense(a.mask, len(ref_row))[0])
  assert not d[o, o + 1] and d[o + 1, o + ln]      # time token causal; block covers eoi (position o + ln)
  np.testing.assert_array_equal(np.asarray(a.embeds), np.asarray(
      text.build_prompt(model, [fix_row], SP.pad, img[:1, None], tp[:1, None]).embeds))


def test_stop_tokens_and_padding(model, image_inputs):
  img, tp = image_inputs
  rows = mmu_rows([[40, 41], [50, 51, 52]])
  prompt = text.build_prompt(model, rows, SP.pad, img[:, None], tp[:, None])
  free = text.generate(model, prompt, max_new_tokens=4, pad_id=SP.pad)
  first = int(free.tokens[0, 0])
  stopped = text.generate(model, prompt, max_new_tokens=4, stop_tokens=(first,), pad_id=SP.pad)
  assert stopped.lengths[0] == 1 and stopped.tokens[0, 1:].tolist() == [SP.pad] * 3
  if first not in free.row(1):
    assert stopped.row(1) == free.row(1)


def test_sampling_rules():
  logits = jnp.asarray([[1.0, 3.0, 3.0, 0.0, -1.0]])
  f = text.filter_logits(logits, text.Sampling(temperature=1.0, top_k=1))
  assert np.isfinite(np.asarray(f)).tolist() == [[False, True, True, False, False]]   # ties with the k-th kept
  probs = np.asarray(jax.nn.softmax(jnp.asarray([[4.0, 3.0, 2.0, -5.0]])))
  f = text.filter_logits(jnp.log(jnp.asarray(probs)), text.Sampling(temperature=1.0, top_p=float(probs[0, 0]) + 0.01))
  assert np.isfinite(np.asarray(f)).tolist() == [[True, True, False, False]]        # the crossing token kept
  assert text.sample_token(jax.random.key(0), logits, text.Sampling()).tolist() == [1]
  s = text.Sampling(temperature=0.7, top_k=3)
  a = text.sample_token(jax.random.key(3), jnp.tile(logits, (64, 1)), s)
  b = text.sample_token(jax.random.key(3), jnp.tile(logits, (64, 1)), s)
  assert a.tolist() == b.tolist() and set(a.tolist()) <= {0, 1, 2} and len(set(a.tolist())) > 1
  with pytest.raises(ValueError):
    text.Sampling(top_p=0.0)


def test_sampled_decoding_is_reproducible(model, image_inputs):
  img, tp = image_inputs
  prompt = text.build_prompt(model, mmu_rows([[40, 41]]), SP.pad, img[:1, None], tp[:1, None])
  s = text.Sampling.multinomial(1.0)
  a = text.generate(model, prompt, max_new_tokens=5, sampling=s, key=jax.random.key(1), pad_id=SP.pad)
  b = text.generate(model, prompt, max_new_tokens=5, sampling=s, key=jax.random.key(1), pad_id=SP.pad)
  assert a.row(0) == b.row(0)
  with pytest.raises(ValueError, match="key"):
    text.generate(model, prompt, max_new_tokens=2, sampling=s)


def bilinear_reference(x, out):
  """PyTorch F.interpolate(mode='bilinear', align_corners=False) on [g, g] maps, numpy."""
  g = x.shape[0]

  def weights(n_in, n_out):
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
      src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
      i0 = min(int(np.floor(src)), n_in - 1)
      i1 = min(i0 + 1, n_in - 1)
      lam = src - i0
      w[i, i0] += 1 - lam
      w[i, i1] += lam
    return w

  wy = weights(g, out)
  return np.einsum("ij,jkd,lk->ild", wy, x, wy)


def test_video_inputs_bilinear_and_layout(model):
  lat = jax.random.normal(jax.random.key(4), (3, 8, 8, 16))    # 3 frames, 4x4 token grid each
  emb, tp = nnx.jit(lambda m, x: text.video_inputs(m, x, 3))(model, lat)
  assert emb.shape == (1, 27, 64) and tp.shape == (1, 64)
  per_frame, tp1 = nnx.jit(lambda m, x: text.visual_inputs(m, x, 1.0))(model, lat)
  want = np.stack([bilinear_reference(np.asarray(per_frame[f]).reshape(4, 4, 64), 3) for f in range(3)])
  np.testing.assert_allclose(np.asarray(emb).reshape(3, 3, 3, 64), want, atol=1e-5)
  np.testing.assert_allclose(np.asarray(tp), np.asarray(tp1[:1]), atol=1e-6)
  # reference mask: only num_mmu_image_tokens + 1 positions after the time token are bidirectional
  row = sequence.format_mmu_inference(SP, [20], [30], 27, mask_block_len=17, reference_offset=True)
  prompt = text.build_prompt(model, [row], SP.pad, emb[:, None], tp[:, None])
  o = int(row.modality_positions[0, 0])
  d = np.asarray(masks.dense(prompt.mask, len(row))[0])
  assert d[o + 1, o + 17] and not d[o + 1, o + 18]
  gen = text.generate(model, prompt, max_new_tokens=3, pad_id=SP.pad)
  assert gen.lengths.tolist() == [3]
