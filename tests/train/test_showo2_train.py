"""Show-o2 training end to end on runlocal configs: 1 device ≡ 8 fake devices; losses fall."""
import jax
import numpy as np
import pytest

from configs.showo2 import stage1
from showo_jax.train import loop


def _run(c, workdir, **kw):
  t = loop.Trainer(c, str(workdir))
  try:
    return t.train(**kw)
  finally:
    t.close()


def _config():
  c = stage1.get_config("runlocal")
  with c.unlocked():
    c.log.tensorboard = False
    c.ckpt.every = 0
    c.data.t2i.batch_size = c.data.mmu.batch_size = 4      # 8 rows: one per device on the 8-device mesh
  return c


def test_one_device_equals_eight_devices(tmp_path):
  """Stage 1 on 1 device vs FSDP (4) × data (2) over 8 fake devices: same losses, metrics, parameters."""
  assert jax.device_count() == 8
  c = _config()
  one = _run(c, tmp_path / "one")
  with c.unlocked():
    c.mesh.num_devices, c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 0, 2, 4, 1
  eight = _run(c, tmp_path / "eight")
  assert len(one["losses"]) == 2 and np.isfinite(one["losses"]).all()
  np.testing.assert_allclose(eight["losses"], one["losses"], rtol=2e-5)
  shard = eight["state"].params["diffusion_head_a.0.mlp.up_proj.kernel"].sharding
  assert len(shard.device_set) == 8 and shard.spec[0] == "fsdp"      # [embed, mlp]: embed over fsdp
  for k, v in one["state"].params.items():
    np.testing.assert_allclose(np.asarray(eight["state"].params[k]), np.asarray(v), rtol=1e-4, atol=1e-6,
                               err_msg=k)
  m1 = [l for l in open(tmp_path / "one" / "metrics.jsonl")]
  m8 = [l for l in open(tmp_path / "eight" / "metrics.jsonl")]
  import json
  for a, b in zip(m1, m8):
    a, b = json.loads(a), json.loads(b)
    for k in ("loss", "loss_ntp", "loss_flow", "grad_norm", "param_norm", "lr/all", "ntp/ntp_tokens",
              "flow/flow_entries"):
      np.testing.assert_allclose(b[k], a[k], rtol=2e-5, err_msg=k)


def test_row_split_on_a_sharded_batch(tmp_path):
  """``loss.row_split = "on"`` (the default) over 8 devices (heads on row subsets of a batch-sharded array)
  trains like the one-device run and like the sharded run without the split."""
  c = _config()
  with c.unlocked():
    c.total_steps = 1
  one = _run(c, tmp_path / "one")
  with c.unlocked():
    c.mesh.num_devices, c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 0, 2, 4, 1
    c.loss.row_split = "on"
  on = _run(c, tmp_path / "on")
  with c.unlocked():
    c.loss.row_split = "off"
  off = _run(c, tmp_path / "off")
  np.testing.assert_allclose(on["losses"], one["losses"], rtol=2e-5)
  np.testing.assert_allclose(off["losses"], one["losses"], rtol=2e-5)
  for k, v in one["state"].params.items():
    np.testing.assert_allclose(np.asarray(on["state"].params[k]), np.asarray(v), rtol=1e-4, atol=1e-6, err_msg=k)
  with c.unlocked():
    c.loss.row_split = "auto"
  with pytest.raises(ValueError, match="row_split"):
    loop.Trainer(c, str(tmp_path / "bad"))


def test_losses_fall(tmp_path):
  """Stage 1 recipe (LLM and semantic path frozen; the step compiled for the test above is reused): on a
  few fixed samples the flow loss must fall within 24 steps, and the frozen parameters must not move."""
  c = _config()
  with c.unlocked():
    c.total_steps = 24
    c.data.num_records = 8
  t = loop.Trainer(c, str(tmp_path / "fall"))
  try:
    init = jax.tree.map(np.asarray, t.fresh_state().frozen)
    out = t.train()
  finally:
    t.close()
  rows = [__import__("json").loads(l) for l in open(tmp_path / "fall" / "metrics.jsonl")]
  flow = [r["loss_flow"] for r in rows]
  assert np.mean(flow[-6:]) < 0.75 * np.mean(flow[:6]), flow
  for k, v in out["state"].frozen.items():
    np.testing.assert_array_equal(np.asarray(v), init[k], err_msg=k)
  assert out["origin"] == "scratch"


def test_packed_llm_rows_train_like_padded_ones(tmp_path, caplog):
  """``data.pack_len``: the LLM on pad-free packed rows (one per batch shard) trains like the padded run, on one
  device and over 8; a step that does not fit runs padded (logged), reproducing the padded run exactly."""
  c = _config()
  padded = _run(c, tmp_path / "padded")
  L = c.data.max_seq_length
  with c.unlocked():
    c.data.pack_len = 6 * L                 # 8 rows of L fit in 6·L once their trailing pads are dropped
  packed = _run(c, tmp_path / "packed")
  np.testing.assert_allclose(packed["losses"], padded["losses"], rtol=2e-5)
  with c.unlocked():
    c.mesh.num_devices, c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 0, 2, 4, 1
    c.data.pack_len = L                     # one packed row per device, each holding one source row
  sharded = _run(c, tmp_path / "sharded")
  np.testing.assert_allclose(sharded["losses"], padded["losses"], rtol=2e-5)
  with c.unlocked():
    c.mesh.num_devices, c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1, 1
    c.data.pack_len = L // 2
  with caplog.at_level("WARNING"):
    fallback = _run(c, tmp_path / "fallback")
  assert any("runs padded" in r.message for r in caplog.records)
  np.testing.assert_array_equal(fallback["losses"], padded["losses"])
