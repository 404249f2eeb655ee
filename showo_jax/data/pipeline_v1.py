"""Show-o (v1) input pipeline: t2i / lm / mmu streams → ``maskgit.ShowoBatch`` global batches for the shared
:class:`~showo_jax.train.loop.Trainer`.

Mirrors the data path of ``showlab/Show-o@45a5a2d:training/train.py`` (spec ``showo.md`` §4, §6.1, §6.2):

1. **Streams** (``config.data.{t2i,lm,mmu}``; record sources from ``data/sources.py``: procedural by default,
   or ArrayRecord files), each through ``grain.MapDataset.source(src).shuffle(seed).repeat()``. Stream seeds
   and shuffles are the Show-o2 pipeline's (``data.seed + 1000·id``, ids t2i 0, mmu 1, lm 2), so the two
   families read the same procedural records. Element ``j`` of step ``s`` is record ``s·bs + j``; per-row
   randomness (condition dropout, the caption question) comes from ``default_rng([seed, stream id, element])``.
2. **Host rows** (:class:`HostRows`, a picklable grain map ``step -> dict``): text ids (tokenised), the
   condition-dropout flags and the pixels in [-1, 1] of this process's rows. The global row layout is fixed
   by the config, ``[t2i (bs_t2i) | lm (bs_lm) | mmu (bs_mmu)]`` (the order ``Showo.forward`` slices);
   process ``p`` of ``P`` builds rows ``[p·B/P, (p+1)·B/P)``, so any process count sees the same global batch.
3. **Image tokens** (:meth:`V1Data.next_global`): the frozen MAGVIT-v2 (``data.image_tokenizer``: converted
   ``magvitv2`` weights at ``path``, or a random-init ``toy``/``magvitv2`` network from ``seed`` for smoke
   runs) encodes the pixels of this process's t2i and mmu rows once per step under ``jax.jit`` (weights are
   an argument, not constants); codes are offset into the unified vocabulary (``+ image_token_offset``).
4. **MTP** (t2i rows): ``maskgit.mask_or_random_replace_tokens`` (mask schedule ``loss.mask_schedule``,
   ``loss.min_masking_rate``) with the key ``fold_in(fold_in(key(seed)', step), global t2i row)``: the
   corruption is a function of ``(seed, step, row)`` only, so a resumed run (and any number of processes)
   draws exactly the same masks.
5. **Formatting** with the reference :class:`~showo_jax.data.prompting_v1.UniversalPrompting`:
   ``t2i_prompt`` (left-padded text, condition dropout), ``lm_prompt`` (right-padded to the t2i length),
   ``mmu_prompt`` (captioning; ``"USER: \\n{question} ASSISTANT: {caption}"`` with ``caption_prompt``) or
   ``llava_mmu_prompt`` (``mmu.format = "llava"``: the ``phi1.5`` conversation template, loss on answers).
6. **Masks** (§6.2): t2i rows ``predict_next_mask(rm_pad_in_image=True)``, lm rows the same with
   ``rm_pad_in_image=False`` (causal), mmu rows ``mmu_mask``; as :class:`~showo_jax.masks.MaskSpec` key ranges.
7. **Global arrays**: ``sharding.shard_batch`` (batch axis over the mesh's batch axes) into
   ``{"showo": ShowoBatch(labels, MaskSpec, input_ids, batch_size_*, max_seq_length)}`` (the shared train step
   takes a dict; the ``"showo"`` task unwraps it).
8. **Packing** (``data.pack_len > 0``, off by default): this process's rows are packed pad-free
   (``showo_jax/packing.py``) into one row of ``pack_len`` tokens per local batch shard and sent as a
   ``PackedBatch`` (same losses and gradients, fewer positions). A step whose rows do not fit goes out padded
   (one more compile, logged once); the packed and padded paths share the state.

The iterator is grain's (``MapDataset.range(0, 2**62).map(HostRows).to_iter_dataset``): its state is the step
index, checkpointed with the train state by the shared ``Checkpointer``; everything after it is a pure function
of the host rows and the step, so restoring the iterator state restores the data exactly.

Procedural stand-ins: the stage-1 ImageNet class names are scene captions; RefinedWeb is the procedural
text documents; LLaVA conversations are procedural VQA pairs. The captioning questions of the reference
(``training/questions.json``) are not reproduced; :data:`CAPTION_QUESTIONS` is our own short list.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from showo_jax import maskgit, packing, sharding
from showo_jax import masks as masks_lib
from showo_jax.data import prompting_v1, sources, transforms

KINDS = ("t2i", "lm", "mmu")                    # global row order of a batch (Showo.forward)
STREAM_IDS = {"t2i": 0, "mmu": 1, "lm": 2}      # = pipeline._STREAM_IDS (same seeds / records as Show-o2)
IGNORE_ID = -100
MTP_TAG = 0x4D5450                              # decorrelates the MTP key stream from the model init key
CAPTION_QUESTIONS = (
    "Describe the image.", "What is shown in this picture?", "Give a short caption for this image.",
    "What do you see in the image?", "Write a brief description of the picture.",
)


# ------------------------------------------------------------------------------------------------ text
class TextTokenizer:
  """The text side of the unified vocabulary: ``encode(str) -> ids`` (no special tokens added), ``bos``/``eos``.

  * ``"phi_1_5"``: the Phi-1.5 ``tokenizer.json`` at ``path`` (CodeGen BPE, 50295 ids, ``<|endoftext|>`` = 50256
    = bos = eos). Nothing is downloaded: ``data.tokenizer_file`` must point at a local copy.
  * ``"tiny:<n>"``: the hub-free tiny byte-level BPE of the toy runs (``text.build_tiny_tokenizer(n)``), with
    its ``<|endoftext|>`` as bos = eos, as Phi.
  """

  def __init__(self, spec: str, path: str = ""):
    import tokenizers
    self.spec = spec
    if spec == "phi_1_5":
      if not path:
        raise ValueError("data.tokenizer='phi_1_5' needs data.tokenizer_file: a local Phi-1.5 tokenizer.json")
      self.tokenizer = tokenizers.Tokenizer.from_file(path)
      self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
    elif spec.startswith("tiny"):
      from showo_jax import text
      _, _, n = spec.partition(":")
      self.tokenizer = text.build_tiny_tokenizer(int(n or 320)).tokenizer
      self.vocab_size = int(n or 320)
    else:
      raise ValueError(f"unknown v1 text tokenizer {spec!r}: 'phi_1_5' (with data.tokenizer_file) or 'tiny:<n>'")
    eot = self.tokenizer.token_to_id("<|endoftext|>")
    if eot is None:
      raise ValueError(f"text tokenizer {spec!r} has no <|endoftext|> token (bos/eos of Show-o v1)")
    self.bos = self.eos = int(eot)

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids


def llava_row(tok: TextTokenizer, conversations: Sequence[dict], max_len: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
  """Discrete LLaVA conversation (spec §4.4, ``phi1.5`` template, system ``""``): ``"USER: {q} ASSISTANT: {a}
  <|endoftext|>USER: …"`` with the ``<image>`` placeholder removed; labels only on the answers and their
  ``<|endoftext|>``; right-padded with ``[PAD]`` (labels -100) or truncated to ``max_len`` (no bos)."""
  ids: list[int] = []
  labels: list[int] = []
  turns = list(conversations)
  for i in range(0, len(turns) - 1, 2):
    q = turns[i]["value"].replace("<image>", "").strip()
    a = turns[i + 1]["value"].strip()
    inst = tok.encode(f"USER: {q} ASSISTANT:")
    ans = tok.encode(" " + a) + [tok.eos]
    ids += inst + ans
    labels += [IGNORE_ID] * len(inst) + ans
  ids, labels = ids[:max_len], labels[:max_len]
  n = max_len - len(ids)
  return np.asarray(ids + [pad] * n, np.int64), np.asarray(labels + [IGNORE_ID] * n, np.int64)


# ------------------------------------------------------------------------------------------------ image tokenizer
def image_tokenizer_config(cfg, resolution: int):
  """``magvitv2`` (the released tokenizer) or ``toy`` (4 levels, x8, 6-bit LFQ; ``eval/v1_toy.py``)."""
  from showo_jax.eval import v1_toy
  return v1_toy.magvit_config(cfg.preset, int(resolution))


def load_image_tokenizer(cfg, resolution: int):
  """The frozen MAGVIT-v2 of ``data.image_tokenizer``: converted weights at ``path`` (a ``python -m
  showo_jax.convert magvit2`` directory or ``*.safetensors`` in our flat names), else :func:`random_init` from
  ``seed`` (smoke runs; there are no pretrained MAGVIT-v2 weights offline)."""
  import os
  from flax import nnx
  from showo_jax.models import magvit2
  from showo_jax.convert import common
  mcfg = image_tokenizer_config(cfg, resolution)
  net = nnx.eval_shape(lambda: magvit2.MAGVITv2(mcfg, rngs=nnx.Rngs(0)))   # abstract: nothing allocated yet
  path = cfg.get("path", "")
  if not path:
    return common.load_into(net, random_init(common.flat_shapes(net), int(cfg.seed)))
  if os.path.isdir(path):
    from showo_jax.convert import io as convert_io
    return convert_io.load_params(path, net)
  from safetensors.numpy import load_file
  return common.load_into(net, load_file(path))


def random_init(shapes: dict[str, tuple], seed: int) -> dict[str, np.ndarray]:
  """Host-side random weights for a frozen stand-in network: ``kernel`` ~ N(0, 1/fan_in) (LeCun normal, fan-in =
  every axis but the last), ``scale`` = 1, everything else 0; a pure function of ``(shapes, seed)``. (The
  module initialisers dispatched eagerly compile one tiny XLA program per parameter shape: ~15 s on 2 cores
  for the toy MAGVIT-v2, against milliseconds here.)"""
  rng = np.random.default_rng([int(seed), 0x4D41475649])
  out = {}
  for name in sorted(shapes):
    shape = tuple(shapes[name])
    if name.endswith("kernel"):
      out[name] = (rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[:-1]))))).astype(np.float32)
    else:
      out[name] = (np.ones if name.endswith("scale") else np.zeros)(shape, np.float32)
  return out


@functools.lru_cache(maxsize=4)
def _encoder(preset: str, path: str, seed: int, resolution: int):
  """``pixels [n, H, W, 3] -> codes [n, N]`` jitted once per tokenizer (weights passed as an argument)."""
  from flax import nnx
  cfg = _Attrs(preset=preset, path=path, seed=seed)
  net = load_image_tokenizer(cfg, resolution)
  graphdef, state = nnx.split(net)
  enc = jax.jit(lambda st, x: nnx.merge(graphdef, st).get_code(x).astype(jnp.int32))
  return functools.partial(enc, state), net.cfg


class _Attrs(dict):
  __getattr__ = dict.__getitem__

  def get(self, k, d=None):
    return dict.get(self, k, d)


# ------------------------------------------------------------------------------------------------ host rows
@dataclasses.dataclass
class Stream:
  kind: str
  batch_size: int               # global rows per step
  records: Any                  # grain MapDataset (random access, shuffled, repeated)
  cfg: dict
  length: int                   # records in one epoch


class HostRows:
  """``step -> this process's rows`` before image tokenisation (a picklable grain map function)."""

  def __init__(self, streams: dict[str, Stream], tok: TextTokenizer, *, seed: int, resolution: int,
               process_index: int, process_count: int):
    self.streams, self.tok, self.seed, self.res = streams, tok, int(seed), int(resolution)
    self.rows = [(k, j) for k in KINDS if k in streams for j in range(streams[k].batch_size)]
    b = len(self.rows)
    if b % process_count:
      raise ValueError(f"global batch {b} is not divisible by {process_count} processes")
    n = b // process_count
    self.local = self.rows[process_index * n:(process_index + 1) * n]

  def _pixels(self, image) -> np.ndarray:
    img = transforms.resize_center_crop(transforms.decode_image(image), self.res)
    return transforms.to_unit_range(img)

  def __call__(self, step: int) -> dict:
    step = int(step)
    out = {"step": np.int32(step), "t2i_rows": [], "t2i_text": [], "t2i_drop": [], "lm_text": [], "mmu_text": [],
           "mmu_conv": [], "pixels": []}
    mmu_pixels = []
    for kind, j in self.local:
      s = self.streams[kind]
      idx = step * s.batch_size + j
      rec = s.records[idx]
      rng = np.random.default_rng([self.seed, STREAM_IDS[kind], idx])
      if kind == "t2i":
        out["t2i_rows"].append(j)
        out["t2i_text"].append(self.tok.encode(rec["caption"]))
        out["t2i_drop"].append(bool(rng.random() < float(s.cfg.get("cond_dropout_prob", 0.0))))
        out["pixels"].append(self._pixels(rec["image"]))
      elif kind == "lm":
        out["lm_text"].append(self.tok.encode(rec["text"]))
      else:
        fmt = s.cfg.get("format", "caption")
        if fmt == "caption":
          text = rec["caption"]
          if s.cfg.get("caption_prompt", False):
            q = CAPTION_QUESTIONS[int(rng.integers(len(CAPTION_QUESTIONS)))]
            text = f"USER: \n{q} ASSISTANT: {text}"
          out["mmu_text"].append(self.tok.encode(text))
        elif fmt == "llava":
          out["mmu_conv"].append(rec["conversations"])
        else:
          raise ValueError(f"data.mmu.format {fmt!r}: caption | llava")
        mmu_pixels.append(self._pixels(rec["image"]))
    pixels = out["pixels"] + mmu_pixels          # t2i rows first, then mmu rows (lm rows have none)
    out["pixels"] = np.stack(pixels).astype(np.float32) if pixels else np.zeros((0, self.res, self.res, 3), np.float32)
    out["t2i_rows"] = np.asarray(out["t2i_rows"], np.int32)
    out["t2i_drop"] = np.asarray(out["t2i_drop"], bool)
    return out


# ------------------------------------------------------------------------------------------------ device side
@functools.partial(jax.jit, static_argnames=("mask_id", "schedule", "min_masking_rate"))
def mtp_corrupt(base_key: jax.Array, step: jax.Array, rows: jax.Array, image_ids: jax.Array, *, mask_id: int,
                schedule: str, min_masking_rate: float):
  """Per-row MTP (``mask_or_random_replace_tokens``) with key ``fold_in(fold_in(base, step), row)``."""
  sched = maskgit.get_mask_schedule(schedule)

  def one(row, ids):
    key = jax.random.fold_in(jax.random.fold_in(base_key, step), row)
    x, lab, _ = maskgit.mask_or_random_replace_tokens(key, ids[None], mask_id, sched, min_masking_rate)
    return x[0], lab[0]

  return jax.vmap(one)(rows, image_ids)


@functools.partial(jax.jit, static_argnames=("counts", "pad", "soi", "eoi"))
def row_masks(input_ids: jax.Array, *, counts: tuple[int, int, int], pad: int, soi: int, eoi: int):
  """``(k_start, k_end)`` of the rows ``[t2i (counts[0]) | lm | mmu]`` (spec §6.2)."""
  nt, nl, nm = counts
  parts = []
  if nt:
    parts.append(prompting_v1.predict_next_mask(input_ids[:nt], pad, soi, eoi, rm_pad_in_image=True))
  if nl:
    parts.append(prompting_v1.predict_next_mask(input_ids[nt:nt + nl], pad, soi, eoi, rm_pad_in_image=False))
  if nm:
    parts.append(prompting_v1.mmu_mask(input_ids[nt + nl:], eoi))
  return (jnp.concatenate([p.k_start for p in parts]).astype(jnp.int32),
          jnp.concatenate([p.k_end for p in parts]).astype(jnp.int32))


# ------------------------------------------------------------------------------------------------ the data object
@dataclasses.dataclass
class Info:
  global_batch: int
  local_batch: int
  seq_len: int
  batch_sizes: tuple[int, int, int]     # global t2i / lm / mmu rows
  global_shapes: dict                   # key -> ShapeDtypeStruct of the host arrays shard_batch places
  stream_sizes: dict                    # kind -> (records per epoch, global rows per step)
  tokenizer: Any

  def epoch_steps(self, kind: str) -> int:
    n, bs = self.stream_sizes[kind]
    return n // bs

  @property
  def tokens_per_step(self) -> int:
    return self.global_batch * self.seq_len


class V1Data:
  """What the shared ``Trainer`` needs: a checkpointable grain ``iterator``, ``info``, ``batch_shardings``,
  ``next_global`` (tokenise, corrupt, format, mask, place) and ``close``."""

  def __init__(self, iterator, host: HostRows, model_cfg, config, info: Info):
    d = config.data
    self.iterator, self.host, self.info = iterator, host, info
    self.ids = model_cfg.token_ids
    self.n = model_cfg.num_vq_tokens
    self.offset = model_cfg.image_token_offset
    self.max_text = int(d.max_seq_length)
    self.prompting = prompting_v1.UniversalPrompting(self.ids, self.max_text, ignore_id=IGNORE_ID,
                                                     cond_dropout_prob=float(d.t2i.get("cond_dropout_prob", 0.0))
                                                     if "t2i" in d else 0.0)
    self.mmu_format = d.mmu.get("format", "caption") if "mmu" in d else "caption"
    self.encode, _ = _encoder(d.image_tokenizer.preset, d.image_tokenizer.get("path", ""),
                              int(d.image_tokenizer.seed), int(d.resolution))
    self.mtp_key = jax.random.fold_in(jax.random.key(int(config.seed)), MTP_TAG)
    loss = config.get("loss", None) or {}
    self.schedule = str(loss.get("mask_schedule", "cosine"))
    self.min_masking_rate = float(loss.get("min_masking_rate", 0.0))
    kinds = [k for k, _ in host.local]
    self.local_counts = tuple(kinds.count(k) for k in KINDS)
    self.pack_len = int(d.get("pack_len", 0))
    self.packer = packing.Packer(self.pack_len) if self.pack_len else None
    if self.pack_len and info.batch_sizes[2] == 0:
      raise ValueError("data.pack_len > 0 needs mmu rows: with data.mmu.batch_size == 0 the reference reads "
                       "every row as MMU as well, which a packed batch cannot express")

  def batch_shardings(self, mesh, rules):
    """One sharding for the whole ``ShowoBatch`` (a pytree prefix): every leaf is ``[b, L]``, batch-sharded."""
    return sharding.batch_sharding(mesh, 2, rules)

  def _batch(self, input_ids, labels, k_start, k_end) -> maskgit.ShowoBatch:
    bt, bl, bm = self.info.batch_sizes
    return maskgit.ShowoBatch(labels=labels, mask=masks_lib.MaskSpec(k_start, k_end), input_ids=input_ids,
                              batch_size_t2i=bt, batch_size_lm=bl, batch_size_mmu=bm, max_seq_length=self.max_text)

  def next_host(self) -> dict:
    return next(self.iterator)

  def host_arrays(self, host: dict) -> dict:
    """Host rows → this process's ``input_ids``/``labels``/``k_start``/``k_end`` (numpy)."""
    nt, nl, nm = self.local_counts
    codes = np.asarray(self.encode(jnp.asarray(host["pixels"]))) + self.offset if len(host["pixels"]) else None
    ids, labels = [], []
    if nt:
      x, lab = mtp_corrupt(self.mtp_key, jnp.int32(host["step"]), jnp.asarray(host["t2i_rows"]),
                           jnp.asarray(codes[:nt]), mask_id=self.ids.mask, schedule=self.schedule,
                           min_masking_rate=self.min_masking_rate)
      i, l = self.prompting.t2i_prompt(host["t2i_text"], np.asarray(x), np.asarray(lab), drop=[bool(v) for v in host["t2i_drop"]])
      ids.append(i)
      labels.append(l)
    if nl:
      i, l = self.prompting.lm_prompt(host["lm_text"], self.info.seq_len)
      ids.append(i)
      labels.append(l)
    if nm:
      img = codes[nt:nt + nm]
      if self.mmu_format == "llava":
        rows = [llava_row(self.host.tok, c, self.max_text, self.ids.pad) for c in host["mmu_conv"]]
        i, l = self.prompting.llava_mmu_prompt(img, np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]))
      else:
        i, l = self.prompting.mmu_prompt(img, host["mmu_text"])
      ids.append(i)
      labels.append(l)
    input_ids = np.concatenate(ids).astype(np.int32)
    labels = np.concatenate(labels).astype(np.int32)
    if input_ids.shape[1] != self.info.seq_len:
      raise ValueError(f"row length {input_ids.shape[1]} != {self.info.seq_len}")
    ks, ke = row_masks(jnp.asarray(input_ids), counts=self.local_counts, pad=self.ids.pad, soi=self.ids.soi,
                       eoi=self.ids.eoi)
    return {"input_ids": input_ids, "labels": labels, "k_start": np.asarray(ks), "k_end": np.asarray(ke)}

  def next_global(self, mesh, rules) -> dict:
    """``{"showo": ShowoBatch | PackedBatch}`` of global arrays (the shared step takes a dict;
    ``tasks._showo_v1_task`` unwraps)."""
    host = self.host_arrays(self.next_host())
    packed = self.pack(host, mesh, rules) if self.pack_len else None
    if packed is not None:
      return {"showo": sharding.shard_batch(packed, mesh, rules)}
    g = sharding.shard_batch(host, mesh, rules)
    return {"showo": self._batch(g["input_ids"], g["labels"], g["k_start"], g["k_end"])}

  def pack(self, host: dict, mesh, rules) -> packing.PackedBatch | None:
    """This process's rows packed into one ``pack_len`` row per local batch shard, or None if they do not fit."""
    return self.packer(lambda rows, row_len: packing.pack(
        host["input_ids"], host["labels"], host["k_start"], host["k_end"], counts=self.local_counts,
        max_seq_length=self.max_text, pad_id=self.ids.pad, num_vq_tokens=self.n, rows=rows, row_len=row_len,
        global_mmu_rows=self.info.batch_sizes[2], image_index=False), mesh, rules)

  def close(self) -> None:
    close = getattr(self.iterator, "close", None)
    if close is not None:
      close()


def check_vocab(tok: TextTokenizer, model_cfg, image_cfg, resolution: int) -> None:
  """The text tokenizer, the image tokenizer and the model must agree on the unified vocabulary."""
  problems = []
  if tok.vocab_size > model_cfg.llm_vocab_size:
    problems.append(f"text tokenizer has {tok.vocab_size} ids > model llm_vocab_size {model_cfg.llm_vocab_size}")
  if (tok.bos, tok.eos) != (model_cfg.bos_token_id, model_cfg.eos_token_id):
    problems.append(f"text tokenizer bos/eos {(tok.bos, tok.eos)} != model "
                    f"{(model_cfg.bos_token_id, model_cfg.eos_token_id)} (config.model.bos_token_id/eos_token_id)")
  if image_cfg.codebook_size != model_cfg.codebook_size:
    problems.append(f"image tokenizer has {image_cfg.codebook_size} codes != model codebook_size "
                    f"{model_cfg.codebook_size}")
  n = (resolution // image_cfg.downsample_factor) ** 2
  if n != model_cfg.num_vq_tokens:
    problems.append(f"{resolution} px gives {n} image tokens != model num_vq_tokens {model_cfg.num_vq_tokens}")
  if problems:
    raise ValueError("Show-o v1 vocabulary mismatch: " + "; ".join(problems))


def build(config, model_cfg=None, *, process_index: int | None = None, process_count: int | None = None) -> V1Data:
  """The configured v1 pipeline of this process (see the module docstring)."""
  import grain
  d = config.data
  if model_cfg is None:
    from showo_jax.train import tasks
    model_cfg = tasks.get(config.model_family).model_config(config.model)
  if process_index is None or process_count is None:
    opts = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    process_index, process_count = opts.shard_index, opts.shard_count
  kinds = [k for k in KINDS if k in d and int(d[k].batch_size) > 0]
  if not kinds:
    raise ValueError("no data stream enabled: set data.<t2i|lm|mmu>.batch_size > 0")
  tok = TextTokenizer(d.tokenizer, d.get("tokenizer_file", ""))
  res = int(d.resolution)
  check_vocab(tok, model_cfg, image_tokenizer_config(d.image_tokenizer, res), res)
  streams = {}
  for kind in kinds:
    scfg = d[kind]
    sid = STREAM_IDS[kind]
    cfg = {k: scfg[k] for k in scfg.keys()}
    if kind == "mmu":   # sources' "task": captions (T2I records) or conversations (VQA records)
      cfg["format"] = "caption" if cfg.get("format", "caption") == "caption" else "llava"
    src = sources.make_source(kind, cfg, seed=int(d.seed) + 1000 * sid, size=int(d.procedural_size),
                              num_records=int(d.num_records))
    records = grain.MapDataset.source(src)
    if d.shuffle:
      records = records.shuffle(seed=int(d.seed) + 17 * (sid + 1))
    streams[kind] = Stream(kind, int(scfg.batch_size), records.repeat(), cfg, len(src))
  host = HostRows(streams, tok, seed=int(d.seed), resolution=res, process_index=process_index,
                  process_count=process_count)
  ds = grain.MapDataset.range(0, 2**62).map(host)
  read = grain.ReadOptions(num_threads=max(1, int(d.prefetch)), prefetch_buffer_size=max(1, int(d.prefetch)))
  it_ds = ds.to_iter_dataset(read)
  if int(d.num_workers) > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(d.num_workers)))
  B = len(host.rows)
  L = int(d.max_seq_length) + model_cfg.num_vq_tokens + 3
  shapes = {k: jax.ShapeDtypeStruct((B, L), jnp.int32) for k in ("input_ids", "labels", "k_start", "k_end")}
  sizes = tuple(streams[k].batch_size if k in streams else 0 for k in KINDS)
  info = Info(B, len(host.local), L, sizes, shapes, {k: (s.length, s.batch_size) for k, s in streams.items()}, tok)
  return V1Data(iter(it_ds), host, model_cfg, config, info)


def train(config, workdir: str, *, num_steps: int | None = None) -> dict:
  """A ``model_family = "showo"`` run through the shared ``Trainer`` (same return value as ``loop.run``)."""
  from showo_jax.train import loop
  trainer = loop.Trainer(config, workdir, data_iter=build(config))
  try:
    return trainer.train(num_steps=num_steps)
  finally:
    trainer.close()
