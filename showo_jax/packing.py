"""Pad-free packing of training batches (host side, numpy): same losses and gradients, fewer tokens.

Show-o v1 packs the whole step (:func:`pack`, :func:`packed_loss`); Show-o2 packs its LLM (:func:`pack_llm`,
:class:`LLMPack`, read back in the padded layout by the heads). Both use :func:`kept_tokens` and :func:`plan`.

A v1 batch is ``[t2i | lm | mmu]`` rows of one length ``L``, padded: left padding in the t2i text window,
right padding after lm and mmu text. In the official step every pad position runs through every layer and the
LM head although none of them is a target and (with the reference masks) no other token attends to one. In
the benchmark batch that is 27% of all positions. :func:`pack` drops exactly those tokens and concatenates what
is left, row after row, into ``rows`` packed rows:

* a token is **dropped** iff it is a pad whose logit has no target *and* no kept token's key range covers it;
  the second condition is closed under iteration, so what remains is self-contained: every key a kept query
  reads is kept, and a dropped token influences nothing (tokens only meet through attention);
* each kept token keeps its **original position id** (RoPE sees ``arange(L)`` of its row, pads included, as in
  the reference) and its key range, re-indexed into the packed row (the range was contiguous and fully kept,
  so it stays contiguous);
* the **targets are pre-aligned** to the logit that predicts them (t2i: the same position from
  ``max_seq_length + 1`` on; lm and mmu: the next position, the reference's shift), each with its loss group,
  so :func:`packed_losses` is a per-token cross entropy averaged per group: the reference's three means.

Filler positions at the end of a packed row attend to themselves only and carry no target. Rows are filled
first-fit in the original order; ``row_len`` (rounded up to ``multiple``) is the longest packed row unless
given. A batch whose ``batch_size_mmu`` is 0 (the reference then reads every row as MMU as well) or that has
an empty key range is not packable: :func:`pack` raises ``ValueError`` naming the reason.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from showo_jax import maskgit

IGNORE = maskgit.IGNORE_ID
GROUPS = ("t2i", "lm", "mmu")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class PackedBatch:
  """(Fields are ``[r, T]`` int32 arrays, numpy on the host and ``jax.Array`` on device; typed ``Any`` because
  jax rebuilds these dataclasses with placeholder leaves when it matches shardings to them.)

  Packed rows ``[r, T]``: ids, original positions, key ranges, aligned targets and their loss group
  (0 t2i, 1 lm, 2 mmu, -1 none); ``t2i_image_index [bt, n]`` = flat packed index (``row * T + col``) of each
  t2i row's image tokens, for corrupting them on device. :func:`pack` fills it with host (numpy) arrays."""
  input_ids: Any
  positions: Any
  k_start: Any
  k_end: Any
  targets: Any
  group: Any
  t2i_image_index: Any


def aligned_targets(labels: np.ndarray, counts: tuple[int, int, int], max_seq_length: int,
                    global_mmu_rows: int | None = None):
  """``(targets, group)`` per original position: the label the logit at that position is scored against.

  ``counts`` are the ``(t2i, lm, mmu)`` rows given; ``global_mmu_rows`` (default ``counts[2]``) is the whole
  batch's, which decides the reference's ``batch_size_mmu == 0`` quirk when one process packs its own rows."""
  b, l = labels.shape
  bt, bl, bm = counts
  if (bm if global_mmu_rows is None else global_mmu_rows) == 0:
    raise ValueError("batch_size_mmu == 0 reads every row as MMU too (reference quirk); such a batch is not "
                     "packable")
  if bt + bl + bm != b:
    raise ValueError(f"row counts {counts} do not add up to the batch size {b}")
  targets = np.full((b, l), IGNORE, np.int64)
  group = np.full((b, l), -1, np.int64)
  # The loss's own group layout (rows, logit positions, label positions), written per logit position.
  for g, (rows, lpos, tpos) in enumerate(maskgit.loss_groups(b, bt, bl, bm, max_seq_length).values()):
    targets[rows, lpos] = labels[rows, tpos]
    group[rows, lpos] = g
  group = np.where(targets == IGNORE, -1, group)
  return targets, group


def kept_tokens(input_ids: np.ndarray, targets: np.ndarray, k_start: np.ndarray, k_end: np.ndarray,
                pad_id: int) -> np.ndarray:
  """Boolean ``[b, L]``: non-pads, targets, and (to a fixpoint) every key a kept query reads."""
  b, l = input_ids.shape
  if np.any(k_end <= k_start):
    raise ValueError("a query row with an empty key range is not packable (its dense form averages every key)")
  keep = (input_ids != pad_id) | (targets != IGNORE)
  while True:
    # A key is needed iff some kept query's range covers it: a difference array over the ranges.
    cover = np.zeros((b, l + 1), np.int64)
    rows = np.nonzero(keep)
    np.add.at(cover, (rows[0], k_start[rows]), 1)
    np.add.at(cover, (rows[0], k_end[rows]), -1)
    need = np.cumsum(cover[:, :l], axis=1) > 0
    grown = keep | need
    if np.array_equal(grown, keep):
      return keep
    keep = grown


@dataclasses.dataclass
class Plan:
  """Where every kept token of a padded ``[b, L]`` batch goes in ``rows`` packed rows of ``t`` tokens (numpy).

  ``src_row, src_col [rows, t]``: source of each packed slot (0 for fillers, ``valid`` False); ``k_start,
  k_end [rows, t]``: re-indexed key ranges (fillers see themselves); ``dest [b, L]``: flat packed index
  ``row * t + col`` of each source token, -1 where dropped."""
  src_row: np.ndarray
  src_col: np.ndarray
  valid: np.ndarray
  k_start: np.ndarray
  k_end: np.ndarray
  dest: np.ndarray


def plan(keep: np.ndarray, k_start: np.ndarray, k_end: np.ndarray, *, rows: int = 1, row_len: int | None = None,
         multiple: int = 64) -> Plan:
  """First-fit placement (original order) of each source row's kept tokens into ``rows`` packed rows.

  ``row_len`` fixes the packed length (``ValueError`` when the rows do not fit); by default it is the longest
  packed row rounded up to ``multiple``."""
  b, l = keep.shape
  k_start, k_end = np.asarray(k_start).astype(np.int64), np.asarray(k_end).astype(np.int64)
  lengths = keep.sum(1)
  fill = [0] * rows
  cap = row_len if row_len is not None else max(-(-int(lengths.sum()) // rows), int(lengths.max()))
  place = []
  for n in lengths:
    r = next((i for i in range(rows) if fill[i] + n <= cap), None)
    if r is None:   # no row has room at this capacity: grow the least-filled row (auto length only)
      if row_len is not None:
        raise ValueError(f"packed rows of {row_len} tokens cannot hold rows of lengths {lengths.tolist()} in "
                         f"{rows} rows")
      r = int(np.argmin(fill))
    place.append((r, fill[r]))
    fill[r] += int(n)
  t = row_len if row_len is not None else -(-max(fill) // multiple) * multiple
  filler = np.broadcast_to(np.arange(t, dtype=np.int32), (rows, t))
  out = Plan(np.zeros((rows, t), np.int32), np.zeros((rows, t), np.int32), np.zeros((rows, t), bool),
             filler.copy(), filler + 1, np.full((b, l), -1, np.int32))
  for i in range(b):
    r, off = place[i]
    cols = np.nonzero(keep[i])[0]
    new = off + np.arange(len(cols))
    rank = np.cumsum(keep[i]) - 1               # packed offset (within the row's block) of each kept column
    out.src_row[r, new], out.src_col[r, new], out.valid[r, new] = i, cols, True
    # Every key of a kept query's (contiguous) range is kept (kept_tokens' fixpoint), so it stays contiguous.
    out.k_start[r, new] = off + rank[k_start[i, cols]]
    out.k_end[r, new] = off + rank[k_end[i, cols] - 1] + 1
    out.dest[i, cols] = r * t + new
  return out


def pack(input_ids, labels, k_start, k_end, *, counts: tuple[int, int, int], max_seq_length: int, pad_id: int,
         num_vq_tokens: int, rows: int = 1, row_len: int | None = None, multiple: int = 64,
         global_mmu_rows: int | None = None, image_index: bool = True) -> PackedBatch:
  """Pack a padded v1 batch (numpy ``[b, L]`` arrays, rows ``[t2i | lm | mmu]``) into ``rows`` packed rows.

  ``image_index=False`` leaves ``t2i_image_index`` out (None): for batches whose MTP corruption is done."""
  input_ids, labels = np.asarray(input_ids), np.asarray(labels)
  k_start, k_end = np.asarray(k_start), np.asarray(k_end)
  targets, group = aligned_targets(labels, counts, max_seq_length, global_mmu_rows)
  keep = kept_tokens(input_ids, targets, k_start, k_end, pad_id)
  pl = plan(keep, k_start, k_end, rows=rows, row_len=row_len, multiple=multiple)
  take = lambda a, fill: np.where(pl.valid, a[pl.src_row, pl.src_col], fill).astype(np.int32)
  images = None
  if image_index:
    s = max_seq_length + 2                      # first image position of a t2i row
    images = pl.dest[:counts[0], s:s + num_vq_tokens]
    if (images < 0).any():
      raise ValueError("a t2i image position is not kept (is it a pad?)")
  return PackedBatch(input_ids=take(input_ids, pad_id), positions=take(np.arange(input_ids.shape[1])[None]
                                                                       .repeat(input_ids.shape[0], 0), 0),
                     k_start=pl.k_start, k_end=pl.k_end, targets=take(targets, IGNORE), group=take(group, -1),
                     t2i_image_index=images)


class Packer:
  """The ``data.pack_len`` policy both pipelines share: one packed row of ``pack_len`` tokens per batch shard this
  process feeds, and a padded step (None, logged once) when a batch does not fit."""

  def __init__(self, pack_len: int):
    self.pack_len = pack_len
    self._warned = False

  @staticmethod
  def rows(mesh, rules) -> int:
    from showo_jax import sharding
    spec = sharding.batch_sharding(mesh, 2, rules).spec[0]
    axes = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
    shards = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    return max(1, shards // jax.process_count())

  def __call__(self, build: Callable[[int, int], Any], mesh, rules) -> Any | None:
    """``build(rows, row_len)``, or None when its rows do not fit (``plan``'s "cannot hold")."""
    try:
      return build(self.rows(mesh, rules), self.pack_len)
    except ValueError as err:
      if "cannot hold" not in str(err):
        raise
      if not self._warned:
        self._warned = True
        logging.warning("data.pack_len=%d: %s; this step (and any other that does not fit) runs padded",
                        self.pack_len, err)
      return None


def packed_losses(logits: Float[Array, "r t v"], targets: Int[Array, "r t"], group: Int[Array, "r t"]
                  ) -> dict[str, jax.Array]:
  """``loss_{t2i,lm,mmu}`` and ``tokens_*`` of a packed batch: per-group means of the token cross entropy,
  the same numbers as ``maskgit.showo_losses`` on the unpacked batch."""
  logits = logits.astype(jnp.float32)
  logz = jax.nn.logsumexp(logits, axis=-1)
  out = {}
  for g, name in enumerate(GROUPS):
    total, count = maskgit.group_ce(logz, logits, jnp.where(group == g, targets, IGNORE))
    out[f"loss_{name}"] = total / jnp.maximum(count, 1)
    out[f"tokens_{name}"] = count
  return out


def packed_loss(model, batch: PackedBatch, *, t2i_coeff: float = 1.0, lm_coeff: float = 0.1, mmu_coeff: float = 1.0):
  """``maskgit.showo_loss`` for a :class:`PackedBatch`: ``(loss, metrics)`` with the same keys and values."""
  from showo_jax import masks as masks_lib
  batch = jax.tree.map(jnp.asarray, batch)   # host (numpy) batches closed over by a jitted caller
  out = model(batch.input_ids, mask=masks_lib.MaskSpec(batch.k_start, batch.k_end), positions=batch.positions)
  return maskgit.weighted_loss(packed_losses(out.logits, batch.targets, batch.group), t2i_coeff, lm_coeff, mmu_coeff)


# --------------------------------------------------------------------------------------- Show-o2: the LLM
@jax.tree_util.register_dataclass
@dataclasses.dataclass
class LLMPack:
  """Show-o2: the positions of a padded ``[b, L]`` batch the LLM runs on, packed into ``[r, t]`` rows (int32,
  ``valid`` bool; fields typed ``Any`` for the same reason as :class:`PackedBatch`).

  ``index``: flat source position ``row * L + col`` of each packed token (0 for fillers, ``valid`` False);
  ``positions``: its original column (the RoPE position); ``k_start, k_end``: its key range re-indexed into the
  packed row. The flow head and the LM head read the LLM output back in the padded layout (:meth:`scatter`),
  where dropped positions hold zeros: they are pads no kept query attends to and no loss reads."""
  index: Any
  positions: Any
  k_start: Any
  k_end: Any
  valid: Any

  def gather(self, x: Float[Array, "b l *d"]) -> Float[Array, "r t *d"]:
    b, l = x.shape[:2]
    return x.reshape((b * l,) + x.shape[2:])[jnp.asarray(self.index)]

  def scatter(self, h: Float[Array, "r t *d"], b: int, l: int) -> Float[Array, "b l *d"]:
    flat = jnp.zeros((b * l,) + h.shape[2:], h.dtype)
    idx = jnp.where(jnp.asarray(self.valid), jnp.asarray(self.index), b * l)   # fillers: out of range, dropped
    return flat.at[idx.reshape(-1)].set(h.reshape((-1,) + h.shape[2:]), mode="drop").reshape((b, l) + h.shape[2:])


def pack_llm(text_tokens, text_labels, k_start, k_end, *, pad_id: int, rows: int = 1, row_len: int | None = None,
             multiple: int = 64) -> LLMPack:
  """Plan the LLM's packed rows for a padded Show-o2 batch (numpy; ``k_start/k_end`` = the LLM mask, e.g.
  ``masks.omni(modality_positions, L)``). Kept: non-pads, positions whose logit has an NTP target (the
  shifted label), and every key a kept query reads."""
  tokens, labels = np.asarray(text_tokens), np.asarray(text_labels)
  k_start, k_end = np.asarray(k_start), np.asarray(k_end)
  b, l = tokens.shape
  targets = np.full((b, l), IGNORE, np.int64)
  targets[:, :-1] = labels[:, 1:]
  keep = kept_tokens(tokens, targets, k_start, k_end, pad_id)
  pl = plan(keep, k_start, k_end, rows=rows, row_len=row_len, multiple=multiple)
  return LLMPack(index=np.where(pl.valid, pl.src_row * l + pl.src_col, 0).astype(np.int32),
                 positions=np.where(pl.valid, pl.src_col, 0).astype(np.int32), k_start=pl.k_start,
                 k_end=pl.k_end, valid=pl.valid)
