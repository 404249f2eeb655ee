"""Encode a stream's images/videos once with the Wan VAE and write ArrayRecord files of latents.

``python -m showo_jax.tools.cache_latents --config configs/showo2/stage1.py --stream t2i --out /data/t2i_lat``
(``--config.data.t2i.path=...`` selects the input ArrayRecords, ``--config.data.latents.vae_path=...`` the
converted VAE). Records keep their text fields and replace pixels with the posterior ``latent_mean`` (the
normalised mean, ``WanVAE.encode``) and ``latent_logvar``, stored as float16; training then sets
``data.latents.source=cached`` and ``data.<stream>.path`` to the output and draws
``mean + exp(½·logvar)·ε`` per sample (the reference's stochastic ``vae.sample``) on the host, so the
step never runs the VAE. Pixels go through exactly the training transforms (resize/crop or LLaVA pad,
frame sampling); ``min_res`` filtering applies as in training. ``--shard_index/--num_shards`` split the
records between parallel jobs (each writes its own files).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from showo_jax.data import pipeline, sources

_TEXT_KEYS = ("caption", "conversations", "text", "texts", "num_images")


def encode_records(config, stream: str, *, shard_index: int = 0, num_shards: int = 1, limit: int | None = None,
                   batch_size: int = 8) -> Iterator[dict]:
  """Cached-latent records of ``stream`` (in source order) for this shard."""
  import jax.numpy as jnp
  d = config.data
  scfg = d[stream]
  if d.latents.source == "patch":
    raise ValueError("cache_latents encodes with the Wan VAE: set data.latents.source to 'vae' or 'cached'")
  geom = pipeline.geometry_of(d)
  src = pipeline.stream_source(d, stream)   # the records (and order) training would read
  tr = pipeline.StreamTransform(stream, scfg, d, geom, None, 1, d.seed)   # pixels only: no tokenizer
  enc = pipeline.vae_encode_fn(d.latents.vae_path, d.latents.vae_preset, d.latents.vae_dtype)

  video = stream == "video"
  n = len(src) if limit is None else min(limit, len(src))
  idx = list(range(shard_index, n, num_shards))
  for start in range(0, len(idx), batch_size):
    recs = [src[i] for i in idx[start:start + batch_size]]
    slots = [tr.pixel_slots(r) for r in recs]
    flat = [x if video else x[None] for s in slots for x in s]
    if flat:
      x = np.stack(flat)
      pad = (-len(flat)) % batch_size               # fixed shapes: one compile
      x = np.concatenate([x, np.repeat(x[-1:], pad, 0)]) if pad else x
      mu, logvar = enc(jnp.asarray(x))
      mu, logvar = np.asarray(mu, np.float32)[:len(flat)], np.asarray(logvar, np.float32)[:len(flat)]
      if not video:
        mu, logvar = mu[:, 0], logvar[:, 0]
    k = 0
    for rec, s in zip(recs, slots):
      out = {key: rec[key] for key in _TEXT_KEYS if key in rec}
      if s:
        m, lv = mu[k:k + len(s)], logvar[k:k + len(s)]
        k += len(s)
        if stream != "interleaved":
          m, lv = m[0], lv[0]
        out["latent_mean"], out["latent_logvar"] = m.astype(np.float16), lv.astype(np.float16)
      yield out


def main(argv) -> None:
  from absl import flags
  del argv
  F = flags.FLAGS
  import jax
  config = _CONFIG.value
  paths = sources.write_arrayrecord(
      encode_records(config, F.stream, shard_index=F.shard_index, num_shards=F.num_shards, limit=F.limit,
                     batch_size=F.batch_size),
      f"{F.out}-part{F.shard_index:03d}" if F.num_shards > 1 else F.out, F.files)
  if jax.process_index() == 0:
    print("\n".join(paths))


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  _CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:args]", lock_config=True)
  flags.DEFINE_enum("stream", "t2i", list(pipeline.STREAMS), "which data stream to encode")
  flags.DEFINE_string("out", None, "output prefix (…-00000-of-0000N.array_record)")
  flags.DEFINE_integer("files", 1, "output files")
  flags.DEFINE_integer("shard_index", 0, "this job's shard of the records")
  flags.DEFINE_integer("num_shards", 1, "parallel jobs")
  flags.DEFINE_integer("limit", None, "encode only the first N records")
  flags.DEFINE_integer("batch_size", 8, "images per VAE call")
  flags.mark_flags_as_required(["config", "out"])
  app.run(main)
