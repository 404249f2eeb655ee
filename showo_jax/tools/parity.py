"""Check the port against the official PyTorch fixtures.

    python -m showo_jax.tools.parity --fixtures ../shared/parity/fixtures [--only NAME ...] [--json FILE]
        [--compile_cache DIR]

For every fixture directory the package supports, the matching module in ``tools/parity_checks`` builds
the model from that fixture's ``config.json``, converts ``weights.safetensors`` with the package's
converter, runs ``inputs.npz`` and compares with ``outputs.npz`` at the bounds of
``shared/parity/README.md``. One line per compared array, then ``N passed, M failed, K skipped``; exit 1
if anything failed. Fixtures without a check module are reported as skipped, never as passed.

Most of a run is XLA compilation (~200 small programs: the fixtures' many shapes, eager mask and embedding
ops), so compiled programs are kept in a persistent cache (``--compile_cache``, default
``~/.cache/showo_jax/parity_xla``; ``""`` turns it off). A repeat run only traces; the numbers are the same.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import traceback

import numpy as np

# fixture directory name -> check module (explicit, grep-able).
CHECKS = {
    "showo2_llm_backbone": "showo_jax.tools.parity_checks.showo2_llm_backbone",
    "showo2_semantic_layers": "showo_jax.tools.parity_checks.showo2_semantic_layers",
    "showo2_flow_head": "showo_jax.tools.parity_checks.showo2_flow_head",
    "showo2_transport": "showo_jax.tools.parity_checks.showo2_transport",
    "showo2_full": "showo_jax.tools.parity_checks.showo2_full",
    "wan21_vae": "showo_jax.tools.parity_checks.wan21_vae",
    "showo_v1": "showo_jax.tools.parity_checks.showo_v1",
    "showo_v1_sampling": "showo_jax.tools.parity_checks.showo_v1_sampling",
    "magvitv2": "showo_jax.tools.parity_checks.magvitv2",
}

# Bounds from shared/parity/README.md "Tolerances".
TIGHT = 1e-5    # schedules, grids, masks, t_freq, embeddings, codebook entries
LOOSE = 1e-4    # logits, hidden states, v_pred, losses, VAE latents/decodes


@dataclasses.dataclass
class Comparison:
  name: str
  max_abs: float
  bound: float
  passed: bool
  exact: bool = False
  note: str = ""


def compare(name: str, ours, ref, atol: float = LOOSE, rtol: float = 0.0, exact: bool = False) -> Comparison:
  """Compare one array; ``exact`` for integers (codes, greedy tokens, replayed MaskGIT ids)."""
  ours, ref = np.asarray(ours), np.asarray(ref)
  if ours.shape != ref.shape:
    return Comparison(name, float("inf"), atol, False, exact, f"shape {ours.shape} vs reference {ref.shape}")
  if exact:
    bad = int(np.sum(ours != ref))
    return Comparison(name, float(bad), 0.0, bad == 0, True, f"{bad} mismatching entries" if bad else "")
  diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
  err = float(diff.max()) if diff.size else 0.0
  ok = bool(np.all(diff <= atol + rtol * np.abs(ref.astype(np.float64))) and np.all(np.isfinite(ours)))
  return Comparison(name, err, atol, ok)


def load_fixture(fixture_dir: str):
  """(config dict, inputs npz, outputs npz, official state dict or None)."""
  cfg = json.load(open(os.path.join(fixture_dir, "config.json")))
  inputs = dict(np.load(os.path.join(fixture_dir, "inputs.npz")))
  outputs = dict(np.load(os.path.join(fixture_dir, "outputs.npz")))
  wpath = os.path.join(fixture_dir, "weights.safetensors")
  sd = None
  if os.path.exists(wpath):
    from safetensors.numpy import load_file
    sd = load_file(wpath)
  return cfg, inputs, outputs, sd


def run_fixture(name: str, fixture_dir: str) -> tuple[str, list[Comparison]]:
  """('ok' | 'skipped: why' | 'error: why', comparisons)."""
  module = CHECKS.get(name)
  if module is None:
    return "skipped: no check for this fixture", []
  try:
    mod = importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name and e.name.startswith("showo_jax"):
      return "skipped: not supported yet", []
    raise
  try:
    return "ok", list(mod.run(fixture_dir))
  except Exception:  # report and count as a failure, keep checking the other fixtures
    return "error: " + traceback.format_exc(limit=8), []


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--fixtures", required=True, help="directory holding one sub-directory per fixture")
  ap.add_argument("--only", nargs="*", default=None, help="fixture names to check")
  ap.add_argument("--json", default=None, help="write the results here")
  ap.add_argument("--compile_cache", default=os.path.join(os.path.expanduser("~"), ".cache", "showo_jax", "parity_xla"),
                  help="persistent XLA compilation cache directory ('' = off)")
  args = ap.parse_args(argv)
  if args.compile_cache:
    import jax
    jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if not os.path.isdir(args.fixtures):
    print(f"error: --fixtures {args.fixtures} is not a directory", file=sys.stderr)
    return 2
  names = sorted(d for d in os.listdir(args.fixtures) if os.path.isdir(os.path.join(args.fixtures, d)))
  if args.only:
    unknown = sorted(set(args.only) - set(names))
    if unknown:
      print(f"error: no fixture directories named {unknown} in {args.fixtures}", file=sys.stderr)
      return 2
    names = [n for n in names if n in args.only]
  passed = failed = skipped = 0
  report = {}
  for name in names:
    t0 = time.time()
    status, comps = run_fixture(name, os.path.join(args.fixtures, name))
    if status.startswith("skipped"):
      skipped += 1
      print(f"SKIP {name}: {status[9:]}")
      report[name] = {"status": status}
      continue
    if status.startswith("error"):
      failed += 1
      print(f"FAIL {name}: {status}")
      report[name] = {"status": status}
      continue
    for c in comps:
      verdict = "PASS" if c.passed else "FAIL"
      metric = f"mismatches={int(c.max_abs)}" if c.exact else f"max_abs={c.max_abs:.3e} bound={c.bound:.0e}"
      print(f"{verdict} {name}/{c.name} {metric}{' ' + c.note if c.note else ''}")
      passed += c.passed
      failed += not c.passed
    report[name] = {"status": "ok", "seconds": round(time.time() - t0, 2),
                    "comparisons": [dataclasses.asdict(c) for c in comps]}
  print(f"parity: {passed} passed, {failed} failed, {skipped} skipped")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
