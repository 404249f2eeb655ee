"""Interleaved ours-vs-official timing: ``python launch/bench_pair.py WORKLOAD [--pairs N] [--sub NAME]``.

The development VMs change speed by tens of percent within minutes, so two benchmark processes run one after
the other can disagree by more than the effect being measured. This tool keeps both sides warm in two
long-lived processes (``python -m showo_jax.tools.bench WORKLOAD --serve`` and
``launch/bench_official.py WORKLOAD --serve`` in the official venv) and alternates single calls: ours, official,
ours, official … Only one side runs at a time; each pair is taken within a second or two, so drift cancels in
the per-pair ratio. Prints JSON: the median of the per-pair ratios, both sides' medians and the pair count.

    python launch/bench_pair.py showo1_train_step --pairs 20 \\
        [--official-python /tmp/offvenv/bin/python] [--official-src /tmp/showo_official] [--sub unpacked]

Needs the official venv and checkout described in ``launch/bench_official.py``. Never imported by the package.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Side:
  """A warm ``--serve`` process: ``call()`` times one run."""

  def __init__(self, cmd: list[str]):
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, cwd=ROOT)
    for line in self.proc.stdout:
      if line.strip() == "ready":
        return
    raise SystemExit(f"{' '.join(cmd)} exited before it was ready (rc {self.proc.wait()})")

  def call(self) -> float:
    self.proc.stdin.write("run\n")
    self.proc.stdin.flush()
    return float(self.proc.stdout.readline())

  def close(self) -> None:
    try:
      self.proc.stdin.write("quit\n")
      self.proc.stdin.flush()
    except BrokenPipeError:
      pass
    self.proc.wait(timeout=60)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("workload")
  ap.add_argument("--pairs", type=int, default=15)
  ap.add_argument("--sub", default="main", help="our sub-workload to time instead of the main one")
  ap.add_argument("--attention", default="auto")
  ap.add_argument("--official-python", default="/tmp/offvenv/bin/python")
  ap.add_argument("--official-src", default="/tmp/showo_official")
  ap.add_argument("--python", default=sys.executable, help="our interpreter")
  args = ap.parse_args(argv)
  ours = Side([args.python, "-m", "showo_jax.tools.bench", args.workload, "--attention", args.attention,
               "--serve", args.sub])
  official = Side([args.official_python, os.path.join(HERE, "bench_official.py"), args.workload,
                   "--official-src", args.official_src, "--serve"])
  try:
    pairs = []
    for i in range(args.pairs):
      # Alternate which side goes first so a trend within a pair does not favour one side.
      a, b = (ours.call(), official.call()) if i % 2 == 0 else reversed((official.call(), ours.call()))
      pairs.append((a, b))
  finally:
    ours.close()
    official.close()
  ratios = [a / b for a, b in pairs]
  out = {"workload": args.workload, "sub": args.sub, "pairs": len(pairs),
         "ratio_median": round(statistics.median(ratios), 4),
         "ratio_quartiles": [round(q, 4) for q in statistics.quantiles(ratios, n=4)] if len(ratios) > 1 else None,
         "ours_median_s": round(statistics.median(a for a, _ in pairs), 4),
         "official_median_s": round(statistics.median(b for _, b in pairs), 4)}
  print(json.dumps(out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
