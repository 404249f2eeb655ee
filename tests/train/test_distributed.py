"""Multi-process and kill/resume tests through the real entry point (``python -m launch.train``); slow."""
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(devices: int, **extra):
  env = dict(os.environ)
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""))
  env.pop("JAX_COORDINATOR_ADDRESS", None)
  env.update(extra)
  return env


def _cmd(config, workdir, *overrides):
  return [sys.executable, "-m", "launch.train", "--config", config, "--workdir", str(workdir),
          "--compile_cache", os.path.join(ROOT, ".jax_cache"), "--config.log.tensorboard=False", *overrides]


def _losses(workdir):
  """Last logged loss per step (a resumed run re-logs the steps after its checkpoint)."""
  out = {}
  for line in open(os.path.join(workdir, "metrics.jsonl")):
    r = json.loads(line)
    out[r["step"]] = (r["loss"], r.get("loss_ntp"), r.get("loss_flow"))
  return out


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
  """2 processes × 2 CPU devices (gloo) vs 1 process × 4 devices: same global batch, same losses."""
  cfg = "configs/showo2/stage1.py:runlocal"
  over = ["--config.total_steps=3", "--config.mesh.num_devices=0", "--config.ckpt.every=2"]
  single = subprocess.run(_cmd(cfg, tmp_path / "one", *over), cwd=ROOT, env=_env(4), capture_output=True,
                          text=True, timeout=1500)
  assert single.returncode == 0, single.stderr[-3000:]
  port = _free_port()
  # Output goes to files, not pipes: a process blocked on a full pipe would stall its peer in a collective.
  logs = [open(tmp_path / f"proc{i}.log", "w") for i in range(2)]
  procs = [subprocess.Popen(_cmd(cfg, tmp_path / "two", *over), cwd=ROOT, stdout=logs[i], stderr=subprocess.STDOUT,
                            env=_env(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                                     JAX_PROCESS_ID=str(i)))
           for i in range(2)]
  for i, p in enumerate(procs):
    p.wait(timeout=1500)
    logs[i].close()
    assert p.returncode == 0, open(tmp_path / f"proc{i}.log").read()[-3000:]
  a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
  assert sorted(a) == sorted(b) == [1, 2, 3]
  for s in a:
    np.testing.assert_allclose(b[s], a[s], rtol=1e-5, err_msg=f"step {s}")
  # both processes wrote their part of the checkpoint (grain iterator state per process)
  assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["2", "3"]


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
  """SIGKILL a run after a checkpoint, restart the same command: the continued losses equal an
  uninterrupted run's exactly."""
  cfg = "configs/lm.py:runlocal"
  over = ["--config.total_steps=8", "--config.ckpt.every=2"]
  ref = subprocess.run(_cmd(cfg, tmp_path / "ref", *over), cwd=ROOT, env=_env(1), capture_output=True, text=True,
                       timeout=900)
  assert ref.returncode == 0, ref.stderr[-3000:]
  wd = tmp_path / "killed"
  p = subprocess.Popen(_cmd(cfg, wd, *over, "--config.log.every=1"), cwd=ROOT, env=_env(1),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 900
  while time.time() < deadline and p.poll() is None:
    ck = wd / "checkpoints"
    if ck.exists() and any(d.isdigit() and int(d) >= 4 for d in os.listdir(ck)):
      break
    time.sleep(0.2)
  p.kill()
  p.wait()
  again = subprocess.run(_cmd(cfg, wd, *over), cwd=ROOT, env=_env(1), capture_output=True, text=True, timeout=900)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed" in again.stdout
  a, b = _losses(tmp_path / "ref"), _losses(wd)
  assert sorted(b) == sorted(a)
  for s in a:
    assert a[s][0] == b[s][0], (s, a[s], b[s])
