"""Show-o2 sequence formats (spec §4) against the official fixtures, the spec's worked examples and the
reference algorithms (datasets/utils.py, mmu_dataset.py, vist_dataset.py, misc.py, inference_mmu*.py)."""
import os

import numpy as np
import pytest

from showo_jax import masks
from showo_jax.data import sequence as S
from showo_jax.text import SpecialIds, build_tiny_tokenizer, load_qwen25_tokenizer

# token_ids of the tiny showo2_full fixture (config.json); <image> is not used there.
FSP = SpecialIds(bos=301, eos=302, boi=303, eoi=304, img_pad=306, vid_pad=307, pad=305, img=300, bov=308, eov=309)
Q = SpecialIds.qwen25()


@pytest.fixture(scope="module")
def fx(fixtures_dir):
  """Inputs (and the MMU-inference mask output) of the tiny ``showo2_full`` fixture."""
  d = os.path.join(fixtures_dir, "showo2_full")
  if not os.path.isfile(os.path.join(d, "inputs.npz")):
    pytest.skip(f"fixture not found: {d}")
  out = dict(np.load(os.path.join(d, "inputs.npz")))
  out["mmu_infer.attention_mask.out"] = np.load(os.path.join(d, "outputs.npz"))["mmu_infer.attention_mask"]
  return out


@pytest.fixture(scope="session")
def tok():
  return load_qwen25_tokenizer()


def _allowed(additive):
  return np.asarray(additive)[:, 0] == 0


def test_fixture_t2i_and_null(fx):
  rows = [S.format_t2i(FSP, list(range(11, 16)), 16, 32), S.format_t2i(FSP, [21, 22, 23], 16, 32)]
  b = S.collate(rows)
  np.testing.assert_array_equal(b["tokens"], fx["t2i.text_tokens"])
  np.testing.assert_array_equal(b["modality_positions"], fx["t2i.modality_positions"])
  null = [S.format_t2i(FSP, [], 16, 32)] * 2
  cfg = S.collate(rows + null)
  np.testing.assert_array_equal(cfg["tokens"], fx["cfg.text_tokens"])
  np.testing.assert_array_equal(cfg["modality_positions"], fx["cfg.modality_positions"])
  for key in ("t2i", "cfg"):
    np.testing.assert_array_equal(masks.omni_dense_reference(fx[f"{key}.modality_positions"], 32),
                                  _allowed(fx[f"{key}.attention_mask"]))
  np.testing.assert_array_equal(masks.omni_dense_reference(cfg["omni_positions"], 32), _allowed(fx["cfg.attention_mask"]))


def test_fixture_train_mixed_batch(fx):
  b = S.collate([S.format_t2i(FSP, [31, 32, 33, 34], 16, 32), S.format_und_caption(FSP, list(range(41, 47)), 16, 32)])
  np.testing.assert_array_equal(b["tokens"], fx["train.text_tokens"])
  np.testing.assert_array_equal(b["labels"], fx["train.text_labels"])
  np.testing.assert_array_equal(b["text_mask"], fx["train.text_masks"])
  np.testing.assert_array_equal(b["modality_positions"], fx["train.modality_positions"])
  # The fixture's image_masks are the dataset masks with the MMU row zeroed (und_max_t0 == 1).
  np.testing.assert_array_equal(b["image_mask"][0], fx["train.image_masks"][0])
  np.testing.assert_array_equal(b["image_mask"] * np.array([[1], [0]]), fx["train.image_masks"])
  flow = S.flow_loss_mask(b["image_mask"], b["modality_positions"], [False, True])
  expect = fx["train.image_masks"].copy()
  expect[0, 6] = 0  # the time token is never a flow target
  np.testing.assert_array_equal(flow, expect)
  np.testing.assert_array_equal(masks.omni_dense_reference(b["omni_positions"], 32), _allowed(fx["train.attention_mask"]))


def test_fixture_video_dynres(fx):
  v = S.format_t2v(FSP, [51, 52, 53], 32, 40)
  np.testing.assert_array_equal(v.tokens, fx["video.text_tokens"][0])
  np.testing.assert_array_equal(v.modality_positions, fx["video.modality_positions"][0])
  assert v.image_mask.sum() == 33 and (v.tokens[v.image_mask == 1] == FSP.vid_pad).all()
  np.testing.assert_array_equal(S.format_i2v(FSP, [51, 52, 53], 32, 40).tokens, v.tokens)
  d = S.format_t2i(FSP, [61, 62], 36, 48)
  np.testing.assert_array_equal(d.tokens, fx["dynres.text_tokens"][0])
  np.testing.assert_array_equal(d.modality_positions, fx["dynres.modality_positions"][0])
  for key, s in (("video", v), ("dynres", d)):
    np.testing.assert_array_equal(masks.omni_dense_reference(s.omni_positions[None], len(s)), _allowed(fx[f"{key}.attention_mask"]))


def test_fixture_mmu_inference(fx):
  a, bb = fx["mmu_infer.text_tokens_a"][0], fx["mmu_infer.text_tokens_b"][0]
  s = S.format_mmu_inference(FSP, a[1:].tolist(), bb[2:].tolist(), 16)
  assert len(s) == 31
  np.testing.assert_array_equal(s.tokens, np.concatenate([a, bb[:1], [FSP.img_pad] * 17, bb[1:]]))
  np.testing.assert_array_equal(s.omni_positions, fx["mmu_infer.modality_positions"][0])  # len_a + 2 = 8
  np.testing.assert_array_equal(s.modality_positions, [[7, 17]])  # where the time/image embeddings go
  np.testing.assert_array_equal(masks.omni_dense_reference(s.omni_positions[None], 31),
                                _allowed(fx["mmu_infer.attention_mask.out"]))
  fixed = S.format_mmu_inference(FSP, a[1:].tolist(), bb[2:].tolist(), 16, reference_offset=False)
  np.testing.assert_array_equal(fixed.omni_positions, fixed.modality_positions)


def test_t2i_worked_example_432():
  """Spec §4.1: 432 px, 10 text tokens, L = 1024."""
  s = S.format_t2i(Q, list(range(100, 110)), 729, 1024)
  t = s.tokens
  assert len(s) == 1024 and S.t2i_max_text_len(729, 1024) == 290
  assert t[0] == Q.bos and (t[1:11] == np.arange(100, 110)).all() and t[11] == Q.boi
  assert (t[12:742] == Q.img_pad).all() and t[742] == Q.eoi and t[743] == Q.eos and (t[744:] == Q.pad).all()
  np.testing.assert_array_equal(s.modality_positions, [[12, 730]])
  assert (s.labels == -100).all()
  assert s.image_mask.sum() == 730 and s.image_mask[12] == 1 and s.text_mask.sum() == 1024 - 730 - 280
  allowed = masks.omni_dense_reference(s.omni_positions[None], 1024)[0]
  assert allowed[12, 741] and allowed[741, 12] and not allowed[11, 12] and not allowed[742, 743]
  # Null prompt: same length and block length, offset 2.
  null = S.format_t2i(Q, [], 729, 1024)
  assert len(null) == 1024 and null.modality_positions.tolist() == [[2, 730]] and null.tokens[1] == Q.boi
  # Truncation to max_text_len.
  long = S.format_t2i(Q, list(range(1000)), 729, 1024)
  assert long.modality_positions.tolist() == [[292, 730]] and (long.tokens[1:291] == np.arange(290)).all()
  assert long.tokens[-1] == Q.eos and long.tokens[-2] == Q.eoi


def test_t2i_system_branch():
  sys = ([1, 2], [3], [4, 5])
  s = S.format_t2i(FSP, [7, 8], 4, 40, system_ids=sys)
  o = int(s.modality_positions[0, 0])
  assert o == 1 + 5 + 2 + 2 and s.tokens[o - 1] == FSP.boi and (s.tokens[o:o + 5] == FSP.img_pad).all()
  assert s.tokens[:11].tolist() == [FSP.bos, 1, 2, 3, 7, 8, FSP.eos, 4, 5, FSP.boi, FSP.img_pad]
  assert s.labels[:10].tolist() == [FSP.bos, -100, -100, -100, -100, -100, FSP.eos, -100, -100, FSP.boi]
  assert S.t2i_max_text_len(4, 40, 5) == 40 - 5 - 4 - 5 - 1


def test_build_t2i_caption_pipeline(tok):
  assert S.remove_prefix("The image features a cat. This is nice") == "a cat. nice"
  s = S.build_t2i(tok, "The image depicts\n a red circle", 729, 1024)
  text = s.tokens[1:int(s.modality_positions[0, 0]) - 1]
  assert tok.decode(text) == "a red circle"
  rng = np.random.default_rng(0)
  assert S.build_t2i(tok, "a red circle", 729, 1024, rng=rng, cond_dropout_prob=1.0).modality_positions.tolist() == [[2, 730]]
  drops = [S.maybe_drop_caption("x", rng, 0.1) == "" for _ in range(4000)]
  assert 0.08 < np.mean(drops) < 0.12
  cond, null = S.build_t2i_inference(tok, ["a red circle", "two blue squares"], 729, 1024)
  assert cond["tokens"].shape == null["tokens"].shape == (2, 1024)
  assert (null["modality_positions"][:, 0] == [2, 730]).all()


def test_und_caption(tok):
  ids = tok.encode("a red circle")
  s = S.build_und_caption(tok, "a red\n circle", 729, 1024)
  assert s.modality_positions.tolist() == [[2, 730]]
  t, lab = s.tokens, s.labels
  assert t[:2].tolist() == [Q.bos, Q.boi] and (t[2:732] == Q.img_pad).all() and t[732] == Q.eoi
  n = len(ids)
  assert t[733:733 + n].tolist() == ids and t[733 + n] == Q.eos and (t[734 + n:] == Q.pad).all()
  assert lab[:2].tolist() == [Q.bos, Q.boi] and (lab[2:732] == -100).all()
  assert lab[732:734 + n].tolist() == [Q.eoi] + ids + [Q.eos] and (lab[734 + n:] == -100).all()


def _render(tok, s):
  """Decoded non-pad text with each run of <|image_pad|> collapsed to one."""
  t = s.tokens[s.tokens != Q.pad].tolist()
  keep = [x for i, x in enumerate(t) if not (x == Q.img_pad and i > 0 and t[i - 1] == Q.img_pad)]
  return tok.decode(keep, skip_special_tokens=False)


def test_llava_pretraining(tok):
  conv = [{"from": "human", "value": "Describe the image.\n<image>"}, {"from": "gpt", "value": "A red circle."}]
  for stage in ("pre-training", "pre-training-1-5"):
    s = S.build_llava(tok, conv, 729, 1024, stage=stage)
    assert s.modality_positions.tolist() == [[2, 730]]
    assert _render(tok, s) == "<|im_start|><|vision_start|><|image_pad|><|vision_end|>A red circle.<|im_end|>"
    tgt = tok.encode("A red circle.<|im_end|>")
    assert (s.labels[:733] == -100).all() and s.labels[733:733 + len(tgt)].tolist() == tgt
    assert (s.labels[733 + len(tgt):] == -100).all()


def test_llava_tuning_render_and_offset(tok):
  conv = [{"from": "human", "value": "What is it?\n<image>"}, {"from": "gpt", "value": "A cat."},
          {"from": "human", "value": "And the color?"}, {"from": "gpt", "value": "Red."}]
  s = S.build_llava(tok, conv, 729, 1024, stage="tuning")
  assert _render(tok, s) == (
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
      "<|vision_start|><|image_pad|><|vision_end|>\nWhat is it?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>"
      "\n<|im_start|>user\nAnd the color?<|im_end|>\n<|im_start|>assistant\nRed.<|im_end|>")
  o = int(s.modality_positions[0, 0])
  prefix = 1 + len(tok.encode(S.DEFAULT_SYSTEM_PROMPT)) + len(tok.encode(S.ROLE_USER))
  assert o == prefix + 1 and s.tokens[o - 1] == Q.boi and (s.tokens[o:o + 730] == Q.img_pad).all()
  # Only the answers are labelled.
  labelled = s.labels[s.labels != -100].tolist()
  assert labelled == tok.encode("A cat.<|im_end|>") + tok.encode("Red.<|im_end|>")
  # No image -> one (0, 0) slot; overlong -> truncated to max_seq_len.
  text = S.build_llava(tok, [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], 729, 1024)
  assert text.modality_positions.tolist() == [[0, 0]] and text.image_mask.sum() == 0
  long = S.build_llava(tok, [conv[0], {"from": "gpt", "value": "word " * 600}], 729, 1024)
  assert len(long) == 1024 and long.tokens[-1] != Q.pad


def test_mmu_inference_layouts(tok):
  s = S.build_mmu_inference(tok, "What is this?", 729)
  len_a = 1 + len(tok.encode(S.DEFAULT_SYSTEM_PROMPT)) + len(tok.encode(S.ROLE_USER))
  assert s.tokens[len_a] == Q.boi and s.tokens[len_a + 731] == Q.eoi
  assert s.modality_positions.tolist() == [[len_a + 1, 730]] and s.omni_positions.tolist() == [[len_a + 2, 730]]
  assert _render(tok, s).endswith("<|vision_end|>What is this?\n<|im_start|>assistant\n")
  assert (s.labels == -100).all()
  fixed = S.build_mmu_inference(tok, "What is this?", 729, reference_offset=False)
  assert fixed.omni_positions.tolist() == fixed.modality_positions.tolist()
  v = S.build_mmu_video_inference(tok, "What happens?", num_frames=4)
  assert v.modality_positions.tolist() == [[len_a + 1, 4 * 196 + 1]] and v.omni_positions.tolist() == [[len_a + 2, 730]]
  assert v.image_mask.sum() == 4 * 196 + 1


def test_interleaved_reference_algorithm():
  s = S.format_interleaved(FSP, [[1, 2], [3], None, None], [True, True, False, False], 3, 32, flag_len=1)
  P = FSP.img_pad
  expect = [FSP.bos, 1, 2, FSP.boi, P, P, P, P, FSP.eoi, 3, FSP.boi, P, P, P, P, FSP.eoi, FSP.eos]
  assert s.tokens.tolist() == expect + [FSP.pad] * (32 - len(expect))
  assert s.modality_positions.tolist() == [[4, 4], [11, 4], [0, 0], [0, 0]]
  assert s.labels.tolist() == [FSP.bos, -100] + expect[2:] + [-100] * (32 - len(expect))


def test_build_interleaved_vist(tok):
  caps = ["a photo of a red circle", "move the red circle right", "move the red circle up"]
  s, start, count = S.build_interleaved(tok, caps, 16, 256)
  flag = tok.encode(S.VIST_FLAG)
  assert (start, count) == (0, 3)
  assert s.tokens[1:1 + len(flag)].tolist() == flag and (s.labels[1:1 + len(flag)] == -100).all()
  assert s.labels[1 + len(flag)] == s.tokens[1 + len(flag)]
  assert s.modality_positions.shape == (4, 2) and s.modality_positions[3].tolist() == [0, 0]
  for o, n in s.modality_positions[:3]:
    assert n == 17 and s.tokens[o - 1] == Q.boi and s.tokens[o + n] == Q.eoi
  budget = S.vist_max_text_len(16, 256, len(flag))
  assert budget == (256 - len(flag) - 19 * 4 - 2) // 4
  s2, _, _ = S.build_interleaved(tok, ["word " * 200] * 2, 16, 256)
  o0 = int(s2.modality_positions[0, 0])
  assert o0 == 1 + len(flag) + budget + 1
  rng = np.random.default_rng(0)
  starts = {S.vist_window(6, 4, rng) for _ in range(200)}
  assert starts == {0, 1}  # randint(0, len - max - 1): the last window (2) is never drawn


def test_mixed_modal_gen():
  a, b = S.format_mixed_modal_gen(FSP, list(range(10)), [], 16)
  assert len(a) == len(b) == 128
  assert a.modality_positions.tolist() == [[12, 17]] and b.modality_positions.tolist() == [[2, 17]]
  assert a.tokens[12 + 17] == FSP.eoi and a.tokens[30] == FSP.pad
  a, b = S.format_mixed_modal_gen(FSP, list(range(120)), [], 16)
  assert len(a) == len(b) == 256


def test_text_only_and_collate():
  t = S.format_text_only(FSP, [5, 6, 7], 8)
  assert t.tokens.tolist() == [FSP.bos, 5, 6, 7, FSP.eos, FSP.pad, FSP.pad, FSP.pad]
  assert t.labels.tolist() == [FSP.bos, 5, 6, 7, FSP.eos, -100, -100, -100] and t.modality_positions.shape == (0, 2)
  assert S.format_text_only(FSP, list(range(20)), 8).tokens.tolist() == [FSP.bos] + list(range(6)) + [FSP.eos]
  t = S.format_text_only(FSP, [5, 6, 7], 12)
  img = S.format_interleaved(FSP, [[1], [2]], [True, True], 1, 12, max_num_images=2)
  with pytest.raises(ValueError, match="exceeds"):
    S.format_interleaved(FSP, [[1], [2]], [True, True], 1, 11, max_num_images=2)
  b = S.collate([t, img], num_slots=3)
  assert b["tokens"].shape == (2, 12) and b["modality_positions"].shape == (2, 3, 2)
  assert b["modality_positions"][0].tolist() == [[0, 0]] * 3
  assert b["modality_positions"][1].tolist() == [[3, 2], [8, 2], [0, 0]]
  with pytest.raises(ValueError, match="different lengths"):
    S.collate([t, S.format_text_only(FSP, [1], 9)])
  with pytest.raises(ValueError, match="num_slots"):
    S.collate([img], num_slots=1)


def test_tiny_tokenizer_end_to_end():
  tt = build_tiny_tokenizer(320)
  rows = [S.build_t2i(tt, "a photo of two red circles", 16, 64), S.build_und_caption(tt, "a photo of a red circle", 16, 64),
          S.build_llava(tt, [{"from": "human", "value": "<image>\nHow many circles are there?"},
                             {"from": "gpt", "value": "two"}], 16, 64),
          S.build_interleaved(tt, ["a photo of a red circle", "move the red circle up"], 4, 64, max_num_images=1)[0]]
  b = S.collate(rows)
  assert b["tokens"].max() < len(tt) and b["tokens"].min() >= 0
  assert b["modality_positions"].shape == (4, 1, 2)
  assert (b["tokens"][np.arange(4), b["modality_positions"][:, 0, 0] - 1] == tt.special.boi).all()
