"""``launch/aot_compile.py``: the real train step compiles for a TPU topology on this CPU-only machine.

The TPU compiler comes from libtpu (``pip install -e .[tpu]``); without it these tests skip with that reason.
Sizes are the ``runlocal`` ones (real sizes take minutes: see ``docs/aot_table.md``).
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from launch import aot_compile

HAVE_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAVE_LIBTPU, reason="libtpu is not installed (pip install -e .[tpu]); "
                                  "the TPU compiler is needed for a compile-only TPU target")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(path, arg):
  import importlib
  return importlib.import_module(path).get_config(arg)


def test_parse_mesh():
  assert aot_compile.parse_mesh("fsdp=-1,tensor=2", {"data": 1, "fsdp": 1, "tensor": 1}, 16) == \
      {"data": 1, "fsdp": 8, "tensor": 2}
  with pytest.raises(ValueError):
    aot_compile.parse_mesh("data=3", {"data": 1, "fsdp": -1, "tensor": 1}, 16)


def test_row_types_follow_the_trainer_rules():
  """The AOT step gets the row layout exactly when the Trainer uses it (concat mixture, ``loss.row_split``
  "on", the default), scaled to the global batch."""
  c = _config("configs.showo2.stage2b", "runlocal")
  n_t2i, n_mmu = int(c.data.t2i.batch_size), int(c.data.mmu.batch_size)
  assert aot_compile.aot_row_types(c, 1) == ("t2i",) * n_t2i + ("mmu",) * n_mmu
  assert aot_compile.aot_row_types(c, 2) == ("t2i",) * (2 * n_t2i) + ("mmu",) * (2 * n_mmu)
  with c.unlocked():
    c.loss.row_split = "off"
  assert aot_compile.aot_row_types(c, 1) is None
  with c.unlocked():
    c.loss.row_split, c.data.mixture = "on", "sample"
  assert aot_compile.aot_row_types(c, 1) is None                    # the row kind changes per step
  with c.unlocked():
    c.loss.row_split = "auto"
  with pytest.raises(ValueError, match="row_split"):
    aot_compile.aot_row_types(c, 1)


@pytest.mark.tpu
@needs_libtpu
@pytest.mark.parametrize("name", sorted(n for n, t in aot_compile.TARGETS.items() if t.kind == "tpu"))
def test_every_tpu_target_has_devices_and_a_mesh(name):
  """Each listed slice (v4-32 ... two v6e-256 slices) yields its device count from libtpu and a
  (data, fsdp, tensor) mesh over the physical topology; multislice puts ``data`` across the slices."""
  t = aot_compile.TARGETS[name]
  devs = aot_compile.target_devices(t)
  assert len(devs) == t.devices and devs[0].platform == "tpu"
  sizes = {"data": t.slices, "fsdp": t.devices // t.slices // 2, "tensor": 2}
  mesh = aot_compile.build_mesh(t, devs, sizes)
  assert dict(mesh.shape) == sizes and len(set(mesh.devices.flat)) == t.devices
  if t.slices > 1:
    for i in range(t.slices):
      assert {d.slice_index for d in mesh.devices[i].flat} == {i}


@pytest.mark.tpu
@needs_libtpu
def test_lm_step_compiles_for_v5e_4():
  """The Qwen2 LM train step, fsdp over a 2×2 v5e slice, with the Splash kernel lowered to Mosaic."""
  cfg = _config("configs.lm", "runlocal")
  with cfg.unlocked():
    cfg.model.attention_impl = "splash"
    cfg.model.scan_layers = True
    cfg.model.remat_policy = "full"
  r = aot_compile.compile_step(cfg, "v5e-4", {"data": 1, "fsdp": 4, "tensor": 1}, "fsdp", config_name="lm")
  assert r["devices"] == 4 and r["device_kind"].startswith("TPU v5")
  assert r["global_batch"] == 8 and r["rows_per_device"] == 2     # 2 rows per device (per_device semantics)
  b = r["bytes"]
  assert b["argument"] > 0 and b["temp"] > 0 and b["total"] == b["argument"] + b["output"] - b["alias"] + b["temp"] + b["code"]
  assert b["alias"] > 0                         # the donated state is updated in place
  assert r["fits"] and r["xla_flops_per_device"] > 0
  # XLA's per-device count covers the model's matmuls (plus remat recompute and elementwise ops)
  assert r["xla_flops_per_device"] >= 0.9 * r["model_flops_global"] / r["devices"]
  text = aot_compile.render_table([r])
  assert "| v5e-4 | 1×4×1 | fsdp | full | splash |" in text


@pytest.mark.tpu
@needs_libtpu
def test_cli_multislice_json_and_render(tmp_path):
  """The command line end to end on two 2×2 v5e slices over DCN (``data`` spans the slices), then --render."""
  out = tmp_path / "r.json"
  env = dict(os.environ, PYTHONPATH=REPO)
  p = subprocess.run([sys.executable, "-m", "launch.aot_compile", "--config",
                      os.path.join(REPO, "configs/lm.py") + ":runlocal", "--topology", "2xv5e-4",
                      "--mesh", "data=2,fsdp=4", "--attention", "xla", "--json", str(out)],
                     capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "FITS" in p.stdout and "data=2 fsdp=4 tensor=1" in p.stdout
  r = json.loads(out.read_text())
  assert r["topology"] == "2xv5e-4" and r["devices"] == 8 and r["global_batch"] == 16
  md = tmp_path / "t.md"
  p = subprocess.run([sys.executable, "-m", "launch.aot_compile", "--render", str(out), "--render_out", str(md)],
                     capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "| 2xv5e-4 | 2×4×1 |" in md.read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not aot_compile.cuda_plugin_available(),
                    reason="the CUDA PJRT plugin is not installed (pip install -e .[gpu_aot], or point "
                    "SHOWO_JAX_CUDA_PLUGIN_DIR at a directory holding jax_cuda12_plugin + jax_cuda12_pjrt)")
def test_lm_step_compiles_for_8xh100_without_a_gpu(tmp_path):
  """A real compile-only CUDA target (H100 description shipped in launch/targets/) on this CPU-only host,
  with the omni attention in tokamax's Pallas-Triton flash kernels (forward and backward) lowered for sm90."""
  out = tmp_path / "g.json"
  env = dict(os.environ, PYTHONPATH=REPO)
  p = subprocess.run([sys.executable, "-m", "launch.aot_compile", "--config",
                      os.path.join(REPO, "configs/lm.py") + ":runlocal", "--topology", "8xh100",
                      "--mesh", "data=2,fsdp=4", "--attention", "tokamax", "--json", str(out)],
                     capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
  assert p.returncode == 0, p.stderr[-3000:]
  r = json.loads(out.read_text())
  assert r["device_kind"] == "NVIDIA H100 80GB HBM3" and not r["proxy"] and r["devices"] == 8
  assert r["attention"] == "tokamax"
  assert r["bytes"]["argument"] > 0 and r["fits"]
