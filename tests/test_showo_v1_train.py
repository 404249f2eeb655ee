"""Show-o v1 training through the shared loop: stage configs, the v1 input pipeline (``data/pipeline_v1.py``:
MAGVIT-v2 codes, MTP, UniversalPrompting rows, masks, determinism, restore, process split) and a tiny run whose
MTP and NTP losses fall and whose resume is bitwise."""
import importlib
import json
import shutil

import jax
import numpy as np
import pytest

from showo_jax import maskgit, sharding
from showo_jax import masks as masks_lib
from showo_jax import packing
from showo_jax.data import pipeline_v1, prompting_v1
from showo_jax.train import tasks

MODULES = ["base", "stage1", "stage2", "stage3", "tuning1", "tuning2"]


def _get(name, arg=""):
  return importlib.import_module(f"configs.showo.{name}").get_config(arg)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("arg", ["", "runlocal"])
def test_configs_build_and_are_locked(name, arg):
  c = _get(name, arg)
  assert c.is_locked and c.model_family == "showo"
  with pytest.raises(AttributeError):
    c.optim.learning_rate = 1.0
  with pytest.raises(AttributeError):
    c.loss.t2i_coef = 1.0
  with pytest.raises(ValueError, match="unknown config argument"):
    _get(name, "runlocl")
  mcfg = tasks.get("showo").model_config(c.model)
  assert (c.loss.t2i_coeff, c.loss.lm_coeff, c.loss.mmu_coeff, c.loss.mask_schedule) == (1.0, 0.1, 1.0, "cosine")
  if arg == "runlocal":
    assert c.total_steps == 2 and c.model.preset == "tiny" and c.mesh.num_devices == 1
    assert (mcfg.vocab_size, mcfg.num_vq_tokens, mcfg.codebook_size, c.data.max_seq_length) == (395, 16, 64, 32)
    assert all(c.data[k].batch_size == 2 for k in ("t2i", "lm", "mmu"))
  else:
    assert (mcfg.vocab_size, mcfg.mask_token_id, mcfg.image_token_offset) == (58498, 58497, 50305)


def test_reference_recipes():
  s1, s2, s3 = (_get(f"stage{i}") for i in (1, 2, 3))
  bs = lambda c: (c.data.t2i.batch_size, c.data.lm.batch_size, c.data.mmu.batch_size)
  assert bs(s1) == (15, 4, 10) and bs(s2) == (10, 4, 10) and bs(s3) == (10, 4, 10)
  assert [(c.optim.lr, c.optim.schedule.warmup_steps, c.total_steps) for c in (s1, s2, s3)] == \
      [(1e-4, 5000, 500_000), (1e-4, 5000, 1_000_000), (2e-5, 5000, 50_000)]
  assert (s1.optim.schedule.name, s1.optim.weight_decay, s1.optim.grad_clip, s1.seed) == ("cosine", 0.01, 0.0, 10086)
  assert (s1.data.max_seq_length, s1.data.resolution, s1.data.t2i.cond_dropout_prob) == (128, 256, 0.1)
  t1, t2, t1h, t2h = _get("tuning1"), _get("tuning2"), _get("tuning1", "res=512"), _get("tuning2", "res=512")
  assert [bs(c) for c in (t1, t2, t1h, t2h)] == [(4, 2, 7), (4, 2, 6), (5, 2, 5), (5, 2, 5)]
  assert [(c.optim.lr, c.total_steps) for c in (t1, t2, t1h, t2h)] == \
      [(2e-5, 10_000), (5e-5, 14_000), (2e-5, 14_000), (5e-5, 16_000)]
  assert t1.data.max_seq_length == 381 and t1.data.mmu.format == "llava" and t1.optim.schedule.warmup_steps == 1000
  assert tasks.get("showo").model_config(t1h.model).num_vq_tokens == 1024 and t1h.data.resolution == 512
  with pytest.raises(ValueError, match="res"):
    _get("tuning1", "res=384")


# ----------------------------------------------------------------------------------------------- pipeline
def _data(c, **kw):
  return pipeline_v1.build(c, **kw)


def _check_rows(c, data, host, arrays):
  mcfg = tasks.get("showo").model_config(c.model)
  ids, n, off, C = mcfg.token_ids, mcfg.num_vq_tokens, mcfg.image_token_offset, mcfg.codebook_size
  T = c.data.max_seq_length
  x, lab = arrays["input_ids"], arrays["labels"]
  bt, bl, bm = data.info.batch_sizes
  L = T + n + 3
  assert x.shape == lab.shape == (bt + bl + bm, L) and x.dtype == np.int32
  codes = np.asarray(data.encode(jax.numpy.asarray(host["pixels"]))) + off     # the pipeline's own tokenizer
  img = slice(T + 2, T + 2 + n)
  t2i, lm, mmu = slice(0, bt), slice(bt, bt + bl), slice(bt + bl, None)
  # [MASK] only inside the image span of t2i rows; the span holds codes in the unified vocabulary
  where = np.argwhere(x == ids.mask)
  assert len(where) and all(r < bt and T + 2 <= p < T + 2 + n for r, p in where)
  assert np.all(x[t2i, T + 1] == ids.soi) and np.all(x[t2i, -1] == ids.eoi)
  span, span_lab = x[t2i, img], lab[t2i, img]
  masked = span == ids.mask
  assert np.all(span_lab[~masked] == -100) and np.all(span_lab[masked] >= off) and np.all(span_lab[masked] < off + C)
  np.testing.assert_array_equal(np.where(masked, span_lab, span), codes[:bt])
  assert masked.sum(1).min() >= 1
  # soi/eoi are their own targets (the unshifted t2i loss); text pads are ignored
  assert np.all(lab[t2i, T + 1] == ids.soi) and np.all(lab[t2i, -1] == ids.eoi)
  assert np.all(lab[x == ids.pad] == -100)
  # mmu rows: <|mmu|> <|soi|> codes <|eoi|> text; no loss on the first N+3 positions
  np.testing.assert_array_equal(x[mmu, 2:2 + n], codes[bt:])
  assert np.all(x[mmu, 0] == ids.mmu) and np.all(x[mmu, 1] == ids.soi) and np.all(x[mmu, n + 2] == ids.eoi)
  assert np.all(lab[mmu, :n + 3] == -100) and np.all(x[lm] < off)
  # masks equal the reference functions (numpy ports)
  dense = np.asarray(masks_lib.dense(masks_lib.MaskSpec(jax.numpy.asarray(arrays["k_start"]), jax.numpy.asarray(arrays["k_end"])), L))
  np.testing.assert_array_equal(dense[t2i], prompting_v1.predict_next_reference(x[t2i], ids.pad, ids.soi, ids.eoi,
                                                                                 rm_pad_in_image=True))
  np.testing.assert_array_equal(dense[lm], np.broadcast_to(np.tril(np.ones((L, L), bool)), (bl, L, L)))
  np.testing.assert_array_equal(dense[mmu], prompting_v1.mmu_reference(x[mmu], ids.eoi))


@pytest.mark.parametrize("name", ["stage1", "tuning1"])
def test_pipeline_rows_masks_and_codes(name):
  c = _get(name, "runlocal")
  data = _data(c)
  try:
    for _ in range(2):
      host = data.next_host()
      _check_rows(c, data, host, data.host_arrays(host))
    if name == "tuning1":   # LLaVA rows: loss on the answers (and their eos) only
      lab = data.host_arrays(data.next_host())["labels"][-2:]
      assert 0 < (lab != -100).sum() < 40
    b = data.next_global(sharding.make_mesh(1, -1, 1, devices=jax.devices()[:1]), "fsdp")["showo"]
    assert isinstance(b, maskgit.ShowoBatch) and b.input_ids.shape == (6, 51)
    assert (b.batch_size_t2i, b.batch_size_lm, b.batch_size_mmu, b.max_seq_length) == (2, 2, 2, 32)
  finally:
    data.close()


def test_pipeline_deterministic_restorable_and_process_invariant():
  c = _get("stage1", "runlocal")
  with c.unlocked():
    c.data.t2i.batch_size, c.data.mmu.batch_size = 3, 3       # 8 rows: 4 per process below
  a, b = _data(c), _data(c)
  try:
    seq_a = [a.host_arrays(a.next_host()) for _ in range(3)]
    seq_b = [b.host_arrays(b.next_host()) for _ in range(2)]
    for x, y in zip(seq_a, seq_b):
      for k in x:
        np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(seq_a[0]["input_ids"], seq_a[1]["input_ids"])
    state = b.iterator.get_state()
    r = _data(c)
    r.iterator.set_state(state)
    got = r.host_arrays(r.next_host())
    r.close()
    for k in got:
      np.testing.assert_array_equal(got[k], seq_a[2][k])
    halves = []
    for p in range(2):
      d = _data(c, process_index=p, process_count=2)
      halves.append(d.host_arrays(d.next_host()))
      d.close()
    for k in seq_a[0]:
      np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), seq_a[0][k])
  finally:
    a.close()
    b.close()


# ----------------------------------------------------------------------------------------------- training
def _train(c, workdir, **kw):
  return pipeline_v1.train(c, str(workdir), **kw)


def _run_config():
  """Stage-1 runlocal with 8 rows (t2i 3 / lm 2 / mmu 3: one per device on the 8-device mesh), a toy LR and a
  100-step cosine schedule (the step compiled once serves every 1-device run below)."""
  c = _get("stage1", "runlocal")
  with c.unlocked():
    c.total_steps = 100
    c.optim.lr = 2e-3
    c.ckpt.every = 0
    c.log.tensorboard = False
    c.data.t2i.batch_size, c.data.mmu.batch_size = 3, 3
  return c


def test_tiny_v1_run_losses_fall_and_resume_is_bitwise(tmp_path):
  """Stage-1 runlocal recipe (cosine schedule, all three losses) at a toy LR for 100 steps: the MTP (t2i) and
  the NTP (lm, mmu) losses fall; then a run resumed from the step-95 checkpoint reproduces steps 96-100."""
  c = _run_config()
  with c.unlocked():
    c.ckpt.every = 95
  out = _train(c, tmp_path / "a")
  assert out["origin"] == "scratch" and len(out["losses"]) == 100
  rows = [json.loads(l) for l in open(tmp_path / "a" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == list(range(1, 101))
  curves = {k: np.asarray([r[k] for r in rows]) for k in ("loss", "loss_t2i", "loss_lm", "loss_mmu")}
  ratios = {k: v[-10:].mean() / v[:10].mean() for k, v in curves.items()}
  # measured (XLA:CPU): t2i 0.61, lm 0.44, mmu 0.18
  assert ratios["loss_t2i"] < 0.75 and ratios["loss_lm"] < 0.7 and ratios["loss_mmu"] < 0.4, ratios
  np.testing.assert_allclose(curves["loss"], curves["loss_t2i"] + 0.1 * curves["loss_lm"] + curves["loss_mmu"],
                             rtol=1e-5)
  # resume: another workdir holding only a copy of a's step-95 checkpoint continues to 100
  shutil.copytree(tmp_path / "a" / "checkpoints" / "95", tmp_path / "b" / "checkpoints" / "95")
  res = _train(c, tmp_path / "b")
  assert res["origin"].startswith("resumed") and res["start_step"] == 95
  np.testing.assert_array_equal(np.asarray(res["losses"]), np.asarray(out["losses"][95:]))
  for k, v in out["state"].params.items():
    np.testing.assert_array_equal(np.asarray(res["state"].params[k]), np.asarray(v), err_msg=k)


def test_real_size_needs_a_local_phi_tokenizer():
  with pytest.raises(ValueError, match="tokenizer_file"):
    pipeline_v1.build(_get("stage1"))


def test_one_device_equals_eight_devices(tmp_path):
  """The same 8-row batches on 1 device and on data (2) × FSDP (4) fake devices: same losses."""
  assert jax.device_count() == 8
  c = _run_config()
  one = _train(c, tmp_path / "one", num_steps=3)
  with c.unlocked():
    c.mesh.num_devices, c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 0, 2, 4, 1
  eight = _train(c, tmp_path / "eight", num_steps=3)
  assert np.isfinite(one["losses"]).all() and len(one["losses"]) == 3
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=2e-5)


def test_packed_batches_train_like_padded_ones(tmp_path, caplog):
  """``data.pack_len``: pad-free packed rows give the padded run's losses; a step that does not fit runs
  padded (logged), so a too-small ``pack_len`` reproduces the padded run exactly."""
  c = _run_config()
  padded = _train(c, tmp_path / "padded", num_steps=3)
  L = c.data.max_seq_length + c.model.num_vq_tokens + 3
  with c.unlocked():
    c.data.pack_len = 6 * L            # 8 padded rows of L fit in 6·L once their pads are dropped
  data = pipeline_v1.build(c)
  from showo_jax import sharding
  mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  batch = data.next_global(mesh, "fsdp")["showo"]
  assert isinstance(batch, packing.PackedBatch) and batch.input_ids.shape == (1, 6 * L)
  data.close()
  packed = _train(c, tmp_path / "packed", num_steps=3)
  np.testing.assert_allclose(packed["losses"], padded["losses"], rtol=1e-5)
  with c.unlocked():
    c.data.pack_len = L
  with caplog.at_level("WARNING"):
    fallback = _train(c, tmp_path / "fallback", num_steps=3)
  assert any("runs padded" in r.message for r in caplog.records)
  np.testing.assert_array_equal(fallback["losses"], padded["losses"])
