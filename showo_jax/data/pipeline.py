"""Grain input pipeline (TF-free): mixture of t2i / mmu / lm / video / interleaved streams → global batches.

Structure (mirrors ``showlab/Show-o@45a5a2d:show-o2/datasets/mixed_dataloader.py`` at the batch level):

* **Streams.** Each enabled stream (``config.data.<kind>.batch_size > 0``) reads a random-access source
  (``sources.py``: procedural by default, or ArrayRecord files) through
  ``grain.MapDataset.source(src).shuffle(seed).repeat()`` (reshuffled every epoch). Element ``j`` of step
  ``s`` is record ``s·bs + j``, transformed by :class:`StreamTransform` with its own numpy RNG seeded by
  ``(seed, stream, element)`` (sources use ``data.seed + 1000·id`` with ids t2i 0, mmu 1, lm 2, video 3,
  interleaved 4, so enabling a stream never reseeds another): decode, resize/crop, latents (patch encoder / cached posterior sample) or
  pixels (on-the-fly VAE), the Show-o2 sequence (``data/sequence.py``) padded to ``max_seq_length``.
* **Mixture** (``config.data.mixture``): ``"concat"`` (the reference's ``concat_max_size_cycle``: every step
  takes one batch of every stream and concatenates the rows, streams in the order t2i, mmu, lm, video,
  interleaved), ``"sample"`` (``max_size_cycle``: one stream per step drawn with ``weight`` probabilities;
  equal batch sizes), ``"sequential"`` (round-robin, the VIST fine-tuning mode).
* **Hosts.** The global batch layout is fixed by the config; process ``p`` of ``P`` builds rows
  ``[p·B/P, (p+1)·B/P)`` (``grain.sharding.ShardByJaxProcess`` gives ``p``/``P``), so any number of processes
  sees exactly the same global batch as one process, and each host reads only its rows.
  :meth:`Data.next_global` turns host rows into global ``jax.Array``s on the mesh (``sharding.shard_batch``).
* **Prefetch and state.** The step index is a ``grain.MapDataset.range`` mapped to host batches, then
  ``to_iter_dataset(ReadOptions(num_threads=prefetch))`` (threads) or ``mp_prefetch(num_workers)``
  (processes). The iterator's state is the step index, so ``get_state/set_state`` (and the Orbax
  checkpoint item) restore the data order deterministically.

Batch keys: ``text_tokens``, ``text_labels``, ``image_masks`` ``[b, L]``; ``modality_positions`` ``[b, M, 2]``;
``data_type`` ``[b]``; ``batch_index`` ``[b]`` (the step index, for on-the-fly VAE noise); and ``latents``
``[b·M, (T,) h, w, C]`` float32, or ``pixels`` ``[b·M, (T,) H, W, 3]`` float32 in [-1, 1] when
``latents.source = "vae"`` (encoded on the device by :meth:`Data.next_global`, never decoded in the step).
Every stream of one mixture must agree on ``L``, ``M`` and the latent shape (checked).

``data.pack_len > 0`` adds ``llm_pack`` (:class:`showo_jax.packing.LLMPack`, planned on the host): the LLM
then runs on pad-free packed rows of ``pack_len`` tokens, one per batch shard (same losses and gradients);
a batch that does not fit sends ``llm_pack = None`` and runs padded (logged once).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from showo_jax import rows as rows_lib
from showo_jax import sharding
from showo_jax.data import sequence, sources, transforms

STREAMS = ("t2i", "mmu", "lm", "video", "interleaved")
DATA_TYPES = {"t2i": 0, "mmu": 1, "lm": 2, "t2v": 3, "mmu_vid": 4, "interleaved": 5}   # = train.tasks.DATA_TYPES
_STREAM_IDS = {k: i for i, k in enumerate(STREAMS)}
VAE_FACTOR = 8           # Wan2.1 spatial compression
VAE_TIME_FACTOR = 4      # Wan2.1 temporal compression (1 + 4k frames -> 1 + k latent frames)


def make_tokenizer(spec: str):
  """``"qwen2_5"`` (offline Qwen2.5 + Show-o2 tokens) or ``"tiny:<vocab>"`` (hub-free tiny BPE)."""
  from showo_jax import text
  if spec == "qwen2_5":
    return text.load_qwen25_tokenizer()
  if spec.startswith("tiny"):
    _, _, n = spec.partition(":")
    return text.build_tiny_tokenizer(int(n or 320))
  raise ValueError(f"unknown tokenizer {spec!r}: 'qwen2_5' or 'tiny:<vocab>'")


# ------------------------------------------------------------------------------------------------ geometry
@dataclasses.dataclass(frozen=True)
class Geometry:
  """Latent layout shared by every stream of a run."""
  resolution: int
  factor: int                  # pixels per latent pixel (8 for the Wan VAE, patch factor for "patch")
  channels: int
  patch_size: int
  num_frames: int = 1          # video frames fed to the encoder (1 = images)
  time_factor: int = 1         # encoder temporal compression (4 for the Wan VAE)

  @property
  def latent_hw(self) -> int:
    return self.resolution // self.factor

  @property
  def image_tokens(self) -> int:
    return (self.latent_hw // self.patch_size) ** 2

  @property
  def latent_frames(self) -> int:
    return 1 + (self.num_frames - 1) // self.time_factor

  @property
  def video_tokens(self) -> int:
    return self.latent_frames * self.image_tokens

  def latent_shape(self, video: bool) -> tuple[int, ...]:
    hw = (self.latent_hw, self.latent_hw, self.channels)
    return ((self.latent_frames,) + hw) if video else hw

  def pixel_shape(self, video: bool) -> tuple[int, ...]:
    hw = (self.resolution, self.resolution, 3)
    return ((self.num_frames,) + hw) if video else hw


def geometry_of(data_cfg, patch_size: int = 2, channels: int = 16) -> Geometry:
  lat = data_cfg.latents
  video = data_cfg.video.batch_size > 0
  if lat.source == "patch":
    factor, tf = int(lat.patch), 1
  elif lat.source in ("vae", "cached"):
    factor, tf = VAE_FACTOR, VAE_TIME_FACTOR
  else:
    raise ValueError(f"data.latents.source {lat.source!r}: patch | vae | cached")
  if data_cfg.resolution % (factor * patch_size):
    raise ValueError(f"resolution {data_cfg.resolution} is not a multiple of {factor * patch_size}")
  return Geometry(data_cfg.resolution, factor, channels, patch_size,
                  int(data_cfg.video.num_frames) if video else 1, tf)


# ------------------------------------------------------------------------------------------------ one stream
class _MinResSource:
  """Drops records whose image is smaller than ``min_res`` by deterministic substitution (next index)."""

  def __init__(self, src, min_res: int, max_tries: int = 64):
    self.src, self.min_res, self.max_tries = src, int(min_res), max_tries

  def __len__(self):
    return len(self.src)

  def _ok(self, rec) -> bool:
    img = rec.get("image")
    if img is None or "latent_mean" in rec:
      return True
    if isinstance(img, (bytes, bytearray)):
      import io
      from PIL import Image
      with Image.open(io.BytesIO(bytes(img))) as im:
        w, h = im.size
    else:
      h, w = np.shape(img)[:2]
    return min(h, w) >= self.min_res

  def __getitem__(self, i):
    n = len(self.src)
    for k in range(self.max_tries):
      rec = self.src[(int(i) + k) % n]
      if self._ok(rec):
        return rec
    raise ValueError(f"no image of at least {self.min_res}px within {self.max_tries} records of index {i}")


class StreamTransform:
  """Record → one formatted row (numpy dict) for stream ``kind``; picklable for worker processes."""

  def __init__(self, kind: str, stream_cfg, data_cfg, geom: Geometry, tokenizer, num_slots: int, seed: int,
               video_slots: bool = False):
    self.kind, self.geom, self.tok, self.num_slots, self.seed = kind, geom, tokenizer, num_slots, seed
    self.video_like = video_slots    # the run's visual slots are videos (shape of empty slots)
    self.max_seq_len = int(data_cfg.max_seq_length)
    self.latent_source = data_cfg.latents.source
    self.stochastic = bool(data_cfg.latents.get("stochastic", True))
    self.patch = (transforms.PatchLatents(int(data_cfg.latents.patch), geom.channels, int(data_cfg.latents.patch_seed))
                  if self.latent_source == "patch" else None)
    self.cfg = {k: stream_cfg[k] for k in stream_cfg.keys()}
    self.video = kind == "video"

  # -------------------------------------------------------------- visual inputs
  def _pixels(self, img, pad: bool) -> np.ndarray:
    img = transforms.decode_image(img)
    img = transforms.resize_and_pad(img, self.geom.resolution) if pad else \
        transforms.resize_center_crop(img, self.geom.resolution)
    return transforms.to_unit_range(img)

  def pixels(self, rec: dict, pad: bool = False) -> np.ndarray:
    """One slot's encoder input in [-1, 1]: ``[H, W, 3]``, or ``[T, H, W, 3]`` for video streams."""
    if self.video:
      return transforms.to_unit_range(transforms.video_frames(rec["video"], self.geom.num_frames, self.geom.resolution))
    if rec.get("image") is None:
      return np.full(self.geom.pixel_shape(False), -1.0, np.float32)     # black image (LLaVA text-only rows)
    return self._pixels(rec["image"], pad)

  def _visual(self, rec: dict, rng, pad: bool = False) -> np.ndarray:
    """One slot's latents (or pixels for on-the-fly VAE encoding)."""
    if "latent_mean" in rec:
      if self.latent_source != "cached":
        raise ValueError("record holds cached latents but data.latents.source is not 'cached'")
      return transforms.posterior_sample(rec["latent_mean"], rec["latent_logvar"], rng if self.stochastic else None)
    if self.latent_source == "cached":
      raise ValueError("data.latents.source='cached' but the record has no latent_mean (run tools/cache_latents)")
    x = self.pixels(rec, pad)
    return self.patch.encode(x) if self.patch is not None else x.astype(np.float32)

  def pixel_slots(self, rec: dict) -> list[np.ndarray]:
    """Every visual input of a record, for caching (interleaved: all its images; LLaVA: padded resize)."""
    if self.kind == "interleaved":
      n = int(rec.get("num_images", len(rec["images"])))
      return [self.pixels({"image": rec["images"][k]}) for k in range(n)]
    if self.kind == "lm":
      return []
    pad = self.kind == "mmu" and self.cfg.get("format", "caption") == "llava"
    return [self.pixels(rec, pad)]

  def _empty_visual(self, video: bool) -> np.ndarray:
    shape = self.geom.latent_shape(video) if self.latent_source != "vae" else self.geom.pixel_shape(video)
    # A zero latent, or a black image for the on-the-fly VAE (the reference feeds zero/black tensors).
    return np.zeros(shape, np.float32) if self.latent_source != "vae" else np.full(shape, -1.0, np.float32)

  # -------------------------------------------------------------- rows
  def __call__(self, rec: dict, rng: np.random.Generator) -> dict:
    g, L = self.geom, self.max_seq_len
    n = g.image_tokens
    if self.kind == "t2i":
      seq = sequence.build_t2i(self.tok, rec["caption"], n, L, rng=rng,
                               cond_dropout_prob=float(self.cfg.get("cond_dropout_prob", 0.0)))
      vis = [self._visual(rec, rng)]
    elif self.kind == "mmu":
      fmt = self.cfg.get("format", "caption")
      if fmt == "caption":
        seq = sequence.build_und_caption(self.tok, rec["caption"], n, L)
        vis = [self._visual(rec, rng)]
      elif fmt == "llava":
        seq = sequence.build_llava(self.tok, rec["conversations"], n, L, stage=self.cfg["stage"],
                                   system_prompt=self.cfg.get("system_prompt", "") or sequence.DEFAULT_SYSTEM_PROMPT)
        vis = [self._visual(rec, rng, pad=True)]
      else:
        raise ValueError(f"data.mmu.format {fmt!r}: caption | llava")
    elif self.kind == "lm":
      seq = sequence.build_text_only(self.tok, rec["text"], L)
      vis = []
    elif self.kind == "video":
      seq = sequence.build_t2i(self.tok, rec["caption"], g.video_tokens, L, rng=rng,
                               cond_dropout_prob=float(self.cfg.get("cond_dropout_prob", 0.0)), video=True)
      vis = [self._visual(rec, rng)]
    elif self.kind == "interleaved":
      texts = list(rec["texts"])[:int(rec.get("num_images", len(rec["texts"])))]
      seq, start, count = sequence.build_interleaved(self.tok, texts, n, L,
                                                     max_num_images=int(self.cfg["max_num_images"]), rng=rng)
      if "latent_mean" in rec:
        vis = [transforms.posterior_sample(rec["latent_mean"][k], rec["latent_logvar"][k],
                                           rng if self.stochastic else None) for k in range(start, start + count)]
      else:
        vis = [self._visual({"image": rec["images"][k]}, rng) for k in range(start, start + count)]
    else:
      raise ValueError(self.kind)
    if len(seq) != L:
      raise ValueError(f"{self.kind}: row length {len(seq)} != max_seq_length {L}")
    m = seq.modality_positions.shape[0]
    if m > self.num_slots:
      raise ValueError(f"{self.kind}: {m} visual blocks > {self.num_slots} slots")
    pos = np.zeros((self.num_slots, 2), np.int32)
    pos[:m] = seq.modality_positions
    slots = vis + [self._empty_visual(self.video_like)] * (self.num_slots - len(vis))
    return {"text_tokens": seq.tokens.astype(np.int32), "text_labels": seq.labels.astype(np.int32),
            "image_masks": seq.image_mask.astype(bool), "modality_positions": pos,
            "data_type": np.int32(DATA_TYPES[rows_lib.STREAM_DATA_TYPE[self.kind]]), "visual": np.stack(slots).astype(np.float32)}


# ------------------------------------------------------------------------------------------------ mixture
@dataclasses.dataclass
class StreamSpec:
  kind: str
  batch_size: int            # global rows per step
  weight: float
  records: Any               # grain MapDataset (random access, shuffled, repeated)
  transform: Any             # StreamTransform | _TextRow
  seed: int
  length: int = 0            # records in the source (one epoch)


class HostBatches:
  """``step -> this host's rows`` of the global mixture batch (a picklable grain map function)."""

  def __init__(self, streams: list[StreamSpec], mode: str, seed: int, process_index: int, process_count: int):
    self.streams, self.mode, self.seed = streams, mode, seed
    self.p, self.P = process_index, process_count
    if mode not in ("concat", "sample", "sequential"):
      raise ValueError(f"data.mixture {mode!r}: concat | sample | sequential")
    if mode != "concat" and len({s.batch_size for s in streams}) != 1:
      raise ValueError(f"mixture {mode!r} needs equal batch sizes, got {[s.batch_size for s in streams]}")
    self.global_batch = sum(s.batch_size for s in streams) if mode == "concat" else streams[0].batch_size
    if self.global_batch % self.P:
      raise ValueError(f"global batch {self.global_batch} is not divisible by {self.P} processes")
    self.local_batch = self.global_batch // self.P

  def rows_of(self, step: int) -> list[tuple[StreamSpec, int]]:
    """Global row list of ``step`` as ``(stream, element index)``."""
    if self.mode == "concat":
      chosen = self.streams
    elif self.mode == "sequential":
      chosen = [self.streams[step % len(self.streams)]]
    else:
      w = np.asarray([s.weight for s in self.streams], np.float64)
      k = np.random.default_rng([self.seed, 7, step]).choice(len(self.streams), p=w / w.sum())
      chosen = [self.streams[int(k)]]
    return [(s, step * s.batch_size + j) for s in chosen for j in range(s.batch_size)]

  def __call__(self, step: int) -> dict:
    step = int(step)
    rows = self.rows_of(step)[self.p * self.local_batch:(self.p + 1) * self.local_batch]
    out = []
    for s, idx in rows:
      rng = np.random.default_rng([s.seed, _STREAM_IDS[s.kind], idx])
      out.append(s.transform(s.records[idx], rng))
    batch = {k: np.stack([r[k] for r in out]) for k in out[0] if k != "visual"}
    src = self.streams[0].transform.latent_source
    if src != "none":
      batch["pixels" if src == "vae" else "latents"] = np.concatenate([r["visual"] for r in out], axis=0)
    batch["batch_index"] = np.full((len(out),), step, np.int32)
    return batch


@dataclasses.dataclass
class DataInfo:
  global_batch: int
  local_batch: int
  seq_len: int
  num_slots: int
  geometry: Geometry | None  # None for the text-only family
  video: bool
  tokenizer: Any
  global_shapes: dict        # key -> jax.ShapeDtypeStruct of the global (post-encoding) batch
  streams: tuple[str, ...]
  stream_sizes: dict         # kind -> (records per epoch, global rows per step)
  row_types: tuple[str, ...] | None = None   # per-row data types of every global batch (concat mixture only)

  def epoch_steps(self, kind: str) -> int:
    """Steps of one epoch of ``kind`` (stage 2's ``len(mmu) // (bs_mmu · n_gpu)``)."""
    n, bs = self.stream_sizes[kind]
    return n // bs

  @property
  def tokens_per_step(self) -> int:
    return self.global_batch * self.seq_len


class Data:
  """Checkpointable host iterator + conversion to global device arrays (and on-the-fly VAE encoding)."""

  def __init__(self, iterator, info: DataInfo, vae_encode=None, pack_len: int = 0):
    self.iterator, self.info, self._vae_encode = iterator, info, vae_encode
    self.pack_len = pack_len
    if pack_len:
      from showo_jax import packing
      self.packer = packing.Packer(pack_len)

  def batch_shardings(self, mesh, rules) -> dict:
    out = {k: sharding.batch_sharding(mesh, len(v.shape), rules) for k, v in self.info.global_shapes.items()}
    if self.pack_len:   # a prefix for the LLMPack's [rows, pack_len] leaves (or for None on a padded step)
      out["llm_pack"] = sharding.batch_sharding(mesh, 2, rules)
    return out

  def next_host(self) -> dict:
    return next(self.iterator)

  def encode(self, pixels: jax.Array, batch_index: jax.Array) -> jax.Array:
    """On-the-fly Wan VAE posterior sample of a ``pixels`` batch (``latents.source = "vae"`` only)."""
    if self._vae_encode is None:
      raise ValueError("this pipeline reads latents, it has no VAE encoder (data.latents.source != 'vae')")
    return self._vae_encode(pixels, batch_index)

  def llm_pack(self, host: dict, mesh, rules):
    """``data.pack_len > 0``: the LLM's pad-free packed rows for this process's rows (one ``pack_len`` row per
    local batch shard, flat indices into the global batch), or None when they do not fit (that step runs
    padded: one more compile, logged once)."""
    from showo_jax import masks as masks_lib
    from showo_jax import packing
    tokens = np.asarray(host["text_tokens"])
    ranges = masks_lib.omni(jnp.asarray(host["modality_positions"]), tokens.shape[1])
    pack = self.packer(lambda rows, row_len: packing.pack_llm(
        tokens, host["text_labels"], np.asarray(ranges.k_start), np.asarray(ranges.k_end),
        pad_id=self.info.tokenizer.special.pad, rows=rows, row_len=row_len), mesh, rules)
    if pack is None:
      return None
    offset = jax.process_index() * tokens.shape[0] * tokens.shape[1]   # global flat index of this process's rows
    return dataclasses.replace(pack, index=np.where(pack.valid, pack.index + offset, 0).astype(np.int32))

  def next_global(self, mesh, rules) -> dict:
    host = self.next_host()
    if self.pack_len:
      host = {**host, "llm_pack": self.llm_pack(host, mesh, rules)}
    g = sharding.shard_batch(host, mesh, rules)
    if "pixels" in g:
      pixels = g.pop("pixels")
      g["latents"] = self.encode(pixels, g["batch_index"])
    return g

  def close(self) -> None:
    close = getattr(self.iterator, "close", None)
    if close is not None:
      close()


def _num_slots(data_cfg, kinds) -> int:
  m = 1
  if "interleaved" in kinds:
    m = max(m, int(data_cfg.interleaved.max_num_images))
  return m



def stream_source(d, kind: str):
  """The record source of stream ``kind`` exactly as training reads it (seed, size, ``min_res`` filter).

  The seed is ``data.seed + 1000 * stream id``, fixed per kind so that enabling a stream never reseeds the
  others; ``tools/cache_latents`` builds its source here too, so a latent cache holds the very records the
  on-the-fly pipeline would draw.
  """
  scfg = d[kind]
  src = sources.make_source(kind, scfg, seed=d.seed + 1000 * _STREAM_IDS[kind], size=int(d.procedural_size),
                            num_records=int(d.num_records))
  if scfg.get("min_res", 0) and kind in ("t2i", "mmu"):
    src = _MinResSource(src, scfg.min_res)
  return src

def build(config, model_cfg=None, *, text_only: bool | None = None, process_index: int | None = None,
          process_count: int | None = None) -> Data:
  """The configured pipeline for this process (``config.data``); see the module docstring.

  ``text_only`` (default: ``model_family == "lm"``) builds plain LM rows without visual slots."""
  import grain
  d = config.data
  if process_index is None or process_count is None:
    opts = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    process_index, process_count = opts.shard_index, opts.shard_count
  kinds = [k for k in STREAMS if k in d and d[k].batch_size > 0]
  if not kinds:
    raise ValueError("no data stream enabled: set data.<t2i|mmu|lm|video|interleaved>.batch_size > 0")
  tok = make_tokenizer(d.tokenizer)
  if text_only is None:
    text_only = config.model_family == "lm"
  if text_only and kinds != ["lm"]:
    raise ValueError(f"a text-only family trains on the lm stream only, got {kinds}")
  patch_size = getattr(model_cfg, "patch_size", 2) if model_cfg is not None else 2
  channels = getattr(model_cfg, "image_latent_dim", 16) if model_cfg is not None else 16
  geom = geometry_of(d, patch_size, channels) if not text_only else None
  video = "video" in kinds
  if video and any(k in kinds for k in ("t2i", "mmu", "interleaved")):
    raise ValueError("video rows cannot share a batch with image rows (different latent shapes); "
                     "use a video-only mixture (plus lm)")
  num_slots = _num_slots(d, kinds)
  streams = []
  for kind in kinds:
    scfg = d[kind]
    sid = _STREAM_IDS[kind]
    src = stream_source(d, kind)
    records = grain.MapDataset.source(src)
    if d.shuffle:
      records = records.shuffle(seed=d.seed + 17 * (sid + 1))
    records = records.repeat()
    if text_only:
      tr = _TextRow(tok, int(d.max_seq_length))
    else:
      tr = StreamTransform(kind, scfg, d, geom, tok, num_slots, d.seed, video_slots=video)
    streams.append(StreamSpec(kind, int(scfg.batch_size), float(scfg.get("weight", 1.0)), records, tr, d.seed,
                              len(src)))
  host = HostBatches(streams, d.mixture, d.seed, process_index, process_count)
  ds = grain.MapDataset.range(0, 2**62).map(host)
  read = grain.ReadOptions(num_threads=max(1, int(d.prefetch)), prefetch_buffer_size=max(1, int(d.prefetch)))
  it_ds = ds.to_iter_dataset(read)
  if int(d.num_workers) > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(d.num_workers)))
  iterator = iter(it_ds)
  B, L = host.global_batch, int(d.max_seq_length)
  shapes = {"text_tokens": ((B, L), jnp.int32), "text_labels": ((B, L), jnp.int32),
            "image_masks": ((B, L), jnp.bool_), "data_type": ((B,), jnp.int32), "batch_index": ((B,), jnp.int32)}
  vae_encode = None
  if not text_only:
    shapes["modality_positions"] = ((B, num_slots, 2), jnp.int32)
    shapes["latents"] = ((B * num_slots,) + geom.latent_shape(video), jnp.float32)
    if d.latents.source == "vae":
      vae_encode = make_vae_encoder(d.latents, geom, video, config.seed)
  global_shapes = {k: jax.ShapeDtypeStruct(s, t) for k, (s, t) in shapes.items()}
  # concat: every step has the same row layout, which the loss may use to skip rows (showo_jax/rows.py)
  row_types = rows_lib.concat_layout([(s.kind, s.batch_size) for s in streams]) if d.mixture == "concat" else None
  info = DataInfo(B, host.local_batch, L, num_slots, geom, video, tok, global_shapes, tuple(kinds),
                  {s.kind: (s.length, s.batch_size) for s in streams}, row_types)
  pack_len = int(d.get("pack_len", 0))
  if pack_len and text_only:
    raise ValueError("data.pack_len packs the Show-o2 LLM rows; the text-only family has no use for it")
  if pack_len and model_cfg is not None and getattr(model_cfg, "visual_attention", "omni") != "omni":
    raise ValueError("data.pack_len plans the LLM's key ranges from the omni mask; "
                     f"visual_attention={model_cfg.visual_attention!r} is not supported")
  return Data(iterator, info, vae_encode, pack_len)


class _TextRow:
  """``lm`` family rows: ``[bos] text [eos] [pad]`` with labels (``sequence.build_text_only``)."""

  def __init__(self, tok, max_seq_len: int):
    self.tok, self.max_seq_len = tok, max_seq_len
    self.latent_source = "none"

  def __call__(self, rec: dict, rng) -> dict:
    del rng
    seq = sequence.build_text_only(self.tok, rec["text"], self.max_seq_len)
    return {"text_tokens": seq.tokens.astype(np.int32), "text_labels": seq.labels.astype(np.int32),
            "image_masks": seq.image_mask.astype(bool), "data_type": np.int32(DATA_TYPES["lm"])}


# ------------------------------------------------------------------------------------------------ VAE on the fly
def load_vae(lat_cfg):
  """The Wan VAE of ``data.latents``: converted weights from ``vae_path`` (a ``python -m showo_jax.convert``
  directory or safetensors in our flat names), or a random ``vae_preset`` init when no path is given
  (tests and smoke runs only)."""
  from flax import nnx
  from showo_jax.models import wan_vae
  vcfg = wan_vae.PRESETS[lat_cfg.vae_preset](dtype=lat_cfg.vae_dtype)
  vae = wan_vae.WanVAE(vcfg, rngs=nnx.Rngs(0))
  if lat_cfg.vae_path:
    import os
    from showo_jax.convert import common
    if os.path.isdir(lat_cfg.vae_path):           # a `python -m showo_jax.convert wan_vae` directory
      from showo_jax.convert import io as convert_io
      convert_io.load_params(lat_cfg.vae_path, vae)
    else:
      from safetensors.numpy import load_file
      common.load_into(vae, load_file(lat_cfg.vae_path))
  elif lat_cfg.vae_preset != "tiny":
    raise ValueError("data.latents.vae_path is required for Wan VAE encoding (converted Wan2.1_VAE weights)")
  return vae


@functools.lru_cache(maxsize=4)
def vae_encode_fn(vae_path: str, vae_preset: str, vae_dtype: str):
  """``x [n, T, H, W, 3] -> (normalised mean, log_var)`` of the Wan VAE, jitted once per weights (shared by
  the on-the-fly encoder and ``tools/cache_latents``). Weights are an argument, not HLO constants."""
  from flax import nnx
  lat = {"vae_path": vae_path, "vae_preset": vae_preset, "vae_dtype": vae_dtype}
  graphdef, state = nnx.split(load_vae(_Attrs(lat)))
  enc = jax.jit(lambda st, x: nnx.merge(graphdef, st).encode(x))
  return functools.partial(enc, state)


class _Attrs(dict):
  __getattr__ = dict.__getitem__


def make_vae_encoder(lat_cfg, geom: Geometry, video: bool, seed: int):
  """``(pixels [n, (T,) H, W, 3], batch_index [b]) -> latents``: the Wan VAE posterior sample (the reference's
  ``vae.sample``, stochastic unless ``latents.stochastic=False``) with noise keyed by the step index, so a
  resumed run draws the same latents."""
  enc = vae_encode_fn(lat_cfg.vae_path, lat_cfg.vae_preset, lat_cfg.vae_dtype)
  base = jax.random.key(seed + 99991)
  stochastic = bool(lat_cfg.get("stochastic", True))

  @jax.jit
  def posterior(mu, log_var, batch_index):
    if not stochastic:
      return mu.astype(jnp.float32)
    std = jnp.exp(0.5 * jnp.clip(log_var.astype(jnp.float32), -30.0, 20.0))
    eps = jax.random.normal(jax.random.fold_in(base, batch_index[0]), std.shape, jnp.float32)
    return (mu.astype(jnp.float32) + std * eps).astype(jnp.float32)

  def encode(pixels, batch_index):
    mu, log_var = enc(pixels if video else pixels[:, None])
    z = posterior(mu, log_var, batch_index)
    return z if video else z[:, 0]

  del geom
  return encode
