"""Grain pipeline: batch layout, host sharding, iterator state, ArrayRecord sources, cached latents."""
import json
import os

import numpy as np
from PIL import Image

from configs import lm as lm_cfg
from configs.showo2 import mixed, stage1, stage2c, video
from showo_jax.data import pipeline, sources, transforms
from showo_jax.train import tasks


def _build(config, **kw):
  return pipeline.build(config, tasks.get(config.model_family).model_config(config.model), **kw)


def _take(data, n):
  out = [data.next_host() for _ in range(n)]
  return out


def _eq(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_stage1_batch_layout():
  c = stage1.get_config("runlocal")
  d = _build(c)
  b = d.next_host()
  sp = d.info.tokenizer.special
  L, n = c.data.max_seq_length, 16
  assert b["text_tokens"].shape == (4, L) and b["latents"].shape == (4, 8, 8, 16)
  np.testing.assert_array_equal(b["data_type"], [0, 0, 1, 1])          # t2i rows first, then mmu (concat)
  assert (b["text_labels"][:2] == -100).all()                          # no NTP on T2I rows
  assert (b["text_labels"][2:] >= 0).sum() > 0
  np.testing.assert_array_equal(b["modality_positions"][2:, 0], [[2, n + 1]] * 2)   # captioning: offset 2
  for i in range(4):
    o, ln = b["modality_positions"][i, 0]
    assert b["text_tokens"][i, o - 1] == sp.boi and b["text_tokens"][i, o + ln] == sp.eoi
    assert (b["text_tokens"][i, o:o + ln] == sp.img_pad).all() and b["image_masks"][i].sum() == ln
  # the patch latent space is the tiny model's: 8×8 latents → 4×4 tokens of p=2
  d.close()


def test_deterministic_and_state_restore():
  c = stage1.get_config("runlocal")
  d1 = _build(c)
  first = _take(d1, 3)
  state = d1.iterator.get_state()
  later = _take(d1, 2)
  d2 = _build(c)
  for a, b in zip(first, _take(d2, 3)):
    _eq(a, b)
  d3 = _build(c)
  d3.iterator.set_state(state)
  for a, b in zip(later, _take(d3, 2)):
    _eq(a, b)
  for d in (d1, d2, d3):
    d.close()


def test_hosts_build_disjoint_slices_of_the_same_global_batch():
  c = stage1.get_config("runlocal")
  one = _take(_build(c, process_index=0, process_count=1), 2)
  h0 = _take(_build(c, process_index=0, process_count=2), 2)
  h1 = _take(_build(c, process_index=1, process_count=2), 2)
  for g, a, b in zip(one, h0, h1):
    for k in g:
      np.testing.assert_array_equal(g[k], np.concatenate([a[k], b[k]]), err_msg=k)


def test_mixture_modes():
  c = stage1.get_config("runlocal")
  with c.unlocked():
    c.data.mixture = "sequential"
  kinds = [int(_b["data_type"][0]) for _b in _take(_build(c), 4)]
  assert kinds == [0, 1, 0, 1]
  with c.unlocked():
    c.data.mixture = "sample"
    c.data.t2i.weight, c.data.mmu.weight = 1.0, 0.0
  assert all(int(b["data_type"][0]) == 0 for b in _take(_build(c), 3))


def test_other_formats():
  b = _build(stage2c.get_config("runlocal")).next_host()
  assert (b["text_labels"][2:] >= 0).any()                      # LLaVA tuning answers are labelled
  b = _build(mixed.get_config("runlocal")).next_host()
  assert b["modality_positions"].shape == (2, 2, 2) and b["latents"].shape == (4, 8, 8, 16)
  np.testing.assert_array_equal(b["data_type"], [5, 5])
  b = _build(video.get_config("runlocal")).next_host()
  assert b["latents"].shape == (2, 3, 8, 8, 16) and (b["modality_positions"][:, 0, 1] == 3 * 16 + 1).all()
  b = _build(lm_cfg.get_config("runlocal")).next_host()
  assert set(b) == {"text_tokens", "text_labels", "image_masks", "data_type", "batch_index"}


def test_patch_latents_are_a_linear_autoencoder():
  p = transforms.PatchLatents(4, 16)
  rng = np.random.default_rng(0)
  z = rng.normal(size=(2, 3, 3, 16)).astype(np.float32) * 0.1
  np.testing.assert_allclose(p.encode(p.decode(z)), z, atol=1e-5)   # encode ∘ decode = id on latents
  x = rng.uniform(-1, 1, size=(1, 8, 8, 3)).astype(np.float32)
  y = p.decode(p.encode(x))
  np.testing.assert_allclose(p.encode(y), p.encode(x), atol=1e-5)   # projection


def _png(path, color, size=(40, 30)):
  Image.fromarray(np.full((size[1], size[0], 3), color, np.uint8)).save(path)


def test_users_data_to_arrayrecord_and_back(tmp_path):
  img_dir = tmp_path / "imgs"
  img_dir.mkdir()
  for i in range(5):
    _png(img_dir / f"{i}.png", (40 * i, 10, 200))
    (img_dir / f"{i}.txt").write_text(f"a photo of a red circle number {i}")
  paths = sources.write_arrayrecord(sources.image_caption_folder(str(img_dir)), str(tmp_path / "t2i"), 2)
  src = sources.ArrayRecordSource(str(tmp_path / "t2i"))
  assert len(src) == 5 and len(paths) == 2
  caps = sorted(src[i]["caption"] for i in range(5))
  assert caps[0] == "a photo of a red circle number 0"
  ann = [{"image": "1.png", "conversations": [{"from": "human", "value": "What is it?\n<image>"},
                                              {"from": "gpt", "value": "a circle"}]},
         {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]
  (tmp_path / "llava.json").write_text(json.dumps(ann))
  sources.write_arrayrecord(sources.llava_json(str(tmp_path / "llava.json"), str(img_dir)), str(tmp_path / "mmu"))
  (tmp_path / "corpus.txt").write_text("first document\n\nsecond document\n")
  sources.write_arrayrecord(sources.text_corpus(str(tmp_path / "corpus.txt")), str(tmp_path / "lm"))
  vid = tmp_path / "vids"
  vid.mkdir()
  np.save(vid / "c0.npy", np.zeros((6, 20, 20, 3), np.uint8))
  (vid / "c0.txt").write_text("a blue square moves up")
  rec = sources.ArrayRecordSource(sources.write_arrayrecord(sources.video_folder(str(vid)), str(tmp_path / "v")))[0]
  assert rec["video"].shape == (6, 20, 20, 3) and rec["caption"] == "a blue square moves up"

  c = stage2c.get_config("runlocal")
  with c.unlocked():
    c.data.t2i.source, c.data.t2i.path = "arrayrecord", str(tmp_path / "t2i")
    c.data.mmu.source, c.data.mmu.path = "arrayrecord", str(tmp_path / "mmu")
  b = _build(c).next_host()
  assert b["latents"].shape == (4, 8, 8, 16)
  no_image = [i for i in (2, 3) if b["modality_positions"][i, 0, 1] == 0]
  assert len(no_image) == 1                                        # the text-only LLaVA sample: (0, 0) slot
  c = lm_cfg.get_config("runlocal")
  with c.unlocked():
    c.data.lm.source, c.data.lm.path = "arrayrecord", str(tmp_path / "lm")
  b = _build(c).next_host()
  tok = pipeline.make_tokenizer(c.data.tokenizer)
  assert tok.decode(b["text_tokens"][0]).strip() in ("first document", "second document")


def test_cached_latents_and_on_the_fly_vae(tmp_path):
  """cache_latents (tiny random VAE) → ArrayRecord → pipeline with latents.source=cached; and the
  on-the-fly path encodes the same pixels on the device (mean equal to the cache's)."""
  import jax
  from showo_jax.tools import cache_latents
  c = stage1.get_config("runlocal")
  with c.unlocked():
    c.data.resolution = 64                      # tiny VAE: /8 → 8×8 latents, the tiny model's grid
    c.data.procedural_size = 64
    c.data.latents.source = "vae"
    c.data.latents.vae_preset = "tiny"
    c.data.latents.vae_dtype = "float32"
    c.data.latents.stochastic = False
    c.data.num_records = 4
  recs = list(cache_latents.encode_records(c, "t2i", batch_size=2))    # same shapes as the batches below
  assert len(recs) == 4 and recs[0]["latent_mean"].shape == (8, 8, 16) and "image" not in recs[0]
  sources.write_arrayrecord(recs, str(tmp_path / "t2i_lat"))
  # on the fly: the same records through the pipeline's VAE path
  with c.unlocked():
    c.data.shuffle = False
    c.data.mmu.batch_size = 0
  d = _build(c)
  from showo_jax import sharding
  mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  g = d.next_global(mesh, "fsdp")
  assert g["latents"].shape == (2, 8, 8, 16)
  np.testing.assert_allclose(np.asarray(g["latents"]), np.stack([r["latent_mean"] for r in recs[:2]]).astype(np.float32),
                             atol=2e-2)                   # cache stores float16
  with c.unlocked():
    c.data.latents.source = "cached"
    c.data.t2i.source, c.data.t2i.path = "arrayrecord", str(tmp_path / "t2i_lat")
  b = _build(c).next_host()
  np.testing.assert_array_equal(b["latents"], np.stack([r["latent_mean"] for r in recs[:2]]).astype(np.float32))
