"""Static row layouts of a training batch: which rows can carry which loss.

With the ``concat`` mixture (``data/pipeline.py``) every global batch is laid out the same way: the rows of
each stream, in stream order (e.g. ``t2i, t2i, mmu, mmu``). Knowing that at trace time lets the Show-o2 loss
run each head only on the rows its loss reads:

* the **flow head** (``diff_proj`` + ``diffusion_head_a/b``, ~40% of a small model's per-token FLOPs) only on
  generation rows: understanding rows sit at ``t = 1`` and are masked out of the flow loss when
  ``und_max_t0 == 1`` (every released stage), and text-only rows have no visual tokens;
* the **LM head** only on rows with NTP labels: T2I/T2V rows label nothing (``sequence.format_t2i``, the
  reference's t2i rows have no text loss).

Both losses are masked means, so dropping rows whose mask is empty leaves the loss, its gradients and the
counts unchanged (up to float summation order). The row lists are tuples of ints (static); contiguous lists
become slices. ``sample``/``sequential`` mixtures change the row kind per step, so they carry no layout and
every head runs on every row.

``loss.row_split`` (``"on"`` by default, ``"off"`` runs every head on every row) also holds on a batch-sharded
mesh: the compiled 1.5B stage-2b step on v5p-128 (fsdp 64, 8 rows per device) needs 24.4 instead of 30.7 GiB
of temporaries per device, and the resharding of the selected rows costs ~220 MiB of collective-permutes per
device per step, once, outside the layer loops (``launch/aot_compile.py``, see README).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

# Stream kind (``config.data.<kind>``) -> the ``data_type`` its rows carry (``train.tasks.DATA_TYPES`` names).
STREAM_DATA_TYPE = {"t2i": "t2i", "mmu": "mmu", "lm": "lm", "video": "t2v", "interleaved": "interleaved"}
UND_TYPES = ("mmu", "mmu_vid", "lm")        # flow times clamp to t = 1 (``und_max_t0``)
NO_TEXT_LOSS_TYPES = ("t2i", "t2v")         # every text label is -100
NO_VISUAL_TYPES = ("lm",)                   # no visual block: nothing for the flow loss


ROW_SPLIT_MODES = ("on", "off")


def split_layout(row_types: Sequence[str] | None, mode: str) -> tuple[str, ...] | None:
  """The layout handed to the loss under ``loss.row_split = mode``, or None (every head on every row)."""
  if mode not in ROW_SPLIT_MODES:
    raise ValueError(f"loss.row_split must be one of {ROW_SPLIT_MODES}, got {mode!r}")
  return None if row_types is None or mode == "off" else tuple(row_types)


def concat_layout(streams: Sequence[tuple[str, int]]) -> tuple[str, ...]:
  """Per-row data types of a ``concat`` batch from ``(stream kind, global rows)`` in stream order."""
  return tuple(STREAM_DATA_TYPE[kind] for kind, n in streams for _ in range(int(n)))


def flow_rows(row_types: Sequence[str], und_max_t0: float) -> tuple[int, ...]:
  """Rows whose tokens can enter the flow loss."""
  skip = set(NO_VISUAL_TYPES) | (set(UND_TYPES) if float(und_max_t0) == 1.0 else set())
  return tuple(i for i, t in enumerate(row_types) if t not in skip)


def ntp_rows(row_types: Sequence[str]) -> tuple[int, ...]:
  """Rows that can carry NTP labels."""
  return tuple(i for i, t in enumerate(row_types) if t not in NO_TEXT_LOSS_TYPES)


def slots_of(rows: Sequence[int], num_slots: int) -> tuple[int, ...]:
  """Flat latent-slot indices ``i·M + j`` of the given rows (latents and flow times are ``[b·M, ...]``)."""
  return tuple(int(r) * num_slots + j for r in rows for j in range(num_slots))


def take(tree: Any, rows: Sequence[int]) -> Any:
  """Leading-axis subset ``rows`` of every array in ``tree`` (arrays, :class:`~showo_jax.masks.MaskSpec`,
  None leaves kept): a slice when the rows are contiguous, else a gather with constant indices."""
  rows = tuple(int(r) for r in rows)
  if rows and rows == tuple(range(rows[0], rows[0] + len(rows))):
    lo, hi = rows[0], rows[0] + len(rows)
    return jax.tree.map(lambda a: a[lo:hi], tree)
  idx = np.asarray(rows, np.int32)
  return jax.tree.map(lambda a: a[idx], tree)
