"""``configs/showo2/targets.py``: every shipped pod preset builds through the stage configs, covers exactly its
target's devices, and is the setting its AOT report in ``docs/aot/`` compiled and found to fit."""
import importlib
import json
import os

import pytest

from configs.showo2 import targets
from launch import aot_compile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = {"stage1": ("stage1", "stage1a", "stage1b"), "stage2": ("stage2", "stage2a", "stage2b", "stage2c")}
PRESETS = sorted(targets.TARGET_PRESETS)


def _get(stage, arg):
  return importlib.import_module(f"configs.showo2.{stage}").get_config(arg)


def test_target_device_counts_match_the_compiler_targets():
  for name, n in targets.TARGET_DEVICES.items():
    assert aot_compile.TARGETS[name].devices == n, name


@pytest.mark.parametrize("key", PRESETS, ids=lambda k: ":".join(k))
def test_preset_builds_for_every_stage_of_its_kind(key):
  target, size, kind = key
  p = targets.TARGET_PRESETS[key]
  n = targets.TARGET_DEVICES[target]
  for stage in STAGES[kind]:
    c = _get(stage, f"size={size},target={target}")
    m = c.mesh
    assert (m.data, m.fsdp, m.tensor, m.rules) == (p.data, p.fsdp, p.tensor, p.rules)
    assert m.data * m.fsdp * m.tensor == n and min(m.data, m.fsdp, m.tensor) >= 1   # no -1: exact cover
    assert m.num_devices == 0                       # all devices; a pod of another size fails at make_mesh
    assert c.model.remat_policy == p.remat and c.model.attention_impl == p.attention
    assert c.target == target
    # the preset changes only the mesh / remat / attention: the recipe is the plain stage config's
    plain = _get(stage, f"size={size}")
    assert c.data.to_dict() == plain.data.to_dict() and c.optim.to_dict() == plain.optim.to_dict()
    assert c.model.preset == plain.model.preset and c.model.scan_layers and c.model.dtype == "bfloat16"
    assert list(c.trainable.frozen) == list(plain.trainable.frozen)
  # the aot tool compiles the preset's own target without --topology / --mesh / --remat / --attention
  assert aot_compile.resolve_target(c, None) == (target, "config")


@pytest.mark.parametrize("key", PRESETS, ids=lambda k: ":".join(k))
def test_preset_is_what_its_aot_report_compiled(key):
  """The proof JSON exists, was compiled for this target / size / stage kind with exactly the preset's mesh,
  rules, remat and attention, and fits in the chip's memory."""
  target, size, kind = key
  p = targets.TARGET_PRESETS[key]
  path = os.path.join(REPO, "docs", "aot", p.proof)
  assert os.path.exists(path), f"{p.proof}: compile it with launch/aot_compile.py"
  with open(path) as f:
    r = json.load(f)
  assert r["topology"] == target and r["devices"] == targets.TARGET_DEVICES[target]
  cfg_path, _, args = r["config"].partition(":")
  stage = os.path.basename(cfg_path).removesuffix(".py")
  assert stage in STAGES[kind]
  assert dict(a.split("=") for a in args.split(",") if "=" in a)["size"] == size
  assert r["mesh"] == {"data": p.data, "fsdp": p.fsdp, "tensor": p.tensor} and r["rules"] == p.rules
  assert r["remat"] == p.remat and r["attention"] == p.attention
  assert r["fits"] and r["bytes"]["total"] <= r["hbm"]
  assert r["kind"] == "gpu" or r["device_kind"].startswith("TPU")
  assert not r.get("proxy")                          # a real GPU / TPU compile, not the CPU stand-in


def test_stage2_presets_are_proven_on_the_heaviest_stage2():
  """stage 2 presets cite 2b/2c (nothing frozen); 2a trains only fusion_proj and needs less."""
  for (target, size, kind), p in targets.TARGET_PRESETS.items():
    if kind == "stage2":
      assert p.proof.startswith("s2b_"), p.proof


def test_runlocal_overrides_the_preset():
  c = _get("stage2b", "size=7b,target=v5p-128,runlocal")
  assert (c.mesh.data, c.mesh.fsdp, c.mesh.tensor, c.mesh.num_devices) == (1, -1, 1, 1)
  assert c.model.preset == "tiny" and c.model.remat_policy == "none" and c.model.attention_impl == "xla"
  plain = _get("stage2b", "size=7b,runlocal")
  assert c.mesh.to_dict() == plain.mesh.to_dict() and c.model.to_dict() == plain.model.to_dict()


def test_no_target_keeps_the_recipe_defaults():
  c = _get("stage2b", "size=7b")
  assert c.target == "" and (c.mesh.data, c.mesh.fsdp, c.mesh.tensor) == (1, -1, 1)
  assert c.model.remat_policy == "none" and c.model.attention_impl == "xla"


def test_unknown_or_unproven_targets_are_errors():
  with pytest.raises(ValueError, match="unknown target"):
    _get("stage1", "size=7b,target=v9-1024")
  with pytest.raises(ValueError, match="no AOT-proven preset"):
    _get("stage1", "size=7b,target=v4-32")          # only the stage-2 step was compiled for v4-32
  with pytest.raises(ValueError, match="unknown config argument"):
    _get("stage1", "size=7b,targte=v5p-128")


def test_resolve_target_flags():
  c = _get("stage2b", "size=7b,target=v6e-256")
  assert aot_compile.resolve_target(c, "v6e-256") == ("v6e-256", "config")
  with pytest.raises(ValueError, match="preset is for v6e-256"):
    aot_compile.resolve_target(c, "v5e-256")
  assert aot_compile.resolve_target(c, "v5e-256", "data=2,fsdp=128") == ("v5e-256", "config")
  plain = _get("stage2b", "size=7b")
  with pytest.raises(ValueError, match="--topology is required"):
    aot_compile.resolve_target(plain, None)
  assert aot_compile.resolve_target(plain, "v5p-128") == ("v5p-128", "splash")
  assert aot_compile.resolve_target(plain, "8xh100") == ("8xh100", "config")
  assert aot_compile.resolve_target(c, None, attention="xla") == ("v6e-256", "xla")


def test_render_presets_flags_missing_and_mismatched_proofs():
  key = ("v5p-128", "7b", "stage2")
  p = targets.TARGET_PRESETS[key]
  with open(os.path.join(REPO, "docs", "aot", p.proof)) as f:
    r = json.load(f)
  row = [ln for ln in aot_compile.render_presets({p.proof: r}).splitlines() if f"| {p.proof} |" in ln]
  assert len(row) == 1 and "| yes |" in row[0] and "other settings" not in row[0]
  r2 = dict(r, remat="none" if p.remat != "none" else "full")
  row = [ln for ln in aot_compile.render_presets({p.proof: r2}).splitlines() if f"| {p.proof} |" in ln]
  assert "other settings" in row[0]
  assert "not compiled" in aot_compile.render_presets({})


def test_splice_keeps_the_prose():
  doc = "intro\n<!-- aot:results -->\nold\n<!-- /aot:results -->\noutro\n"
  assert aot_compile.splice(doc, "results", "new\n") == "intro\n<!-- aot:results -->\nnew\n<!-- /aot:results -->\noutro\n"
