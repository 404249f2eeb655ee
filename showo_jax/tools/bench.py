"""Benchmarks: ``python -m showo_jax.tools.bench WORKLOAD [--repeats N] [--json FILE]``.

Each workload module (``tools/workloads``) returns a :class:`Workload`: a callable that runs one unit of
work and blocks until it is done, plus its exact shapes. We time the first call (compile + run) apart from
the steady state, then report min/median/max seconds over the repeats, peak resident memory, and the
reference timing from ``shared/bench/official_cpu.json`` with the ratio ours/official when present.
Speed targets are judged from this output, never from timed tests.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

WORKLOADS = {
    "qwen2_forward": "showo_jax.tools.workloads.qwen2_forward",
    "showo2_forward": "showo_jax.tools.workloads.showo2_forward",
    "showo2_train_step": "showo_jax.tools.workloads.showo2_train_step",
    "showo2_t2i_sample": "showo_jax.tools.workloads.showo2_t2i_sample",
    "wan_vae_image": "showo_jax.tools.workloads.wan_vae",
    "wan_vae_video": "showo_jax.tools.workloads.wan_vae",
    "showo1_train_step": "showo_jax.tools.workloads.showo1_train_step",
    "showo1_maskgit_sample": "showo_jax.tools.workloads.showo1_maskgit_sample",
}


# Attention backend the model workloads build with (``--attention``): ``auto`` is what a CPU user gets (the
# fused ``cpu_flash`` kernel where it builds, else the dense XLA path); ``xla`` times the dense path.
ATTENTION = {"impl": "auto"}


@dataclasses.dataclass
class Workload:
  run: Callable[[], Any]                 # one unit of work; must block (jax.block_until_ready)
  shapes: dict                           # exact shapes/settings, echoed in the JSON
  extra: Callable[[float], dict] | None = None   # steady median seconds -> derived metrics (tokens/s, MFU)
  sub: dict[str, "Workload"] | None = None       # variants timed too (e.g. prefix reuse on/off)


def official_reference(name: str) -> dict | None:
  here = os.path.dirname(os.path.abspath(__file__))
  for cand in (os.environ.get("SHOWO_SHARED", ""), os.path.join(here, "..", "..", "..", "shared")):
    path = os.path.join(cand, "bench", "official_cpu.json")
    if cand and os.path.exists(path):
      data = json.load(open(path))
      return data.get("workloads", {}).get(name)
  return None


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def time_workload(w: Workload, repeats: int) -> dict:
  """Wall seconds (first call apart), plus process CPU seconds and minor page faults per steady call.

  The development machines are small shared VMs whose speed drifts by tens of percent within minutes, so
  the JSON also carries the CPU time per call (steadier when another job competes: preemption inflates
  wall time, not CPU time), the faults (host-memory churn, see ``showo_jax.cpu_runtime``) and the load
  average at the end; compare ratios only between runs taken close together.
  """
  t0 = time.perf_counter()
  w.run()
  first = time.perf_counter() - t0
  times, cpu, faults = [], [], []
  for _ in range(repeats):
    c0, f0 = _cpu_s(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    w.run()
    times.append(time.perf_counter() - t0)
    cpu.append(_cpu_s() - c0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
  out = {"first_call_s": first, "min_s": min(times), "median_s": statistics.median(times),
         "max_s": max(times), "repeats": repeats, "cpu_s_median": statistics.median(cpu),
         "minor_faults_median": statistics.median(faults), "load_avg_1m": os.getloadavg()[0], "shapes": w.shapes}
  if w.extra:
    out.update(w.extra(out["median_s"]))
  return out


def _cpu_flash_state() -> str:
  """Whether ``auto`` attention can use the fused CPU kernel in this process, or why not."""
  from showo_jax.kernels import cpu_flash
  return "available" if cpu_flash.available() else cpu_flash.unavailable_reason()


def _build(name: str) -> Workload:
  if name not in WORKLOADS:
    raise SystemExit(f"unknown workload {name!r}; known: {sorted(WORKLOADS)}")
  mod = importlib.import_module(WORKLOADS[name])
  return mod.build(name) if "name" in mod.build.__code__.co_varnames else mod.build()


def run(name: str, repeats: int = 5) -> dict:
  import jax
  w = _build(name)
  result = {"workload": name, "backend": jax.default_backend(), "devices": jax.device_count(),
            "attention_impl": ATTENTION["impl"], "cpu_flash": _cpu_flash_state(),
            "jax": jax.__version__, "python": platform.python_version(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            **time_workload(w, repeats)}
  for sub_name, sub_w in (w.sub or {}).items():
    result[sub_name] = time_workload(sub_w, repeats)
  result["peak_rss_mb"] = _peak_rss_mb()
  ref = official_reference(name)
  if ref is not None:
    ref_t = ref.get("timing", ref)
    med = ref_t.get("median_s") or ref_t.get("median")
    result["official"] = ref_t
    if med:
      result["ratio_vs_official"] = result["median_s"] / float(med)
  return result


def serve(name: str, sub: str = "main") -> int:
  """One call per stdin line, its wall seconds printed per line (``quit`` ends); see ``launch/bench_pair.py``."""
  w = _build(name)
  if sub != "main":
    if sub not in (w.sub or {}):
      raise SystemExit(f"{name} has no sub-workload {sub!r}; known: {sorted(w.sub or {})}")
    w = w.sub[sub]
  w.run()
  print("ready", flush=True)
  for line in sys.stdin:
    if line.strip() == "quit":
      break
    t0 = time.perf_counter()
    w.run()
    print(f"{time.perf_counter() - t0:.6f}", flush=True)
  return 0


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description="showo_jax benchmarks")
  ap.add_argument("workload", choices=sorted(WORKLOADS))
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--json", default=None)
  ap.add_argument("--attention", default="auto", help="attention_impl of the model workloads (auto, xla, ...)")
  ap.add_argument("--serve", default=None, nargs="?", const="main", metavar="SUB",
                  help="paired timing (launch/bench_pair.py): warm up the workload (or sub-workload SUB), print "
                       "'ready', then time one call per stdin line")
  args = ap.parse_args(argv)
  ATTENTION["impl"] = args.attention
  if args.serve:
    return serve(args.workload, args.serve)
  res = run(args.workload, args.repeats)
  text = json.dumps(res, indent=1, default=float)
  print(text)
  if args.json:
    with open(args.json, "w") as f:
      f.write(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
