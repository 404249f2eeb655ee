"""``launch.ablate`` on the ``latent_caching`` study at a minimal size: the runner writes the cached arm's
ArrayRecords of Wan VAE posteriors with ``tools/cache_latents`` before training it, both arms read the same
records in the same order, and the speed metrics come from real measurements."""
import glob
import json
import os

import numpy as np

from configs import common


def _small(config, steps: int = 4, records: int = 32):
  """A locked copy with ``steps`` train steps over ``records`` records per stream (the cache size)."""
  from showo_jax.eval import runs
  c = runs.config_from_json(json.loads(config.to_json_best_effort()))
  c.total_steps = steps
  c.data.num_records = records
  c.log.every = 1
  c.ckpt.every = steps
  return common.lock(c)


def test_latent_caching_sweep_builds_the_cache_and_times_both_arms(tmp_path):
  from launch import ablate
  from showo_jax.data import pipeline
  mod, st = ablate.registry()["latent_caching"]
  assert not st.needs and st.suite == "speed"
  cfgs = ablate.arm_configs("latent_caching", "tiny")
  cfgs = {k: (_small(v) if k != "__base__" else v) for k, v in cfgs.items()}
  sweep = ablate.Sweep("latent_caching", "tiny", str(tmp_path / "results"), str(tmp_path / "work"))
  res = sweep.run(study=(mod, st), configs=cfgs)

  fly, cached = res["latents_on_the_fly"]["eval"]["metrics"], res["latents_cached"]["eval"]["metrics"]
  # The cache: one ArrayRecord directory per image stream, holding exactly num_records posteriors.
  cache = res["latents_cached"]["latent_cache"]
  assert "latent_cache" not in res["latents_on_the_fly"]
  for kind in ("t2i", "mmu"):
    assert glob.glob(os.path.join(cache["dir"], kind, "*.array_record")), kind
    assert cache["streams"][kind]["records"] == 32 and cache["streams"][kind]["bytes"] > 0
  assert cached["cache_build_s"] == cache["seconds"] > 0 and fly["cache_build_s"] == 0
  # The cached arm trained on the cache (its run config points there) and never ran the VAE.
  train_dirs = sorted(glob.glob(str(tmp_path / "work" / "latent_caching" / "train_*")))
  assert len(train_dirs) == 2
  runs_cfg = [json.load(open(os.path.join(d, "config.json"))) for d in train_dirs]
  paths = sorted(c["data"]["t2i"]["path"] for c in runs_cfg)
  assert paths[0] == "" and paths[1] == os.path.join(cache["dir"], "t2i")
  assert cached["encode_s_per_step"] == 0.0 and fly["encode_s_per_step"] > 0
  assert cached["input_s_per_step"] < fly["input_s_per_step"]
  for m in (fly, cached):
    assert m["s_per_step"] > 0 and abs(m["steps_per_s"] * m["s_per_step"] - 1) < 1e-6
    assert np.isfinite(m["final_loss"])
  assert os.path.exists(tmp_path / "results" / "latent_caching" / "README.md")

  # Same records in the same order: the first batches of both arms hold identical text rows.
  build = lambda c: pipeline.build(c, None)
  cached_cfg = ablate.build_latent_cache(cfgs["latents_cached"], cache["dir"])["config"]
  a, b = build(cfgs["latents_on_the_fly"]), build(cached_cfg)
  try:
    for _ in range(2):
      ra, rb = a.next_host(), b.next_host()
      np.testing.assert_array_equal(ra["text_tokens"], rb["text_tokens"])
      assert "pixels" in ra and "latents" in rb
  finally:
    a.close()
    b.close()
