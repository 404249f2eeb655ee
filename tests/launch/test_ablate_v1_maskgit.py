"""``launch.ablate`` on ``v1_maskgit`` at a minimal size: the Show-o v1 T2I base trains once through the real
v1 recipe (``model_family = "showo"``, ``data/pipeline_v1.py``, the shared Trainer) and every MaskGIT arm is
sampled from that one checkpoint and scored by the procedural checker."""
import glob
import json

import numpy as np

from configs import common

ARMS = ("maskgit_t8_g0p0", "maskgit_t8_g5p0", "maskgit_t18_g1p75")


def _small(config):
  from showo_jax.eval import runs
  c = runs.config_from_json(json.loads(config.to_json_best_effort()))
  c.total_steps = 3
  c.ckpt.every = 3
  c.log.every = 1
  c.eval.prompts_per_category = 1
  c.eval.batch_size = 4
  return common.lock(c)


def test_v1_maskgit_trains_once_and_scores_every_setting(tmp_path):
  from launch import ablate
  mod, st = ablate.registry()["v1_maskgit"]
  assert not st.needs and st.suite == "t2i"
  cfgs = ablate.arm_configs("v1_maskgit", "tiny", list(ARMS))
  assert cfgs["maskgit_t8_g0p0"].model_family == "showo"
  cfgs = {k: (_small(v) if k != "__base__" else v) for k, v in cfgs.items()}
  sweep = ablate.Sweep("v1_maskgit", "tiny", str(tmp_path / "results"), str(tmp_path / "work"))
  res = sweep.run(study=(mod, st), configs=cfgs)

  # One training run serves every arm (the arms differ only in eval.*).
  train_dirs = glob.glob(str(tmp_path / "work" / "v1_maskgit" / "train_*"))
  assert len(train_dirs) == 1
  recs = [res[a]["train"]["main"] for a in ARMS]
  assert all(r == recs[0] for r in recs) and recs[0]["total_steps"] == 3
  assert len(recs[0]["invocations"]) == 1
  grids = {}
  for a in ARMS:
    ev = res[a]["eval"]
    m = ev["metrics"]
    assert ev["family"] == "showo" and ev["step"] == 3
    assert ev["settings"]["timesteps"] == int(a.split("_t")[1].split("_")[0])
    for k in ("geneval_overall", "geneval_control_overall", "geneval_exact", "geneval_colors",
              "geneval_tokenizer_ceiling_overall", "geneval_code_hist_match", "geneval_control_code_hist_match"):
      assert 0.0 <= m[k] <= 1.0, (a, k, m[k])
    assert m["geneval_extra_objects"] >= 0
    from PIL import Image
    grids[a] = np.asarray(Image.open(ev["details"]["grid"]))
  # Different sampler settings give different samples (and code statistics) from the same weights.
  match = {a: res[a]["eval"]["metrics"]["geneval_code_hist_match"] for a in ARMS}
  assert len(set(match.values())) > 1, match
  assert all(m > 0 for m in match.values())
  assert not np.array_equal(grids["maskgit_t8_g0p0"], grids["maskgit_t8_g5p0"])
  assert not np.array_equal(grids["maskgit_t8_g0p0"], grids["maskgit_t18_g1p75"])
