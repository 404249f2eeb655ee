"""Benchmark workloads; each module exposes ``build() -> Workload`` (see tools/bench.py)."""
