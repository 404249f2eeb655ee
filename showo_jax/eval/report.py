"""Ablation reports: Markdown tables and small PNG plots (matplotlib if installed, else drawn with Pillow).

No upstream counterpart. Used by ``launch/ablate.py`` to write ``results/<study>/``: ``README.md`` (one row per
arm), ``loss_curves.png`` (training loss vs step, one line per arm) and ``metrics.png`` (one bar group per
metric, one bar per arm).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 128), (128, 128, 0)]


def fmt(v, digits: int = 3) -> str:
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  if isinstance(v, bool):
    return "yes" if v else "no"
  if isinstance(v, int):
    return str(v)
  if isinstance(v, float):
    return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.1f}"
  return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


# ------------------------------------------------------------------------------------------ drawing
def _font():
  from PIL import ImageFont
  try:
    return ImageFont.load_default(size=11)
  except TypeError:        # Pillow < 10.1
    return ImageFont.load_default()


def _canvas(w: int, h: int):
  from PIL import Image, ImageDraw
  im = Image.new("RGB", (w, h), (255, 255, 255))
  return im, ImageDraw.Draw(im)


def _try_matplotlib():
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
  except ImportError:
    return None


def line_plot(path: str, series: dict[str, tuple], *, title: str = "",
              xlabel: str = "step", ylabel: str = "loss", size=(640, 400)) -> str:
  """One line per series (``name -> (xs, ys)``)."""
  plt = _try_matplotlib()
  if plt is not None:
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    for name, (xs, ys) in series.items():
      ax.plot(xs, ys, label=name, lw=1.2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
  w, h = size
  im, d = _canvas(w, h)
  font = _font()
  left, right, top, bottom = 60, w - 230, 30, h - 40
  allx = [x for xs, _ in series.values() for x in xs]
  ally = [y for _, ys in series.values() for y in ys if y is not None and math.isfinite(y)]
  if not allx or not ally:
    im.save(path)
    return path
  x0, x1 = min(allx), max(allx) or 1
  y0, y1 = min(ally), max(ally)
  if y1 - y0 < 1e-9:
    y1 = y0 + 1.0
  sx = lambda x: left + (x - x0) / max(1e-9, x1 - x0) * (right - left)
  sy = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)
  d.rectangle([left, top, right, bottom], outline=(0, 0, 0))
  for k in range(5):
    yv = y0 + (y1 - y0) * k / 4
    d.line([left - 4, sy(yv), left, sy(yv)], fill=(0, 0, 0))
    d.text((4, sy(yv) - 6), f"{yv:.3g}", fill=(0, 0, 0), font=font)
    xv = x0 + (x1 - x0) * k / 4
    d.line([sx(xv), bottom, sx(xv), bottom + 4], fill=(0, 0, 0))
    d.text((sx(xv) - 10, bottom + 6), f"{xv:.0f}", fill=(0, 0, 0), font=font)
  d.text((left, 8), title, fill=(0, 0, 0), font=font)
  d.text(((left + right) // 2 - 10, h - 16), xlabel, fill=(0, 0, 0), font=font)
  for i, (name, (xs, ys)) in enumerate(series.items()):
    col = PALETTE[i % len(PALETTE)]
    pts = [(sx(x), sy(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    if len(pts) > 1:
      d.line(pts, fill=col, width=2)
    d.line([right + 10, top + 14 * i + 6, right + 28, top + 14 * i + 6], fill=col, width=3)
    d.text((right + 32, top + 14 * i), name[:32], fill=(0, 0, 0), font=font)
  im.save(path)
  return path


def bar_plot(path: str, metrics: Sequence[str], arms: Sequence[str], values: dict[str, dict], *,
             title: str = "", size=(720, 400)) -> str:
  """Grouped bars: one group per metric, one bar per arm (``values[arm][metric]``); each group is scaled
  to its own maximum so metrics of different ranges share the plot (the value is printed above the bar)."""
  plt = _try_matplotlib()
  if plt is not None:
    fig, axes = plt.subplots(1, len(metrics), figsize=(size[0] / 100, size[1] / 100), dpi=100, squeeze=False)
    for ax, m in zip(axes[0], metrics):
      vals = [values.get(a, {}).get(m) for a in arms]
      ax.bar(range(len(arms)), [v if v is not None else 0 for v in vals],
             color=[np.array(PALETTE[i % len(PALETTE)]) / 255 for i in range(len(arms))])
      ax.set_title(m, fontsize=8)
      ax.set_xticks(range(len(arms)), [a[:10] for a in arms], rotation=60, fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
  w, h = size
  im, d = _canvas(w, h)
  font = _font()
  left, right, top, bottom = 20, w - 150, 30, h - 60
  d.text((left, 8), title, fill=(0, 0, 0), font=font)
  gw = (right - left) / max(1, len(metrics))
  bw = max(2.0, (gw - 16) / max(1, len(arms)))
  for g, m in enumerate(metrics):
    vals = [values.get(a, {}).get(m) for a in arms]
    finite = [abs(v) for v in vals if v is not None and math.isfinite(v)]
    vmax = max(finite) if finite else 1.0
    vmax = vmax if vmax > 0 else 1.0
    gx = left + g * gw + 8
    for i, v in enumerate(vals):
      col = PALETTE[i % len(PALETTE)]
      x = gx + i * bw
      if v is None or not math.isfinite(v):
        d.text((x, bottom - 12), "–", fill=(0, 0, 0), font=font)
        continue
      hgt = abs(v) / vmax * (bottom - top - 24)
      d.rectangle([x, bottom - hgt, x + bw - 2, bottom], fill=col)
      d.text((x, bottom - hgt - 12), f"{v:.2g}", fill=(0, 0, 0), font=font)
    d.text((gx, bottom + 6), m[:int(gw // 6)], fill=(0, 0, 0), font=font)
  d.line([left, bottom, right, bottom], fill=(0, 0, 0))
  for i, a in enumerate(arms):
    col = PALETTE[i % len(PALETTE)]
    d.rectangle([right + 10, top + 14 * i + 2, right + 24, top + 14 * i + 10], fill=col)
    d.text((right + 28, top + 14 * i), a[:20], fill=(0, 0, 0), font=font)
  im.save(path)
  return path
