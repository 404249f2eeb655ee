"""Random-access data sources: the embedded procedural data and users' own data in ArrayRecord files.

Every source is a ``len`` + ``__getitem__`` object that ``grain.MapDataset.source`` reads, returning
plain dict **records** in one schema per stream kind:

==============  ===========================================================================================
kind            record
==============  ===========================================================================================
``t2i``         ``{"image": uint8 [h, w, 3] | encoded bytes, "caption": str}`` (also captioning MMU)
``mmu``         ``{"image": ... | absent, "conversations": [{"from": "human"|"gpt", "value": str}, ...]}``
                (LLaVA JSON; ``<image>`` marks the image)
``lm``          ``{"text": str}``
``video``       ``{"video": uint8 [t, h, w, 3], "caption": str}``
``interleaved`` ``{"images": uint8 [n, h, w, 3], "texts": [str] * n, "num_images": int}``
==============  ===========================================================================================

A record may instead carry cached latents (``tools/cache_latents.py``): ``latent_mean``/``latent_logvar``
(float16 ``[(t,) h, w, c]``, or ``[n, h, w, c]`` for interleaved) replace the pixels.

**ArrayRecord files** hold one msgpack-serialised record per entry (numpy arrays as ``(dtype, shape, raw
bytes)``), written with ``group_size:1`` for random access; datasets are sharded over
``<prefix>-00000-of-0000N.array_record`` files. Writers for users' data:

* :func:`image_caption_folder`: ``a.jpg`` + ``a.txt`` pairs, or a ``metadata.jsonl`` with ``file_name`` and
  ``text`` (the HF "imagefolder" layout). Images are stored as their original encoded bytes.
* :func:`llava_json`: a LLaVA annotation JSON (``[{"image": rel_path?, "conversations": [...]}, ...]``) and
  its image root.
* :func:`video_folder`: ``clip.npy`` (uint8 ``[t, h, w, 3]``) or ``clip/`` frame directories (sorted image
  files), each with ``clip.txt``; ``.mp4`` etc. when PyAV (``av``) is installed.
* :func:`text_corpus`: ``.txt`` files (one document per non-empty line, or per file with
  ``per_file=True``) and ``.jsonl`` files with a ``text`` field.

No TensorFlow anywhere (DATA.md §4: TFDS-free ArrayRecord).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Iterable, Iterator, Sequence

import msgpack
import numpy as np

KINDS = ("t2i", "mmu", "lm", "video", "interleaved")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


# ------------------------------------------------------------------------------------- serialisation
def _pack_default(obj):
  if isinstance(obj, np.ndarray):
    return {"__nd__": [obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()]}
  if isinstance(obj, np.generic):
    return obj.item()
  raise TypeError(f"cannot serialise {type(obj).__name__} into a record")


def _unpack_hook(obj):
  if "__nd__" in obj:
    dtype, shape, raw = obj["__nd__"]
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
  return obj


def encode_record(record: dict) -> bytes:
  return msgpack.packb(record, default=_pack_default, use_bin_type=True)


def decode_record(raw: bytes) -> dict:
  return msgpack.unpackb(raw, object_hook=_unpack_hook, raw=False)


# ------------------------------------------------------------------------------------- ArrayRecord I/O
def shard_paths(prefix: str, num_shards: int) -> list[str]:
  return [f"{prefix}-{i:05d}-of-{num_shards:05d}.array_record" for i in range(num_shards)]


def write_arrayrecord(records: Iterable[dict], prefix: str, num_shards: int = 1) -> list[str]:
  """Write ``records`` round-robin into ``num_shards`` files; returns the paths."""
  from array_record.python.array_record_module import ArrayRecordWriter
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  paths = shard_paths(prefix, num_shards)
  writers = [ArrayRecordWriter(p, "group_size:1") for p in paths]
  n = 0
  try:
    for i, rec in enumerate(records):
      writers[i % num_shards].write(encode_record(rec))
      n += 1
  finally:
    for w in writers:
      w.close()
  if n == 0:
    raise ValueError(f"no records written to {prefix}")
  return paths


def resolve_paths(path: str | Sequence[str]) -> list[str]:
  """A prefix, a glob, a directory of ``*.array_record`` files, or a list of files."""
  if not isinstance(path, str):
    return [str(p) for p in path]
  if os.path.isdir(path):
    out = sorted(glob.glob(os.path.join(path, "*.array_record")))
  elif os.path.exists(path):
    out = [path]
  else:
    out = sorted(glob.glob(path)) or sorted(glob.glob(path + "-*-of-*.array_record"))
  if not out:
    raise FileNotFoundError(f"no ArrayRecord files at {path!r}")
  return out


class ArrayRecordSource:
  """Random-access records from ArrayRecord files (grain's reader underneath)."""

  def __init__(self, path: str | Sequence[str]):
    import grain
    self.paths = resolve_paths(path)
    self._src = grain.sources.ArrayRecordDataSource(self.paths)

  def __len__(self) -> int:
    return len(self._src)

  def __getitem__(self, index) -> dict:
    return decode_record(self._src[int(index)])

  def __repr__(self) -> str:
    return f"ArrayRecordSource({len(self.paths)} files, {len(self)} records)"


# ------------------------------------------------------------------------------------- procedural adapters
class ProceduralSource:
  """The embedded default: ``showo_jax.data.procedural`` samples mapped to the record schema above."""

  def __init__(self, kind: str, seed: int = 0, length: int = 100_000, size: int = 64, num_frames: int = 8,
               max_images: int = 4, task: str = ""):
    from showo_jax.data import procedural
    scene = procedural.SceneConfig(size=size, num_frames=num_frames)
    self.kind, self.task = kind, task
    if kind == "t2i":
      self._src = procedural.T2ISource(seed, length, scene)
    elif kind == "mmu":
      self._src = procedural.VQASource(seed, length, scene) if task != "caption" else procedural.T2ISource(seed, length, scene)
    elif kind == "lm":
      self._src = procedural.TextSource(seed, length, scene)
    elif kind == "video":
      self._src = procedural.VideoSource(seed, length, scene)
    elif kind == "interleaved":
      self._src = procedural.InterleavedSource(seed, length, scene, max_images)
    else:
      raise ValueError(f"unknown stream kind {kind!r}; known: {KINDS}")

  def __len__(self) -> int:
    return len(self._src)

  def __getitem__(self, index) -> dict:
    s = self._src[int(index)]
    if self.kind == "t2i" or (self.kind == "mmu" and self.task == "caption"):
      return {"image": s["image"], "caption": s["caption"]}
    if self.kind == "mmu":
      return {"image": s["image"], "conversations": [{"from": "human", "value": "<image>\n" + s["question"]},
                                                     {"from": "gpt", "value": s["answer"]}]}
    if self.kind == "lm":
      return {"text": s["text"]}
    if self.kind == "video":
      return {"video": s["video"], "caption": s["caption"]}
    return {"images": s["images"], "texts": list(s["texts"]), "num_images": int(s["num_images"])}

  def __repr__(self) -> str:
    return f"ProceduralSource({self.kind}, {self._src!r})"


def make_source(kind: str, stream_cfg, *, seed: int, size: int, num_records: int = 100_000):
  """The configured source of one stream (``source = "procedural" | "arrayrecord"``)."""
  src = stream_cfg.get("source", "procedural")
  if src == "procedural":
    return ProceduralSource(kind, seed=seed, length=num_records, size=size,
                            num_frames=int(stream_cfg.get("num_frames", 8) or 8),
                            max_images=int(stream_cfg.get("max_num_images", 4) or 4),
                            task=stream_cfg.get("format", ""))
  if src == "arrayrecord":
    if not stream_cfg.get("path", ""):
      raise ValueError(f"stream {kind!r}: source 'arrayrecord' needs data.{kind}.path")
    return ArrayRecordSource(stream_cfg.path)
  raise ValueError(f"stream {kind!r}: unknown source {src!r} (procedural | arrayrecord)")


# ------------------------------------------------------------------------------------- users' data → records
def _read_bytes(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def image_caption_folder(root: str) -> Iterator[dict]:
  """``{"image": bytes, "caption": str}`` from ``metadata.jsonl`` or ``name.<img>`` + ``name.txt`` pairs."""
  meta = os.path.join(root, "metadata.jsonl")
  if os.path.exists(meta):
    with open(meta) as f:
      for line in f:
        if line.strip():
          row = json.loads(line)
          yield {"image": _read_bytes(os.path.join(root, row["file_name"])),
                 "caption": row.get("text", row.get("caption", ""))}
    return
  found = 0
  for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
    base, ext = os.path.splitext(path)
    if ext.lower() in IMAGE_EXTS and os.path.exists(base + ".txt"):
      with open(base + ".txt") as f:
        caption = f.read().strip()
      found += 1
      yield {"image": _read_bytes(path), "caption": caption}
  if not found:
    raise FileNotFoundError(f"no image+caption pairs (x.jpg + x.txt) or metadata.jsonl under {root}")


def llava_json(annotation_path: str, image_root: str) -> Iterator[dict]:
  """LLaVA-style annotations; samples without ``image`` get no image (the pipeline feeds a black one)."""
  with open(annotation_path) as f:
    rows = json.load(f)
  for row in rows:
    rec = {"conversations": [{"from": c["from"], "value": c["value"]} for c in row["conversations"]]}
    if row.get("image"):
      rec["image"] = _read_bytes(os.path.join(image_root, row["image"]))
    yield rec


def _read_video(path: str) -> np.ndarray:
  if path.endswith(".npy"):
    return np.load(path)
  if os.path.isdir(path):
    from PIL import Image
    files = sorted(p for p in os.listdir(path) if os.path.splitext(p)[1].lower() in IMAGE_EXTS)
    return np.stack([np.asarray(Image.open(os.path.join(path, p)).convert("RGB")) for p in files])
  try:
    import av
  except ImportError as e:
    raise ImportError(f"decoding {path} needs PyAV (pip install av); or store clips as .npy / frame folders") from e
  with av.open(path) as container:
    return np.stack([fr.to_ndarray(format="rgb24") for fr in container.decode(video=0)])


def video_folder(root: str) -> Iterator[dict]:
  """``{"video": uint8 [t, h, w, 3], "caption"}`` from ``clip.{npy,mp4,...}`` or ``clip/`` + ``clip.txt``."""
  found = 0
  for txt in sorted(glob.glob(os.path.join(root, "**", "*.txt"), recursive=True)):
    base = txt[:-4]
    cands = [base + ".npy", base] + [base + e for e in VIDEO_EXTS]
    clip = next((c for c in cands if os.path.exists(c) and (c != base or os.path.isdir(c))), None)
    if clip is None:
      continue
    with open(txt) as f:
      caption = f.read().strip()
    found += 1
    yield {"video": _read_video(clip).astype(np.uint8), "caption": caption}
  if not found:
    raise FileNotFoundError(f"no clips (x.npy / x.mp4 / x/ frames with x.txt) under {root}")


def text_corpus(paths: str | Sequence[str], per_file: bool = False) -> Iterator[dict]:
  """``{"text": str}`` documents from ``.txt`` / ``.jsonl`` files (globs and directories allowed)."""
  files: list[str] = []
  for p in ([paths] if isinstance(paths, str) else list(paths)):
    if os.path.isdir(p):
      files += sorted(glob.glob(os.path.join(p, "**", "*.txt"), recursive=True))
      files += sorted(glob.glob(os.path.join(p, "**", "*.jsonl"), recursive=True))
    else:
      files += sorted(glob.glob(p))
  if not files:
    raise FileNotFoundError(f"no text files at {paths}")
  for path in files:
    with open(path, encoding="utf-8") as f:
      if path.endswith(".jsonl"):
        for line in f:
          if line.strip():
            yield {"text": json.loads(line)["text"]}
      elif per_file:
        yield {"text": f.read()}
      else:
        for line in f:
          if line.strip():
            yield {"text": line.rstrip("\n")}


WRITERS = {"t2i": image_caption_folder, "mmu": llava_json, "video": video_folder, "lm": text_corpus}


def main(argv=None) -> int:
  """``python -m showo_jax.data.sources KIND INPUT... --out PREFIX [--shards N]`` (users' data → ArrayRecord)."""
  import argparse
  ap = argparse.ArgumentParser(description="write users' data as ArrayRecord for the training pipeline")
  ap.add_argument("kind", choices=sorted(WRITERS))
  ap.add_argument("inputs", nargs="+", help="t2i: folder; mmu: annotation.json image_root; video: folder; "
                                            "lm: text files/folders")
  ap.add_argument("--out", required=True, help="output prefix (…-00000-of-0000N.array_record)")
  ap.add_argument("--shards", type=int, default=1)
  args = ap.parse_args(argv)
  if args.kind == "mmu":
    if len(args.inputs) != 2:
      ap.error("mmu needs ANNOTATION_JSON IMAGE_ROOT")
    records = llava_json(*args.inputs)
  elif args.kind == "lm":
    records = text_corpus(args.inputs)
  else:
    records = WRITERS[args.kind](args.inputs[0])
  paths = write_arrayrecord(records, args.out, args.shards)
  print("\n".join(paths))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
