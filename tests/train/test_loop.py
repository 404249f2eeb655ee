"""Train loop mechanics on the text-only family (fast compile): resume is bitwise, corrupt/partial
checkpoints are skipped, the NaN guard stops with the last good checkpoint, init precedence."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import lm as lm_cfg
from showo_jax.convert import common as convert_common
from showo_jax.train import loop, tasks


def _config(steps=4, every=2, **kw):
  c = lm_cfg.get_config("runlocal")
  with c.unlocked():
    c.total_steps = steps
    c.ckpt.every = every
    c.log.tensorboard = False
    c.optim.lr = 1e-3
    for k, v in kw.items():
      setattr(c, k, v)
  return c


def _train(c, workdir, **kw):
  t = loop.Trainer(c, str(workdir))
  try:
    out = t.train(**kw)
  finally:
    t.close()
  return out


def _params(summary):
  return jax.tree.map(np.asarray, summary["state"].params)


def _ema_config(async_save=False):
  c = _config()
  with c.unlocked():
    c.optim.ema_decay = 0.5
    c.ckpt.async_save = async_save
  return c


def test_resume_is_bitwise_identical(tmp_path):
  full = _train(_ema_config(), tmp_path / "full")
  assert full["origin"] == "scratch" and len(full["losses"]) == 4 and np.isfinite(full["losses"]).all()
  assert full["losses"][-1] < full["losses"][0]
  first = _train(_ema_config(async_save=True), tmp_path / "split", num_steps=2)   # stops and saves at step 2
  assert first["final_step"] == 2
  second = _train(_ema_config(), tmp_path / "split")                 # everything rebuilt from disk
  assert second["origin"].startswith("resumed") and second["start_step"] == 2
  assert first["losses"] + second["losses"] == full["losses"]        # bitwise: floats compared exactly
  a, b = _params(full), _params(second)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # EMA (decay 0.5) is saved and restored too, and differs from the raw parameters
    np.testing.assert_array_equal(np.asarray(full["state"].ema[k]), np.asarray(second["state"].ema[k]), err_msg=k)
  assert any(not np.array_equal(np.asarray(full["state"].ema[k]), a[k]) for k in a)
  # config.json and metrics are written
  assert os.path.exists(tmp_path / "full" / "config.json")
  assert len(open(tmp_path / "full" / "metrics.jsonl").read().splitlines()) == 4


def test_corrupt_and_partial_checkpoints_are_skipped(tmp_path, capsys):
  _train(_config(steps=6), tmp_path / "run")                         # saves 2, 4, 6; keeps the last 2
  ck = tmp_path / "run" / "checkpoints"
  assert sorted(int(p) for p in os.listdir(ck) if p.isdigit()) == [4, 6]
  # a save killed midway leaves an unfinalized temporary directory: never listed as a step
  os.makedirs(ck / "6.orbax-checkpoint-tmp-1234" / "state")
  # corrupt the newest finalized step
  for f in glob.glob(str(ck / "6" / "state" / "**" / "*"), recursive=True):
    if os.path.isfile(f):
      with open(f, "wb") as fh:
        fh.write(b"garbage")
  t = loop.Trainer(_config(steps=6), str(tmp_path / "run"))
  try:
    state = t.init_state()
  finally:
    t.close()
  assert int(state.step) == 4
  out = capsys.readouterr().out
  assert "checkpoints/6 is incomplete or corrupt and is skipped" in out


def _nan_after(step):
  base = tasks.get("lm")

  def loss(model, batch, key, loss_cfg):
    value, metrics = base.loss(model, batch, key, loss_cfg)
    bad = batch["batch_index"][0] >= step
    return jnp.where(bad, jnp.nan, value), metrics

  return tasks.Task("lm_nan", base.model_config, base.build, loss, uses_latents=False)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setitem(tasks.TASKS, "lm_nan", _nan_after(3))       # batch_index 3 is the 4th step
  c = _config(steps=6, every=2)
  with c.unlocked():
    c.model_family = "lm_nan"
  with pytest.raises(loop.NonFiniteLossError, match=r"step 4: non-finite loss .*checkpoints/2"):
    _train(c, tmp_path / "nan")
  ck = tmp_path / "nan" / "checkpoints"
  assert sorted(int(p) for p in os.listdir(ck) if p.isdigit()) == [2]
  t = loop.Trainer(c, str(tmp_path / "nan"))
  try:
    state = t.init_state()
  finally:
    t.close()
  assert int(state.step) == 2
  assert all(np.isfinite(np.asarray(v)).all() for v in state.params.values())


def test_init_precedence(tmp_path):
  base = _train(_config(steps=2, every=2), tmp_path / "a")
  params = _params(base)
  # config.init: converted weights as safetensors (flat names); a substring in params_not_load is skipped
  convert_common.save_safetensors(params, str(tmp_path / "w.safetensors"))
  c = _config(steps=2, every=2)
  with c.unlocked():
    c.init.path = str(tmp_path / "w.safetensors")
    c.init.params_not_load = ["lm_head", "model.norm"]
  t = loop.Trainer(c, str(tmp_path / "b"))
  try:
    st = t.init_state()
    fresh = t.fresh_state()
  finally:
    t.close()
  assert t.origin.startswith("config.init") and int(st.step) == 0
  for k, v in st.params.items():
    want = np.asarray(fresh.params[k]) if "model.norm" in k else params[k]
    np.testing.assert_array_equal(np.asarray(v), want, err_msg=k)
  # a wrong shape is an error that names the parameter
  bad = dict(params)
  bad["model.embed_tokens.embedding"] = bad["model.embed_tokens.embedding"][:-1]
  convert_common.save_safetensors(bad, str(tmp_path / "bad.safetensors"))
  with c.unlocked():
    c.init.path, c.init.params_not_load = str(tmp_path / "bad.safetensors"), []
  t = loop.Trainer(c, str(tmp_path / "c"))
  with pytest.raises(ValueError, match="embed_tokens"):
    t.init_state()
  t.close()
  # config.init may also be a converter output directory (convert/io.py) or another run's Orbax step
  # directory (params only, fresh optimizer, step 0)
  from showo_jax.convert import io as convert_io
  convert_io.save_params(str(tmp_path / "converted"), params, {"model": "qwen2"})
  for path in (tmp_path / "converted", tmp_path / "a" / "checkpoints" / "2"):
    with c.unlocked():
      c.init.path = str(path)
    t = loop.Trainer(c, str(tmp_path / ("e" + path.name)))
    try:
      st = t.init_state()
    finally:
      t.close()
    assert int(st.step) == 0
    for k, v in st.params.items():
      np.testing.assert_array_equal(np.asarray(v), params[k], err_msg=k)
  # config.resume (another workdir) beats config.init; the own workdir beats both
  with c.unlocked():
    c.resume = str(tmp_path / "a")
  t = loop.Trainer(c, str(tmp_path / "d"))
  try:
    st = t.init_state()
  finally:
    t.close()
  assert t.origin.startswith("config.resume") and int(st.step) == 2
