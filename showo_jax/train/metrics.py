"""Metric writing without TensorFlow: TensorBoard event files (tensorboardX), JSONL, progress bar, PNG grids.

Only process 0 writes. ``MetricWriter.write(step, scalars)`` appends one JSON line to
``<workdir>/metrics.jsonl`` and the same scalars to ``<workdir>/tb`` event files; ``write_images`` saves a
PNG grid under ``<workdir>/samples/`` and logs it to TensorBoard. :class:`Throughput` turns step times
into tokens/s, samples/s and MFU (model FLOPs from :mod:`showo_jax.flops` over the devices' peak).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
import numpy as np


def _scalar(v) -> float:
  return float(np.asarray(v).reshape(()))


class MetricWriter:
  def __init__(self, workdir: str, *, tensorboard: bool = True, progress_total: int | None = None,
               start_step: int = 0, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.workdir = workdir
    self._tb = None
    self._jsonl = None
    self._bar = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    if tensorboard:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tb"), flush_secs=30)
    if progress_total:
      from tqdm import tqdm
      self._bar = tqdm(total=progress_total, initial=start_step, dynamic_ncols=True, desc="train")

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    vals = {k: _scalar(v) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **vals}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in vals.items():
        if math.isfinite(v):
          self._tb.add_scalar(k, v, int(step))
    if self._bar is not None:
      show = {k: f"{vals[k]:.4g}" for k in ("loss", "loss_ntp", "loss_flow", "tokens_per_s") if k in vals}
      self._bar.set_postfix(show, refresh=False)

  def advance(self, n: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(n)

  def write_images(self, step: int, name: str, images: np.ndarray, captions: list[str] | None = None) -> str | None:
    """``images`` uint8 ``[n, h, w, 3]`` → one PNG grid ``samples/<name>_<step>.png`` (+ TensorBoard)."""
    if not self.enabled:
      return None
    from PIL import Image
    grid = image_grid(np.asarray(images))
    out_dir = os.path.join(self.workdir, "samples")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}_{int(step):08d}.png")
    Image.fromarray(grid).save(path)
    if captions:
      with open(path[:-4] + ".txt", "w") as f:
        f.write("\n".join(captions) + "\n")
    if self._tb is not None:
      self._tb.add_image(name, grid, int(step), dataformats="HWC")
    return path

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
  """``[n, h, w, c]`` uint8 → one ``[H, W, c]`` grid with ``pad`` px black borders."""
  n, h, w, c = images.shape
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[i]
  return grid


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class Throughput:
  """Wall-clock rates between two log points (the loop starts the clock after the first, compiling step)."""

  def __init__(self, flops_per_step: float, tokens_per_step: int, samples_per_step: int,
               peak_flops_total: float | None):
    self.flops_per_step = flops_per_step
    self.tokens_per_step = tokens_per_step
    self.samples_per_step = samples_per_step
    self.peak = peak_flops_total
    self._t = None
    self._step = None

  def start(self, step: int) -> None:
    self._t, self._step = time.perf_counter(), step

  def measure(self, step: int) -> dict:
    now = time.perf_counter()
    if self._t is None or step <= self._step:
      self._t, self._step = now, step
      return {}
    dt = (now - self._t) / (step - self._step)
    self._t, self._step = now, step
    out = {"step_time_s": dt, "tokens_per_s": self.tokens_per_step / dt, "samples_per_s": self.samples_per_step / dt,
           "model_tflops_per_s": self.flops_per_step / dt / 1e12}
    if self.peak:
      out["mfu"] = self.flops_per_step / dt / self.peak
    return out
