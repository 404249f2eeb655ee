"""``python -m showo_jax.tools.bench``: the JSON it writes (structure and consistency, never speed)."""
import json

import pytest

from showo_jax.tools import bench


def test_bench_json_fields(tmp_path):
  out = tmp_path / "b.json"
  assert bench.main(["qwen2_forward", "--repeats", "2", "--json", str(out)]) == 0
  res = json.loads(out.read_text())
  assert res["workload"] == "qwen2_forward" and res["backend"] == "cpu" and res["repeats"] == 2
  assert res["min_s"] <= res["median_s"] <= res["max_s"] and res["first_call_s"] > 0
  # CPU time is process-wide (XLA threads included) and at least some of each call's wall time.
  assert res["cpu_s_median"] > 0 and res["minor_faults_median"] >= 0 and res["load_avg_1m"] >= 0
  assert res["peak_rss_mb"] > 100
  assert "ratio_vs_official" not in res                           # no official timing for this workload
  assert "xla_flags" in res
  assert res["attention_impl"] == "auto" and res["cpu_flash"]                # which attention path was timed


def test_official_reference_and_unknown_workload():
  ref = bench.official_reference("showo2_train_step")
  if ref is None:
    pytest.skip("shared/bench/official_cpu.json not present")
  assert ref["median_s"] > 0 and ref["workload"]["batch"] == 4
  with pytest.raises(SystemExit, match="unknown workload"):
    bench.run("no_such_workload")
