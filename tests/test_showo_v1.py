"""Show-o v1: fixture parity (logits, losses, hidden states, MaskGIT replay, sampling helpers), real-size
shapes == manifests, export round trip, prompting builders and masks vs the reference, MTP corruption, losses,
MaskGIT / MMU generation paths (prefix reuse, KV cache == recompute), CLIP-ViT input path, malformed input."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import maskgit, masks
from showo_jax.convert import common, showo as cs
from showo_jax.data import prompting_v1
from showo_jax.models.showo import Showo, ShowoConfig
from showo_jax.tools import parity
from showo_jax.tools.parity_checks import showo_v1 as check_showo_v1


@pytest.fixture(scope="module")
def fixture(fixtures_dir):
  return parity.load_fixture(os.path.join(fixtures_dir, "showo_v1"))


@pytest.fixture(scope="module")
def model(fixture):
  cfg_json, _, _, sd = fixture
  return cs.load(sd, ShowoConfig.from_fixture(cfg_json))


def _bad(comps):
  return [(c.name, c.max_abs, c.note) for c in comps if not c.passed]


@pytest.mark.parity
def test_fixture_parity(fixtures_dir):
  comps = list(check_showo_v1.run(os.path.join(fixtures_dir, "showo_v1"), scan_variants=(False,)))
  names = {c.name for c in comps}
  assert {"t2i_gen.logits", "mmu.logits", "train.loss_t2i", "train.loss_lm", "train.loss_mmu",
          "train.hidden_states_1", "maskgit.sampled_ids", "maskgit.trace.logits_cond_uncond",
          "maskgit.no_prefix_reuse.sampled_ids"} <= names
  assert not _bad(comps), _bad(comps)


@pytest.mark.parity
def test_sampling_fixture_parity(fixtures_dir):
  status, comps = parity.run_fixture("showo_v1_sampling", os.path.join(fixtures_dir, "showo_v1_sampling"))
  assert status == "ok" and len(comps) >= 19, status
  assert not _bad(comps), _bad(comps)


def test_scan_equals_loop_and_export_round_trip(fixture, model):
  cfg_json, inp, out, sd = fixture
  scfg = ShowoConfig.from_fixture(cfg_json, scan_layers=True)
  smodel = cs.load(sd, scfg)
  ids = jnp.asarray(inp["train.input_ids"])
  mask = jnp.asarray(inp["train.attention_mask_additive"][:, 0] == 0)
  run = jax.jit(lambda m, x, s: m(x, mask=s).logits)
  np.testing.assert_allclose(np.asarray(run(smodel, ids, mask)), np.asarray(run(model, ids, mask)), atol=1e-5)
  for m, c in ((model, model.cfg), (smodel, scfg)):
    ex = cs.export(m)
    assert list(ex) == cs.official_keys(c) and sorted(ex) == sorted(sd)
    assert all(np.array_equal(ex[k], sd[k]) and ex[k].dtype == sd[k].dtype for k in sd)


@pytest.mark.parametrize("name,clip", [("showo_v1_phi15.tsv", False), ("showo_v1_phi15_w_clip_vit.tsv", True)])
def test_real_size_shapes_equal_manifests(manifests_dir, name, clip):
  man = common.read_manifest(os.path.join(manifests_dir, name))
  cfg = ShowoConfig.show_o(w_clip_vit=clip, scan_layers=True)
  assert list(man) == cs.official_keys(cfg)                     # export order = the official order
  shaped = nnx.eval_shape(lambda: Showo(cfg, rngs=nnx.Rngs(0)))
  common.check_against(common.flat_shapes(shaped), cs.shapes_to_flat(man, cfg))
  total = sum(int(np.prod(s)) for s in man.values())
  assert total == (1454472322 if clip else 1448176770)
  assert cfg.vocab_size == 58498 and cfg.mask_token_id == 58497 and cfg.image_token_offset == 50305
  assert cfg.token_ids.pad == 50295 and cfg.token_ids.soi == 50296 and cfg.token_ids.lvg == 50304


def test_prompting_rebuilds_fixture_sequences(fixture):
  cfg_json, inp, _, _ = fixture
  cfg = ShowoConfig.from_fixture(cfg_json)
  up = prompting_v1.UniversalPrompting(cfg.token_ids, cfg_json["max_text_len"])
  n = cfg.num_vq_tokens
  gen = inp["t2i_gen.input_ids_cond_uncond"]
  image = np.full((2, n), cfg.mask_token_id)
  np.testing.assert_array_equal(up.t2i_gen_prompt([[5, 6, 7], [8, 9]], image), gen[:2])
  np.testing.assert_array_equal(up.t2i_gen_prompt([[], []], image), gen[2:])
  ids, labels = inp["train.input_ids"], inp["train.labels"]
  t_ids, t_lab = up.t2i_prompt([[10, 11, 12, 13]], ids[:1, 10:10 + n], labels[:1, 10:10 + n], drop=[False])
  np.testing.assert_array_equal(t_ids, ids[:1])
  np.testing.assert_array_equal(t_lab, labels[:1])
  l_ids, l_lab = up.lm_prompt([[40, 41, 42, 43, 44, 45]], ids.shape[1])
  np.testing.assert_array_equal(l_ids, ids[1:2])
  np.testing.assert_array_equal(l_lab, labels[1:2])
  m_ids, m_lab = up.mmu_prompt(ids[2:, 2:2 + n], [[50, 51, 52]])
  np.testing.assert_array_equal(m_ids, ids[2:])
  np.testing.assert_array_equal(m_lab, labels[2:])
  mmu = inp["mmu.input_ids"]
  m_ids, m_lab = up.mmu_prompt(mmu[:, 2:2 + n], [[30, 31, 32], [33, 34, 35, 36, 37]])
  np.testing.assert_array_equal(m_ids, mmu)
  np.testing.assert_array_equal(m_lab, inp["mmu.labels"])
  # null-prompt dropout and truncation (eos kept)
  d_ids, _ = up.t2i_prompt([[10, 11]], ids[:1, 10:10 + n], labels[:1, 10:10 + n], drop=[True])
  assert list(d_ids[0, :9]) == [100] * 6 + [105, 1, 2]
  long_ids = up.t2i_gen_prompt([list(range(3, 40))], image[:1])
  assert list(long_ids[0, :9]) == [105, 1, 3, 4, 5, 6, 7, 8, 2]
  # LLaVA-VQ rows: image prefix + conversation, no bos added
  v_ids, v_lab = up.llava_mmu_prompt(mmu[:1, 2:2 + n], np.asarray([[20, 21, 2]]), np.asarray([[-100, 21, 2]]))
  assert list(v_ids[0, n + 3:]) == [20, 21, 2] and list(v_lab[0, :n + 3]) == [-100] * (n + 3)


def _random_rows(rng, b, l, ids, n_img, pad_prefix=True):
  rows = rng.integers(3, 90, (b, l))
  for i in range(b):
    k = rng.integers(0, l - n_img - 4)
    if pad_prefix:
      rows[i, :k] = ids.pad
    else:
      rows[i, rng.choice(l - n_img - 2, size=k, replace=False)] = ids.pad
    rows[i, l - n_img - 2] = ids.soi
    rows[i, l - 1] = ids.eoi
  return rows


def test_masks_equal_the_reference_functions():
  ids = ShowoConfig.tiny().token_ids
  rng = np.random.default_rng(0)
  rows = _random_rows(rng, 6, 30, ids, 8)
  spec = prompting_v1.predict_next_mask(jnp.asarray(rows), ids.pad, ids.soi, ids.eoi, rm_pad_in_image=True)
  np.testing.assert_array_equal(np.asarray(masks.dense(spec)),
                                prompting_v1.predict_next_reference(rows, ids.pad, ids.soi, ids.eoi, True))
  scattered = _random_rows(rng, 6, 30, ids, 8, pad_prefix=False)
  np.testing.assert_array_equal(
      np.asarray(prompting_v1.predict_next_dense(jnp.asarray(scattered), ids.pad, ids.soi, ids.eoi, True)),
      prompting_v1.predict_next_reference(scattered, ids.pad, ids.soi, ids.eoi, True))
  lm = np.concatenate([rng.integers(3, 90, (3, 20)), np.full((3, 10), ids.pad)], 1)
  spec = prompting_v1.predict_next_mask(jnp.asarray(lm), ids.pad, ids.soi, ids.eoi, rm_pad_in_image=False)
  np.testing.assert_array_equal(np.asarray(masks.dense(spec)),
                                prompting_v1.predict_next_reference(lm, ids.pad, ids.soi, ids.eoi, False))
  mmu = rng.integers(3, 90, (3, 20))
  mmu[:, 7] = ids.eoi
  mmu[1, 3] = ids.eoi   # a second <|eoi|> in another row: the reference still uses row 0's first one
  np.testing.assert_array_equal(np.asarray(masks.dense(prompting_v1.mmu_mask(jnp.asarray(mmu), ids.eoi))),
                                prompting_v1.mmu_reference(mmu, ids.eoi))
  vit = np.asarray(prompting_v1.mmu_vit_mask(1, 20, system_prompt_len=3, num_image_tokens=6))[0]
  ref = np.tril(np.ones((20, 20), bool))
  ref[:, 5:11] = True      # causal_mask[:, :, :, 1+S+1 : 1+S+1+576] = 1
  np.testing.assert_array_equal(vit, ref)


def test_mtp_corruption():
  n, mask_id = 16, 174
  img = jnp.arange(n)[None].repeat(3, 0) + 110
  t = jnp.asarray([0.0, 0.5, 0.999])
  ids, labels, p = maskgit.mask_or_random_replace_tokens(jax.random.key(0), img, mask_id, timesteps=t)
  counts = np.asarray((ids == mask_id).sum(-1))
  want = np.maximum(np.round(n * np.cos(np.asarray(t) * np.pi / 2)), 1)
  np.testing.assert_array_equal(counts, want)
  np.testing.assert_array_equal(np.asarray(labels != -100), np.asarray(ids == mask_id))
  np.testing.assert_array_equal(np.asarray(jnp.where(ids == mask_id, labels, ids)), np.asarray(img))
  # the fixture row: mask_prob 0.3626 -> round(16·p) = 6 masked tokens
  _, _, p = maskgit.mask_or_random_replace_tokens(jax.random.key(1), img[:1], mask_id,
                                                  schedule=lambda x: x, timesteps=jnp.asarray([0.36258557]))
  assert int(jnp.round(16 * p[0])) == 6


def test_losses_groups_and_quirks():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.standard_normal((3, 10, 7)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 7, (3, 10)))
  kw = dict(batch_size_t2i=1, batch_size_lm=1, batch_size_mmu=1, max_seq_length=3)
  out = maskgit.showo_losses(logits, labels, **kw)
  lp = np.asarray(jax.nn.log_softmax(logits, -1))
  lab = np.asarray(labels)
  ce = lambda r, pos, tgt: -np.mean([lp[r, i, lab[r, j]] for i, j in zip(pos, tgt)])
  np.testing.assert_allclose(float(out["loss_t2i"]), ce(0, range(4, 10), range(4, 10)), rtol=1e-5)
  np.testing.assert_allclose(float(out["loss_lm"]), ce(1, range(0, 9), range(1, 10)), rtol=1e-5)
  np.testing.assert_allclose(float(out["loss_mmu"]), ce(2, range(0, 9), range(1, 10)), rtol=1e-5)
  # empty group -> 0 (torch would give NaN); batch_size_mmu = 0 -> logits[-0:] = every row (reference quirk)
  out = maskgit.showo_losses(logits, labels, batch_size_t2i=3, batch_size_lm=0, batch_size_mmu=0, max_seq_length=3)
  assert float(out["loss_lm"]) == 0.0 and int(out["tokens_mmu"]) == 27


@pytest.mark.parametrize("sizes", [(2, 1, 1), (3, 0, 0)])
def test_loss_runs_the_head_per_group_with_the_same_values(sizes):
  """``showo_loss`` (LM head only on each group's positions) equals the losses of the full logits."""
  cfg = ShowoConfig.tiny()
  model = Showo(cfg, rngs=nnx.Rngs(1))
  rng = np.random.default_rng(2)
  ids = jnp.asarray(rng.integers(0, cfg.vocab_size, (4, 24)), jnp.int32)
  labels = jnp.asarray(np.where(rng.random((4, 24)) < 0.6, rng.integers(0, cfg.vocab_size, (4, 24)), -100))
  mask = masks.causal(4, 24)
  bt, bl, bm = sizes
  batch = maskgit.ShowoBatch(labels=labels, mask=mask, input_ids=ids, batch_size_t2i=bt, batch_size_lm=bl,
                             batch_size_mmu=bm, max_seq_length=8)
  loss, got = jax.jit(maskgit.showo_loss)(model, batch)
  want = maskgit.showo_losses(model(ids, mask=mask).logits, labels, batch_size_t2i=bt, batch_size_lm=bl,
                              batch_size_mmu=bm, max_seq_length=8)
  for k, v in want.items():
    np.testing.assert_allclose(np.asarray(got[k]), np.asarray(v), rtol=2e-6, err_msg=k)
  np.testing.assert_allclose(float(loss), float(want["loss_t2i"] + 0.1 * want["loss_lm"] + want["loss_mmu"]),
                             rtol=2e-6)


def _codes(x):
  return np.asarray(x)


def test_t2i_generate_paths(fixture, model):
  _, inp, _, _ = fixture
  gen = jnp.asarray(inp["t2i_gen.input_ids_cond_uncond"])
  cond, uncond = gen[:2], gen[2:]
  key = jax.random.key(3)
  a = maskgit.t2i_generate(model, cond, uncond, key=key, timesteps=4, guidance_scale=1.75)
  b = maskgit.t2i_generate(model, cond, uncond, key=key, timesteps=4, guidance_scale=1.75, reuse_prefix=False)
  np.testing.assert_array_equal(_codes(a), _codes(b))
  assert a.shape == (2, 16) and int(a.min()) >= 0 and int(a.max()) < 64
  # inpainting: known codes are kept
  cfg = model.cfg
  known = jax.random.randint(jax.random.key(4), (2, 16), 0, 64)
  token_mask = jnp.arange(16)[None].repeat(2, 0) % 3 == 0
  img = maskgit.inpainting_input(known, token_mask, cfg)
  lo = gen.shape[1] - 17
  ids = cond.at[:, lo:lo + 16].set(img)
  un = uncond.at[:, lo:lo + 16].set(img)
  out = maskgit.t2i_generate(model, ids, un, key=key, timesteps=3, guidance_scale=1.75)
  np.testing.assert_array_equal(_codes(out)[~np.asarray(token_mask)], _codes(known)[~np.asarray(token_mask)])
  # extrapolation: one "left" step on a 4x4 canvas → 4x6 (half of the new grid is the old left half)
  up = prompting_v1.UniversalPrompting(cfg.token_ids, gen.shape[1] - 19)
  canvas = np.asarray(known).reshape(2, 4, 4)
  new = maskgit.extrapolate(model, up, canvas, [([5, 6], "left")], key=key, timesteps=3, guidance_scale=1.75)
  assert new.shape == (2, 4, 6) and (new[:, :, 2:] == canvas).all()
  # no-CFG path (guidance 0 ignores the uncond rows) and a different schedule
  out = maskgit.t2i_generate(model, cond, uncond, key=key, timesteps=3, guidance_scale=0.0, schedule="pow2")
  assert out.shape == (2, 16)


def test_inpainting_and_extrapolation_helpers():
  m = np.random.default_rng(0).random((8, 8)).astype(np.float32)
  np.testing.assert_allclose(maskgit.bicubic_resize_mask(m, 8), m, atol=1e-6)   # scale 1 is the identity
  np.testing.assert_allclose(maskgit.bicubic_resize_mask(np.ones((32, 32)), 4), np.ones((4, 4)), atol=1e-6)
  tm = maskgit.inpainting_token_mask(np.pad(np.ones((16, 16)), ((0, 16), (0, 16))), 4)
  assert tm.reshape(4, 4)[:2, :2].all() and not tm.reshape(4, 4)[2:, 2:].any()
  canvas = np.arange(16).reshape(1, 4, 4)
  grid = maskgit.extrapolation_grid(canvas, "left", 4, 0, mask_id=174, image_offset=110)
  assert grid.shape == (1, 4, 4) and (grid[0, :, :2] == 174).all() and (grid[0, :, 2:] == canvas[0, :, :2] + 110).all()
  gen = np.full((1, 4, 4), 7)
  assert maskgit.extrapolation_stitch(gen, canvas, "left", 4, 0).shape == (1, 4, 6)
  assert maskgit.extrapolation_stitch(gen, canvas, "up", 4, 0).shape == (1, 6, 4)
  down = maskgit.extrapolation_stitch(gen, canvas, "down", 4, 0)
  assert down.shape == (1, 6, 4) and (down[0, :2] == canvas[0, :2]).all()
  grid = maskgit.extrapolation_grid(canvas, "right", 4, 0, mask_id=174, image_offset=110)
  assert (grid[0, :, :2] == canvas[0, :, 2:] + 110).all() and (grid[0, :, 2:] == 174).all()
  with pytest.raises(ValueError):
    maskgit.extrapolation_grid(canvas, "diagonal", 4, 0, mask_id=174, image_offset=110)


def _greedy_reference(model, x_embeds, mask_dense, steps):
  """``Showo.mmu_generate`` as upstream: full re-forward, mask grown with row = last row + self, argmax."""
  run = jax.jit(lambda m, e, s: m(inputs_embeds=e, mask=s).logits[:, -1])
  toks = []
  for _ in range(steps):
    tok = jnp.argmax(run(model, x_embeds, mask_dense), -1)
    toks.append(tok)
    x_embeds = jnp.concatenate([x_embeds, model.embed(tok[:, None])], 1)
    b, l, _ = mask_dense.shape
    new_row = jnp.concatenate([mask_dense[:, -1], jnp.ones((b, 1), bool)], 1)[:, None]
    mask_dense = jnp.concatenate([jnp.concatenate([mask_dense, jnp.zeros((b, l, 1), bool)], 2), new_row], 1)
  return np.stack([np.asarray(t) for t in toks], 1)


def test_mmu_generate_cache_equals_recompute(fixture, model):
  _, inp, _, _ = fixture
  prompt = jnp.asarray(inp["mmu.input_ids"][:, :22])
  eoi = model.cfg.token_ids.eoi
  spec = prompting_v1.mmu_mask(prompt, eoi)
  toks, lengths = maskgit.mmu_generate(model, prompt, mask=spec, max_new_tokens=4, top_k=1)
  want = _greedy_reference(model, model.embed(prompt), masks.dense(spec), 4)
  np.testing.assert_array_equal(np.asarray(toks), want)
  np.testing.assert_array_equal(np.asarray(lengths), [4, 4])
  # stop at eot: make row 0's first token the eot token
  toks, lengths = maskgit.mmu_generate(model, prompt, mask=spec, max_new_tokens=4, top_k=1,
                                       eot_token=int(want[0, 0]))
  assert int(lengths[0]) == 1 and (np.asarray(toks)[0] == want[0, 0]).all()


def test_clip_vit_variant():
  cfg = ShowoConfig.tiny(w_clip_vit=True)
  m = Showo(cfg, rngs=nnx.Rngs(0))
  sd = cs.export(m)
  assert sd["mm_projector.0.weight"].shape == (64, 32) and sd["mm_projector.2.weight"].shape == (64, 64)
  m2 = cs.load(sd, cfg)
  feats = jax.random.normal(jax.random.key(0), (1, 6, 32))
  np.testing.assert_array_equal(np.asarray(m.project_clip(feats)), np.asarray(m2.project_clip(feats)))
  w0, b0 = sd["mm_projector.0.weight"], sd["mm_projector.0.bias"]
  w2, b2 = sd["mm_projector.2.weight"], sd["mm_projector.2.bias"]
  h = np.asarray(feats) @ w0.T + b0
  h = 0.5 * h * (1 + jax.scipy.special.erf(h / np.sqrt(2)))
  np.testing.assert_allclose(np.asarray(m.project_clip(feats)), np.asarray(h) @ w2.T + b2, atol=1e-5)
  system = jnp.asarray([[11, 12, 13]])
  text = jnp.asarray([[20, 21, 22, 23]])
  emb = m.mmu_vit_embeds(system, feats, text)
  assert emb.shape == (1, 1 + 3 + 1 + 6 + 1 + 4, 64)
  np.testing.assert_array_equal(np.asarray(emb[:, 5:11]), np.asarray(m.project_clip(feats)))
  np.testing.assert_array_equal(np.asarray(emb[:, 0]), np.asarray(m.embed(jnp.asarray([[cfg.token_ids.mmu]]))[:, 0]))
  mask = prompting_v1.mmu_vit_mask(1, emb.shape[1], system_prompt_len=3, num_image_tokens=6)
  toks, _ = maskgit.mmu_generate(m, inputs_embeds=emb, mask=mask, max_new_tokens=3, top_k=1)
  np.testing.assert_array_equal(np.asarray(toks), _greedy_reference(m, emb, mask, 3))
  with pytest.raises(common.ConversionError, match="unused source keys"):
    cs.to_flat(sd, ShowoConfig.tiny())          # mm_projector keys into a model without it
  with pytest.raises(ValueError, match="mm_projector"):
    Showo(ShowoConfig.tiny(), rngs=nnx.Rngs(0)).project_clip(feats)


def test_malformed_inputs(fixture, model):
  cfg_json, inp, _, sd = fixture
  with pytest.raises(ValueError, match="id layout"):
    ShowoConfig(phi=ShowoConfig.tiny().phi, llm_vocab_size=101, codebook_size=64)
  gen = jnp.asarray(inp["t2i_gen.input_ids_cond_uncond"])
  with pytest.raises(ValueError, match="PRNG key"):
    maskgit.t2i_generate(model, gen[:2], gen[2:], timesteps=4, guidance_scale=1.0)
  with pytest.raises(ValueError, match="draws cover"):
    maskgit.t2i_generate(model, gen[:2], gen[2:], timesteps=4, guidance_scale=1.0,
                         draws=(np.zeros((3, 2, 16)), np.zeros((3, 2, 16))))
  with pytest.raises(ValueError, match="cannot hold"):
    maskgit.t2i_generate(model, gen[:2, :10], key=jax.random.key(0))
  with pytest.raises(ValueError, match="exactly one"):
    maskgit.mmu_generate(model, gen[:1], inputs_embeds=model.embed(gen[:1]), mask=masks.causal(1, 27))
  with pytest.raises(ValueError, match="Unknown schedule"):
    maskgit.get_mask_schedule("cubic")
  with pytest.raises(common.ConversionError, match="unused source keys"):
    cs.to_flat({**sd, "showo.model.rotary_emb.inv_freq": np.zeros(8, np.float32)}, model.cfg)
  bad = dict(sd, **{"showo.lm_head.bias": np.zeros(174, np.float32)})
  with pytest.raises(common.ConversionError, match="shape mismatch"):
    cs.load(bad, model.cfg)
