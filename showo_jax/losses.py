"""Show-o2 training losses (spec ``showo2.md`` §9.2); pure functions returning ``(loss, metrics)``.

Reference: ``showlab/Show-o@45a5a2d:show-o2/models/misc.py`` (``next_token_prediction``,
``velocity_prediction``) and the label construction in ``modeling_showo2_qwen2_5.py::forward``.

* ``ntp_loss``: ``cross_entropy(logits[:, :-1], labels[:, 1:], ignore_index=-100)``, mean over every
  non-ignored token of the batch; softmax statistics in float32.
* ``flow_loss``: mean of ``(v − target)²`` over the selected (token, channel) entries of the whole batch (not
  per sample). Targets are the velocity ``u_t`` patchified with :func:`patchify_targets` — the exact inverse of
  the model's raster-strip unpatchify (token ``k`` = raster pixels ``[k·p², (k+1)·p²)``, channels last) — and
  placed at ``[o+1, o+l)`` of each slot (:func:`place_targets`). The mask is the per-token image mask
  (``text_tokens == img_pad``) with every slot's time position ``o`` zeroed (:func:`flow_token_mask`);
  understanding rows are zeroed by the caller (``und_max_t0 == 1``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

IGNORE = -100


def ntp_loss(logits: Float[Array, "b l v"], labels: Int[Array, "b l"], ignore: int = IGNORE):
  """Shifted next-token cross-entropy; ``metrics = {ntp_loss, ntp_tokens, ntp_accuracy}``."""
  lg = logits[:, :-1].astype(jnp.float32)
  lb = labels[:, 1:]
  valid = lb != ignore
  safe = jnp.where(valid, lb, 0)
  logz = jax.nn.logsumexp(lg, axis=-1)
  picked = jnp.take_along_axis(lg, safe[..., None], axis=-1)[..., 0]
  nll = jnp.where(valid, logz - picked, 0.0)
  count = jnp.sum(valid)
  loss = jnp.sum(nll) / jnp.maximum(count, 1)
  # "The label's logit is the row maximum" instead of ``argmax == label``: the same count except on exact
  # ties, and a plain max-reduce instead of XLA:CPU's slow variadic (value, index) reduce.
  hit = picked >= jnp.max(lg, axis=-1)
  acc = jnp.sum(jnp.where(valid, hit, False)) / jnp.maximum(count, 1)
  return loss, {"ntp_loss": loss, "ntp_tokens": count, "ntp_accuracy": acc}


def flow_loss(v_tokens: Float[Array, "b l o"], target_tokens: Float[Array, "b l o"],
              mask: Bool[Array, "b l"] | Float[Array, "b l"] | Bool[Array, "b l o"]):
  """Per-element MSE over the selected entries; ``mask`` per token (broadcast over channels) or per entry."""
  m = jnp.asarray(mask).astype(bool)
  if m.ndim == 2:
    m = jnp.broadcast_to(m[..., None], v_tokens.shape)
  err = jnp.square(v_tokens.astype(jnp.float32) - target_tokens.astype(jnp.float32))
  count = jnp.sum(m)
  loss = jnp.sum(jnp.where(m, err, 0.0)) / jnp.maximum(count, 1)
  return loss, {"flow_loss": loss, "flow_entries": count}


def per_sample_mse(pred: Float[Array, "n *s"], target: Float[Array, "n *s"]) -> Float[Array, "n"]:
  """``mean_flat((pred − target)²)`` (``Transport.training_losses_v2``)."""
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  return jnp.mean(err.reshape(err.shape[0], -1), axis=-1)


def patchify_targets(x: Float[Array, "n *s c"], p: int) -> Float[Array, "n li o"]:
  """``[n, H, W, C]`` / ``[n, T, H, W, C]`` → ``[n, Limg, p·p·C]``: raster-flattened pixels grouped by ``p²``.

  Upstream: ``rearrange('b c h w -> b (h w) c')`` then ``reshape(b, h/p·w/p, p·p·c)`` (no spatial transpose).
  """
  n, c = x.shape[0], x.shape[-1]
  pixels = 1
  for s in x.shape[1:-1]:
    pixels *= s
  return x.reshape(n, pixels // (p * p), p * p * c)


def place_targets(targets: Float[Array, "n li o"], modality_positions: Int[Array, "b m 2"], length: int,
                  start: int = 0) -> Float[Array, "b l o"]:
  """Scatter per-slot target tokens to ``[o+1, o+l)`` of a zero ``[b, length, o]`` tensor (later slots win)."""
  mp = jnp.asarray(modality_positions, jnp.int32)
  b, m, _ = mp.shape
  limg = targets.shape[1]
  pos = start + jnp.arange(length, dtype=jnp.int32)[None, :]
  out = jnp.zeros((b, length, targets.shape[-1]), targets.dtype)
  for j in range(m):
    o, ln = mp[:, j, 0:1], mp[:, j, 1:2]
    rel = pos - o - 1
    inside = (rel >= 0) & (rel < ln - 1)
    vals = jnp.take_along_axis(targets[jnp.arange(b) * m + j], jnp.clip(rel, 0, limg - 1)[..., None], axis=1)
    out = jnp.where(inside[..., None], vals, out)
  return out


def flow_token_mask(image_masks: Float[Array, "b l"] | Bool[Array, "b l"], modality_positions: Int[Array, "b m 2"],
                    start: int = 0) -> Bool[Array, "b l"]:
  """``image_masks`` with the time position ``o`` of every slot zeroed (also for ``(0, 0)`` slots)."""
  mp = jnp.asarray(modality_positions, jnp.int32)
  b, l = image_masks.shape
  pos = start + jnp.arange(l, dtype=jnp.int32)[None, :]
  is_time = jnp.any(pos[:, :, None] == mp[:, None, :, 0], axis=-1)
  return jnp.asarray(image_masks).astype(bool) & ~is_time
