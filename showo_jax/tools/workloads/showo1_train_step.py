"""``showo1_train_step``: one Show-o v1 training step on the official benchmark's small model (Phi 4 × 256,
vocab 2035, 256 image tokens, max_seq_length 128 → rows of 387), batch 4 = 2 t2i (text 40 / 100) + 1 lm
(text 120) + 1 mmu (text 90) (``bench/official_cpu.json``).

One jitted, donated step: MTP corruption of the t2i image tokens (cosine schedule, ``min_masking_rate`` 0),
the three attention masks (predict-next with/without pad removal, MMU), forward, ``1.0·t2i + 0.1·lm + 1.0·mmu``
loss (:func:`showo_jax.maskgit.showo_loss`), backward and optax AdamW (lr 1e-4, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01 except biases — the reference's two groups; no clipping). The shared train loop will take
over v1 later; this self-contained step only fixes the workload.

Main timing: the batch **packed** on the host (``showo_jax/packing.py``: pads that nothing reads are dropped,
1548 → 1152 positions; the host packing, masks included, is inside the timed call) and the same step on the
packed rows (:func:`showo_jax.packing.packed_loss`); same losses and gradients (tested). Sub-workload
``unpacked`` runs the padded ``[4, 387]`` batch like the reference.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from showo_jax import maskgit, packing
from showo_jax.data import pipeline_v1, prompting_v1
from showo_jax.models.showo import Showo, ShowoConfig
from showo_jax.tools.bench import Workload
from showo_jax.tools.workloads.showo1_maskgit_sample import bench_config

MAX_SEQ_LENGTH = 128
TEXT_LENS = {"t2i": (40, 100), "lm": (120,), "mmu": (90,)}


def make_batch(cfg: ShowoConfig, rng: np.random.Generator):
  """Host-side rows ``[t2i, t2i, lm, mmu]`` (t2i image slots hold the clean codes; corrupted in the step)."""
  up = prompting_v1.UniversalPrompting(cfg.token_ids, MAX_SEQ_LENGTH)
  n, off = cfg.num_vq_tokens, cfg.image_token_offset
  text = lambda k: list(rng.integers(3, cfg.llm_vocab_size, k))
  img = lambda b: rng.integers(0, cfg.codebook_size, (b, n)) + off
  t2i_img = img(2)
  t2i_ids, t2i_labels = up.t2i_prompt([text(k) for k in TEXT_LENS["t2i"]], t2i_img, t2i_img, drop=[False, False])
  lm_ids, lm_labels = up.lm_prompt([text(k) for k in TEXT_LENS["lm"]], t2i_ids.shape[1])
  mmu_ids, mmu_labels = up.mmu_prompt(img(1), [text(k) for k in TEXT_LENS["mmu"]])
  ids = np.concatenate([t2i_ids, lm_ids, mmu_ids]).astype(np.int32)
  labels = np.concatenate([t2i_labels, lm_labels, mmu_labels]).astype(np.int32)
  return ids, labels


def _update(params, opt_state, tx, loss_fn):
  """Loss, gradients and the optax update: ``(params, opt_state, metrics)``."""
  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, metrics


def make_train_step(cfg: ShowoConfig, graphdef, tx):
  tok = cfg.token_ids
  n = cfg.num_vq_tokens
  lo = MAX_SEQ_LENGTH + 2            # first image position of a t2i row

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_step(params, opt_state, key, ids, labels):
    # MTP corruption of the two t2i rows (their labels: original ids where masked, -100 elsewhere).
    clean = ids[:2, lo:lo + n]
    corrupt, img_labels, _ = maskgit.mask_or_random_replace_tokens(key, clean, cfg.mask_token_id)
    ids = ids.at[:2, lo:lo + n].set(corrupt)
    labels = labels.at[:2, lo:lo + n].set(img_labels)
    t2i = prompting_v1.predict_next_mask(ids[:2], tok.pad, tok.soi, tok.eoi, rm_pad_in_image=True)
    lm = prompting_v1.predict_next_mask(ids[2:3], tok.pad, tok.soi, tok.eoi, rm_pad_in_image=False)
    mmu = prompting_v1.mmu_mask(ids[3:], tok.eoi)
    mask = jax.tree.map(lambda *a: jnp.concatenate(a), t2i, lm, mmu)
    batch = maskgit.ShowoBatch(labels=labels, mask=mask, input_ids=ids, batch_size_t2i=2, batch_size_lm=1,
                               batch_size_mmu=1, max_seq_length=MAX_SEQ_LENGTH)

    return _update(params, opt_state, tx, lambda p: maskgit.showo_loss(nnx.merge(graphdef, p), batch))

  return train_step


def make_packed_train_step(cfg: ShowoConfig, graphdef, tx):
  """The same step on a :class:`~showo_jax.packing.PackedBatch` (t2i image tokens corrupted in place)."""

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_step(params, opt_state, key, batch: packing.PackedBatch):
    flat = lambda x: x.reshape(-1)
    idx = batch.t2i_image_index
    clean = flat(batch.input_ids)[idx]
    corrupt, img_labels, _ = maskgit.mask_or_random_replace_tokens(key, clean, cfg.mask_token_id)
    batch = packing.PackedBatch(**{**vars(batch),
                                   "input_ids": flat(batch.input_ids).at[idx].set(corrupt).reshape(batch.input_ids.shape),
                                   "targets": flat(batch.targets).at[idx].set(img_labels).reshape(batch.targets.shape)})

    return _update(params, opt_state, tx, lambda p: packing.packed_loss(nnx.merge(graphdef, p), batch))

  return train_step


def pack_batch(cfg: ShowoConfig, ids: np.ndarray, labels: np.ndarray) -> packing.PackedBatch:
  """Host side of the packed step: the rows' masks (as the data pipeline computes them) and the packing."""
  tok = cfg.token_ids
  ks, ke = pipeline_v1.row_masks(jnp.asarray(ids), counts=(2, 1, 1), pad=tok.pad, soi=tok.soi, eoi=tok.eoi)
  return packing.pack(ids, labels, np.asarray(ks), np.asarray(ke), counts=(2, 1, 1), max_seq_length=MAX_SEQ_LENGTH,
                      pad_id=tok.pad, num_vq_tokens=cfg.num_vq_tokens)


def build(name: str = "showo1_train_step") -> Workload:
  cfg = bench_config()
  model = Showo(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tx = optax.adamw(1e-4, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, mask=maskgit.adamw_decay_mask(params))
  state = {"params": params, "opt": tx.init(params), "step": 0}
  host_ids, host_labels = make_batch(cfg, np.random.default_rng(0))
  ids, labels = jnp.asarray(host_ids), jnp.asarray(host_labels)
  step_fn = make_train_step(cfg, graphdef, tx)
  packed_fn = make_packed_train_step(cfg, graphdef, tx)

  def advance(fn, *args):
    key = jax.random.fold_in(jax.random.key(0), state["step"])
    state["params"], state["opt"], metrics = fn(state["params"], state["opt"], key, *args)
    state["step"] += 1
    jax.block_until_ready(metrics["loss"])
    return metrics

  def run():
    return advance(packed_fn, pack_batch(cfg, host_ids, host_labels))

  def run_unpacked():
    return advance(step_fn, ids, labels)

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  shapes = {"batch": 4, "rows": ["t2i", "t2i", "lm", "mmu"], "text_lens": TEXT_LENS,
            "input_ids_shape": list(ids.shape), "params": n_params, "loss": "1.0*t2i + 0.1*lm + 1.0*mmu",
            "optimizer": "adamw 1e-4 wd 0.01 (no bias)",
            "packed_shape": list(pack_batch(cfg, host_ids, host_labels).input_ids.shape)}
  return Workload(run=run, shapes=shapes,
                  sub={"unpacked": Workload(run=run_unpacked, shapes={**shapes, "packed_shape": None})})
