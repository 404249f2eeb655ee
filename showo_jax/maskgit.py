"""Show-o v1 discrete-diffusion machinery: mask schedules, MTP corruption, the three losses, MaskGIT sampling
(t2i, inpainting, extrapolation) and MMU text generation with a KV cache. Spec ``showo.md`` §4.6, §6, §7.

References (``showlab/Show-o@45a5a2d``): ``models/sampling.py`` (schedules, ``mask_by_random_topk``,
``top_k_top_p_filtering``), ``training/utils.py::mask_or_random_replace_tokens``, ``models/modeling_showo.py``
(``forward`` losses, ``t2i_generate``, ``mmu_generate``), ``inference_t2i.py`` (inpainting, extrapolation).

Quirks kept on purpose (the code wins over the paper):

* t2i loss is NOT shifted (each image position predicts its own token; ``<|soi|>``/``<|eoi|>`` are trivial
  self-targets); lm/mmu losses are shifted. ``batch_size_mmu = 0`` selects every row (``logits[-0:]``).
* MaskGIT samples at temperature 1 from ``softmax`` over the codebook slice (``[MASK]`` excluded); the
  confidence temperature compounds, ``τ_s = τ0·Π_{j≤s}(1 − (j+1)/T)``; ``mask_len = max(1, min(unknown − 1,
  floor(N·γ(r))))``; CFG is ``(1+g)·cond − g·uncond`` with the uncond rows reusing the CURRENT image block.
* The last step still re-masks one token of the running ids; the returned codes are the complete sample.

Deviations: empty loss groups give 0 instead of torch's NaN; the extrapolation ``down`` direction implements
the intended stitch (the reference concatenates a column slice along rows and fails, spec §7.2); torch's RNG
draws cannot be reproduced, so sampling takes a JAX key or replays recorded draws (``draws``).

Speed: the text prefix (positions before ``<|soi|>``) is causal and never sees the image block, so its keys
and values are identical at every MaskGIT step. ``reuse_prefix=True`` (default) computes them once into a
KV cache and each step runs only the ``N + 2`` image-block rows, and only the codebook columns of the head.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from showo_jax import masks as masks_lib
from showo_jax.data import prompting_v1
from showo_jax.models.phi import KVCache
from showo_jax.models.showo import Showo, ShowoConfig

IGNORE_ID = -100
Mask = masks_lib.MaskSpec | Bool[Array, "b l s"]


# ------------------------------------------------------------------------------------------- schedules
def cosine_schedule(t: Float[Array, "*s"]) -> Float[Array, "*s"]:
  return jnp.cos(t * math.pi * 0.5)   # not clipped (reference)


def linear_schedule(t: Float[Array, "*s"]) -> Float[Array, "*s"]:
  return jnp.clip(1 - t, 1e-6, 1.0)


def pow_schedule(t: Float[Array, "*s"], exponent: float) -> Float[Array, "*s"]:
  return jnp.clip(1.0 - t ** exponent, 1e-6, 1.0)


def sigmoid_schedule(t: Float[Array, "*s"], start: float = -3, end: float = 3, tau: float = 1.0,
                     clip_min: float = 1e-6) -> Float[Array, "*s"]:
  v_start = jax.nn.sigmoid(jnp.float32(start / tau))
  v_end = jax.nn.sigmoid(jnp.float32(end / tau))
  out = jax.nn.sigmoid((t * (end - start) + start) / tau)
  return jnp.clip((v_end - out) / (v_end - v_start), clip_min, 1.0)


def get_mask_schedule(method: str, **kwargs) -> Callable[[jax.Array], jax.Array]:
  """``get_mask_chedule``: ``cosine`` | ``linear`` | ``pow<K>`` | ``sigmoid`` (kwargs start/end/tau)."""
  if method == "cosine":
    return cosine_schedule
  if method == "linear":
    return linear_schedule
  if "pow" in method:
    return functools.partial(pow_schedule, exponent=float(method.replace("pow", "")))
  if method == "sigmoid":
    return functools.partial(sigmoid_schedule, **kwargs)
  raise ValueError(f"Unknown schedule method: {method}")


def log_clamped(t: Float[Array, "*s"], eps: float = 1e-20) -> Float[Array, "*s"]:
  return jnp.log(jnp.maximum(t, eps))


def gumbel_noise(key: jax.Array, shape: Sequence[int]) -> Float[Array, "*s"]:
  """``-log(-log(u))`` with the reference's 1e-20 clamps, ``u ~ U[0, 1)``."""
  u = jax.random.uniform(key, tuple(shape), jnp.float32)
  return -log_clamped(-log_clamped(u))


def sample_categorical(key: jax.Array, probs: Float[Array, "*b c"]) -> Int[Array, "*b"]:
  """One draw per row by inverse CDF (what ``torch.multinomial(probs, 1)`` does): one uniform per row instead
  of a Gumbel per class, ~7x cheaper than ``jax.random.categorical`` at the codebook size on CPU."""
  cdf = jnp.cumsum(probs, axis=-1)
  u = jax.random.uniform(key, probs.shape[:-1] + (1,), jnp.float32) * cdf[..., -1:]
  return jnp.minimum(jnp.sum(cdf <= u, axis=-1), probs.shape[-1] - 1).astype(jnp.int32)


def mask_by_random_topk(mask_len: Float[Array, "b 1"] | Int[Array, "b 1"], probs: Float[Array, "b n"],
                        temperature: float | Float[Array, ""], gumbel: Float[Array, "b n"]) -> Bool[Array, "b n"]:
  """Re-mask the ``mask_len`` least confident positions: ``confidence < sort(confidence)[mask_len]``."""
  confidence = log_clamped(probs) + temperature * gumbel
  cut = jnp.take_along_axis(jnp.sort(confidence, axis=-1), mask_len.astype(jnp.int32), axis=-1)
  return confidence < cut


def top_k_top_p_filtering(logits: Float[Array, "b v"], top_k: int = 0, top_p: float = 1.0,
                          filter_value: float = -float("inf"), min_tokens_to_keep: int = 1) -> Float[Array, "b v"]:
  """``models/sampling.py::top_k_top_p_filtering`` (keep the first token past the top-p threshold)."""
  if top_k > 0:
    k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    logits = jnp.where(logits < kth, filter_value, logits)
  if top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1, stable=True)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    remove = cum > top_p
    if min_tokens_to_keep > 1:
      remove = remove.at[..., :min_tokens_to_keep].set(False)
    remove = jnp.concatenate([jnp.zeros_like(remove[..., :1]), remove[..., :-1]], axis=-1)
    unsorted = jnp.zeros_like(remove).at[jnp.arange(logits.shape[0])[:, None], order].set(remove)
    logits = jnp.where(unsorted, filter_value, logits)
  return logits


# ------------------------------------------------------------------------------------ MTP corruption
def mask_or_random_replace_tokens(key: jax.Array, image_tokens: Int[Array, "b n"], mask_id: int,
                                  schedule: Callable = cosine_schedule, min_masking_rate: float = 0.0,
                                  timesteps: Float[Array, "b"] | None = None,
                                  rand: Float[Array, "b n"] | None = None):
  """MTP corruption (``noise_type='mask'``): ``(input_ids, labels, mask_prob)``.

  Per image ``τ ~ U(0,1)``, ``p = max(γ(τ), min_masking_rate)``, ``k = max(1, round(N·p))``; the masked set is
  ``argsort(rand) < k`` (a uniform subset of size ``k``). Labels are the original ids there, -100 elsewhere.
  ``timesteps``/``rand`` may be injected (parity); otherwise they are drawn from ``key``.
  """
  b, n = image_tokens.shape
  k1, k2 = jax.random.split(key)
  if timesteps is None:
    timesteps = jax.random.uniform(k1, (b,), jnp.float32)
  if rand is None:
    rand = jax.random.uniform(k2, (b, n), jnp.float32)
  mask_prob = jnp.maximum(schedule(timesteps), min_masking_rate)
  num = jnp.maximum(jnp.round(n * mask_prob), 1.0)
  mask = jnp.argsort(rand, axis=-1) < num[:, None]
  input_ids = jnp.where(mask, mask_id, image_tokens)
  labels = jnp.where(mask, image_tokens, IGNORE_ID)
  return input_ids, labels, mask_prob


# ------------------------------------------------------------------------------------------- losses
@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["labels", "mask", "input_ids", "inputs_embeds"],
                   meta_fields=["batch_size_t2i", "batch_size_lm", "batch_size_mmu", "max_seq_length"])
@dataclasses.dataclass(frozen=True)
class ShowoBatch:
  """One mixed training batch, rows ordered ``[t2i | lm | mmu]`` (``Showo.forward``'s layout)."""
  labels: Int[Array, "b l"]
  mask: Mask
  input_ids: Int[Array, "b l"] | None = None
  inputs_embeds: Float[Array, "b l d"] | None = None
  batch_size_t2i: int = 0
  batch_size_lm: int = 0
  batch_size_mmu: int = 0
  max_seq_length: int = 128


def group_ce(logz, logits, labels):
  """Sum of NLL and count of valid targets (``labels != -100``)."""
  valid = labels != IGNORE_ID
  tgt = jnp.take_along_axis(logits, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
  nll = jnp.where(valid, logz - tgt, 0.0)
  return nll.sum(), valid.sum()


def loss_groups(b: int, batch_size_t2i: int, batch_size_lm: int, batch_size_mmu: int, max_seq_length: int):
  """``name -> (rows, logit positions, label positions)`` of the three loss groups (static slices)."""
  bt, bl, bm = batch_size_t2i, batch_size_lm, batch_size_mmu
  s = max_seq_length + 1
  return {
      "t2i": (slice(0, bt), slice(s, None), slice(s, None)),
      "lm": (slice(bt, bt + bl), slice(None, -1), slice(1, None)),
      # logits[-batch_size_mmu:] with batch_size_mmu = 0 is every row in the reference.
      "mmu": (slice(b - bm if bm else 0, b), slice(None, -1), slice(1, None)),
  }


def _grouped_losses(logits_of, labels, groups) -> dict[str, jax.Array]:
  out = {}
  for name, (rows, lpos, tpos) in groups.items():
    logits = logits_of(rows, lpos).astype(jnp.float32)
    total, count = group_ce(jax.nn.logsumexp(logits, axis=-1), logits, labels[rows, tpos])
    out[f"loss_{name}"] = total / jnp.maximum(count, 1)
    out[f"tokens_{name}"] = count
  return out


def showo_losses(logits: Float[Array, "b l v"], labels: Int[Array, "b l"], *, batch_size_t2i: int,
                 batch_size_lm: int, batch_size_mmu: int, max_seq_length: int) -> dict[str, jax.Array]:
  """``loss_t2i`` (unshifted over ``[max_seq_length+1:]``), ``loss_lm``, ``loss_mmu`` (shifted), means over
  each group's valid targets (0 for an empty group)."""
  groups = loss_groups(logits.shape[0], batch_size_t2i, batch_size_lm, batch_size_mmu, max_seq_length)
  return _grouped_losses(lambda rows, pos: logits[rows, pos], labels, groups)


def showo_loss(model: Showo, batch: ShowoBatch, *, t2i_coeff: float = 1.0, lm_coeff: float = 0.1,
               mmu_coeff: float = 1.0):
  """``(loss, metrics)`` with ``loss = t2i_coeff·loss_t2i + lm_coeff·loss_lm + mmu_coeff·loss_mmu``
  (1.0 / 0.1 / 1.0 in every released config). Reusable by the shared train loop.

  The LM head runs per loss group on the positions that group reads (as :func:`showo_losses` slices them),
  not on the whole batch: a t2i row's ``max_seq_length + 1`` text positions carry no target, which is a
  third of its logits (at the real 58k vocabulary, ~90 MB of float32 per 387-token row). Same losses.
  """
  out = model(batch.input_ids, inputs_embeds=batch.inputs_embeds, mask=batch.mask, compute_logits=False)
  hidden = out.last_hidden_state
  groups = loss_groups(hidden.shape[0], batch.batch_size_t2i, batch.batch_size_lm, batch.batch_size_mmu,
                        batch.max_seq_length)

  def head(rows, pos):
    h = hidden[rows, pos]
    if not h.size:   # an empty group (e.g. no LM rows): nothing to project
      return jnp.zeros(h.shape[:-1] + (model.cfg.vocab_size,), jnp.float32)
    return model.showo.logits(h)

  return weighted_loss(_grouped_losses(head, batch.labels, groups), t2i_coeff, lm_coeff, mmu_coeff)


def weighted_loss(m: dict, t2i_coeff: float, lm_coeff: float, mmu_coeff: float):
  """``(loss, metrics)`` from the per-group losses ``m``: ``t2i·loss_t2i + lm·loss_lm + mmu·loss_mmu``."""
  loss = t2i_coeff * m["loss_t2i"] + lm_coeff * m["loss_lm"] + mmu_coeff * m["loss_mmu"]
  return loss, {**m, "loss": loss}


def adamw_decay_mask(params) -> object:
  """The reference's two AdamW groups: no weight decay for names containing ``bias`` (for Phi/Show-o only
  the biases match its list, so LayerNorm scales and embeddings ARE decayed)."""
  def one(path, _):
    return not any(getattr(p, "key", getattr(p, "name", None)) == "bias" for p in path)
  return jax.tree_util.tree_map_with_path(one, params)


# ---------------------------------------------------------------------------------- MaskGIT sampling
def _mask_rows(mask: Mask, start: int, size: int) -> Mask:
  if isinstance(mask, masks_lib.MaskSpec):
    return masks_lib.slice_queries(mask, start, size)
  return jax.lax.dynamic_slice_in_dim(mask, start, size, axis=1)


def _step_constants(timesteps: int, n: int, temperature: float, schedule: Callable):
  """Per-step ratio (float32 like ``torch.tensor(ratio)``), ``floor(N·γ(r))`` and the compounding
  temperature (Python doubles, as the reference loop; cast to float32 where it meets the noise)."""
  ratios = np.asarray([(s + 1) / timesteps for s in range(timesteps)], np.float32)
  temps, t = [], temperature
  for s in range(timesteps):
    t = t * (1.0 - 1.0 * (s + 1) / timesteps)
    temps.append(t)
  mask_lens = jnp.floor(n * schedule(jnp.asarray(ratios)))
  return mask_lens, jnp.asarray(np.asarray(temps, np.float32))


@functools.partial(jax.jit, static_argnames=("timesteps", "temperature", "schedule", "reuse_prefix", "return_trace"))
def _t2i_generate(model, input_ids, uncond_input_ids, mask, key, draws, guidance_scale, *, timesteps,
                  temperature, schedule, reuse_prefix, return_trace):
  cfg: ShowoConfig = model.cfg
  ids = cfg.token_ids
  b, l = input_ids.shape
  n, off, mask_id = cfg.num_vq_tokens, cfg.image_token_offset, cfg.mask_token_id
  lo = l - n - 1           # first image position; <|soi|> is lo - 1, <|eoi|> is l - 1
  p = lo - 1               # text prefix length = max_seq_length + 1
  use_cfg = uncond_input_ids is not None
  rows = jnp.concatenate([input_ids, uncond_input_ids]) if use_cfg else input_ids
  r = rows.shape[0]
  if mask is None:
    mask = prompting_v1.predict_next_mask(rows, ids.pad, ids.soi, ids.eoi, rm_pad_in_image=True)
  sched = get_mask_schedule(schedule[0], **dict(schedule[1]))
  mask_lens, temps = _step_constants(timesteps, n, temperature, sched)

  block0 = input_ids[:, lo:l - 1]
  known0 = jnp.where(block0 == mask_id, mask_id, block0 - off)
  if reuse_prefix:
    # Text rows never attend past themselves, so the prefix K/V are the same at every step.
    cache = KVCache.init(cfg.phi, r, l)
    cache = model(rows[:, :p], mask=_mask_rows(mask, 0, p), cache=cache, compute_logits=False).cache
    step_mask = _mask_rows(mask, p, l - p)

  def image_logits(block):
    cur = jnp.concatenate([input_ids[:, p:lo], block, input_ids[:, l - 1:]], axis=1)  # [b, N+2]
    # uncond rows: uncond text prefix + the current cond image block (reference).
    suffix = jnp.concatenate([cur, cur]) if use_cfg else cur
    if reuse_prefix:
      h = model(suffix, mask=step_mask, cache=cache, compute_logits=False).last_hidden_state[:, 1:n + 1]
      full = None
    else:
      full = rows.at[:, p:].set(suffix)
      h = model(full, mask=mask, compute_logits=False).last_hidden_state[:, lo:l - 1]
    lg = model.image_logits(h)                                       # [r, N, C] float32
    return lg, (full if full is not None else jnp.concatenate([rows[:, :p], suffix], axis=1))

  def step(carry, xs):
    block, known, _ = carry
    s, mask_len_s, temp_s, draw = xs
    lg_rows, model_in = image_logits(block)
    lg = (1 + guidance_scale) * lg_rows[:b] - guidance_scale * lg_rows[b:] if use_cfg else lg_rows
    probs = jax.nn.softmax(lg, axis=-1)
    ks, kg = jax.random.split(jax.random.fold_in(key, s))
    if draw is None:
      sampled = sample_categorical(ks, probs)
      gumbel = gumbel_noise(kg, probs.shape[:2])
    else:
      sampled, gumbel = draw
    unknown = known == mask_id
    sampled = jnp.where(unknown, sampled, known).astype(jnp.int32)
    selected = jnp.take_along_axis(probs, sampled[..., None], axis=-1)[..., 0]
    selected = jnp.where(unknown, selected, jnp.finfo(jnp.float32).max)
    mask_len = jnp.maximum(1.0, jnp.minimum(unknown.sum(-1, keepdims=True).astype(jnp.float32) - 1, mask_len_s))
    masking = mask_by_random_topk(mask_len, selected, temp_s, gumbel)
    new_block = jnp.where(masking, mask_id, sampled + off).astype(block.dtype)
    new_known = jnp.where(masking, mask_id, sampled).astype(known.dtype)
    trace = None
    if return_trace:
      trace = dict(input_ids=model_in, image_logits=lg_rows, probs=probs, sampled=sampled, gumbel=gumbel,
                   selected_probs=selected, mask_len=mask_len, masking=masking)
    return (new_block, new_known, sampled), trace

  xs = (jnp.arange(timesteps), mask_lens, temps, draws)
  init = (block0, known0, jnp.zeros((b, n), jnp.int32))
  (_, _, sampled), trace = jax.lax.scan(step, init, xs)
  return sampled, trace


def t2i_generate(model: Showo, input_ids: Int[Array | np.ndarray, "b l"],
                 uncond_input_ids: Int[Array | np.ndarray, "b l"] | None = None,
                 *, key: jax.Array | None = None, timesteps: int = 18, guidance_scale: float = 0.0,
                 temperature: float = 1.0, schedule: str = "cosine", schedule_kwargs: dict | None = None,
                 mask: Mask | None = None, draws: tuple | None = None, reuse_prefix: bool = True,
                 return_trace: bool = False):
  """``Showo.t2i_generate`` (MaskGIT, jitted, ``lax.scan`` over the steps) → codes ``[b, N]`` in [0, C).

  Args:
    input_ids: ``t2i_gen_prompt`` rows; image positions hold ``[MASK]`` (all of them for t2i, some of them
      for inpainting / extrapolation: known codes are kept).
    uncond_input_ids: null-prompt rows for CFG (used when ``guidance_scale > 0``).
    key: PRNG key for the categorical draws and the Gumbel noise (not needed with ``draws``).
    mask: default ``predict_next_mask(cat(cond, uncond), rm_pad_in_image=True)``.
    draws: ``(sampled [T, b, N] int, gumbel [T, b, N] float32)`` to replay recorded random draws.
    reuse_prefix: compute the text-prefix K/V once (exact; valid for any mask whose rows before
      ``<|soi|>`` do not attend to later keys, which holds for the predict-next masks).
    return_trace: also return per-step arrays (model input ids, pre-CFG image logits, probs, sampled,
      Gumbel noise, selected probs, mask_len, masking) stacked over steps.

  Returns:
    ``codes`` (``sampled_ids`` of the last step), or ``(codes, trace)``.
  """
  use_cfg = uncond_input_ids is not None and guidance_scale > 0
  if input_ids.shape[1] < model.cfg.num_vq_tokens + 3:
    raise ValueError(f"sequence length {input_ids.shape[1]} cannot hold {model.cfg.num_vq_tokens} image tokens")
  if draws is None and key is None:
    raise ValueError("pass a PRNG key (or recorded draws to replay)")
  if draws is not None:
    draws = (jnp.asarray(draws[0], jnp.int32), jnp.asarray(draws[1], jnp.float32))
    if draws[0].shape[0] != timesteps:
      raise ValueError(f"draws cover {draws[0].shape[0]} steps, timesteps={timesteps}")
  sched = (schedule, tuple(sorted((schedule_kwargs or {}).items())))
  sampled, trace = _t2i_generate(model, jnp.asarray(input_ids), jnp.asarray(uncond_input_ids) if use_cfg else None,
                                 mask, key if key is not None else jax.random.key(0), draws,
                                 jnp.float32(guidance_scale if use_cfg else 0.0), timesteps=int(timesteps),
                                 temperature=float(temperature), schedule=sched, reuse_prefix=bool(reuse_prefix),
                                 return_trace=bool(return_trace))
  return (sampled, trace) if return_trace else sampled


# ----------------------------------------------------------------------- inpainting and extrapolation
def bicubic_resize_mask(mask01: np.ndarray, size: int) -> np.ndarray:
  """``F.interpolate(mask[None, None], size, mode='bicubic')`` (align_corners=False, A=-0.75, border clamp)."""
  m = np.asarray(mask01, np.float32)

  def weights(in_len):
    scale = in_len / size
    out = np.zeros((size, in_len), np.float32)
    for o in range(size):
      src = (o + 0.5) * scale - 0.5
      i0 = math.floor(src)
      t = src - i0
      a = -0.75
      w = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
           ((a + 2) * t - (a + 3)) * t * t + 1,
           ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1]
      w.append(1 - w[0] - w[1] - w[2])
      for j in range(4):
        out[o, min(max(i0 - 1 + j, 0), in_len - 1)] += w[j]
    return out

  return weights(m.shape[0]) @ m @ weights(m.shape[1]).T


def inpainting_input(codes: Int[Array, "b n"], token_mask: Bool[Array, "b n"], cfg: ShowoConfig) -> Int[Array, "b n"]:
  """Image-token vocabulary ids with ``[MASK]`` where ``token_mask`` (``inference_t2i.py`` inpainting)."""
  return jnp.where(token_mask, cfg.mask_token_id, codes + cfg.image_token_offset)


def inpainting_token_mask(mask01: np.ndarray, grid: int) -> np.ndarray:
  """A ``[H, W]`` mask in [0, 1] → flattened ``[grid²]`` token mask (bicubic to the grid, then ``≥ 0.5``)."""
  return (bicubic_resize_mask(mask01, grid) >= 0.5).reshape(-1)


def extrapolation_grid(canvas: np.ndarray, direction: str, width: int, offset: int, mask_id: int,
                       image_offset: int) -> np.ndarray:
  """The ``W×W`` vocabulary-id grid to generate next: half context from ``canvas`` ``[b, h, w]`` (codes)."""
  canvas = np.asarray(canvas)
  b = canvas.shape[0]
  half = width // 2 - offset
  ids = canvas + image_offset
  if direction in ("left", "right"):
    new = np.full((b, canvas.shape[1], width // 2 + offset), mask_id, np.int64)
    return np.concatenate([new, ids[:, :, :half]] if direction == "left" else [ids[:, :, -half:], new], axis=-1)
  if direction in ("up", "down"):
    new = np.full((b, width // 2 + offset, canvas.shape[2]), mask_id, np.int64)
    return np.concatenate([new, ids[:, :half, :]] if direction == "up" else [ids[:, -half:, :], new], axis=-2)
  raise ValueError(f"unknown extrapolation direction {direction!r}")


def extrapolation_stitch(generated: np.ndarray, canvas: np.ndarray, direction: str, width: int,
                         offset: int) -> np.ndarray:
  """New canvas of codes: ``left → [gen | canvas[:, :, W/2-o:]]``, ``right → [canvas[:, :, :-(W/2-o)] | gen]``,
  ``up → [gen ; canvas[:, W/2-o:]]``, ``down → [canvas[:, :-(W/2-o)] ; gen]`` (intended; see module doc)."""
  half = width // 2 - offset
  g, c = np.asarray(generated), np.asarray(canvas)
  if direction == "left":
    return np.concatenate([g, c[:, :, half:]], axis=-1)
  if direction == "right":
    return np.concatenate([c[:, :, :-half], g], axis=-1)
  if direction == "up":
    return np.concatenate([g, c[:, half:, :]], axis=-2)
  if direction == "down":
    return np.concatenate([c[:, :-half, :], g], axis=-2)
  raise ValueError(f"unknown extrapolation direction {direction!r}")


def extrapolate(model: Showo, prompting: "prompting_v1.UniversalPrompting", canvas: np.ndarray,
                steps: Sequence[tuple[Sequence[int], str]], *, key: jax.Array, timesteps: int = 16,
                guidance_scale: float = 1.75, offset: int = 0, **kw) -> np.ndarray:
  """``inference_t2i.py mode=extrapolation``: for each ``(prompt ids, direction)`` generate the next
  half-context grid and stitch it to the canvas ``[b, h, w]`` (codes); decode with ``shape=canvas.shape[1:]``."""
  cfg = model.cfg
  width = int(round(math.sqrt(cfg.num_vq_tokens)))
  canvas = np.asarray(canvas)
  for i, (text, direction) in enumerate(steps):
    grid = extrapolation_grid(canvas, direction, width, offset, cfg.mask_token_id, cfg.image_token_offset)
    b = grid.shape[0]
    flat = grid.reshape(b, -1)
    cond = jnp.asarray(prompting.t2i_gen_prompt([list(text)] * b, flat))
    uncond = jnp.asarray(prompting.t2i_gen_prompt([[]] * b, flat)) if guidance_scale > 0 else None
    codes = t2i_generate(model, cond, uncond, key=jax.random.fold_in(key, i), timesteps=timesteps,
                         guidance_scale=guidance_scale, **kw)
    gen = np.clip(np.asarray(codes), 0, cfg.codebook_size - 1).reshape(b, grid.shape[1], grid.shape[2])
    canvas = extrapolation_stitch(gen, canvas, direction, width, offset)
  return canvas


# ------------------------------------------------------------------------------- MMU text generation
@functools.partial(jax.jit, static_argnames=("max_new_tokens", "temperature", "top_k", "eot_token"))
def _mmu_generate(model, input_ids, inputs_embeds, mask, key, *, max_new_tokens, temperature, top_k, eot_token):
  x = model.embed(input_ids) if inputs_embeds is None else inputs_embeds
  b, l, _ = x.shape
  total = l + max_new_tokens
  if isinstance(mask, masks_lib.MaskSpec):
    last = masks_lib.dense(masks_lib.slice_queries(mask, l - 1, 1), total)[:, 0]        # [b, total]
  else:
    last = jnp.pad(mask[:, -1, :], ((0, 0), (0, max_new_tokens)))
  # mmu_generate grows the mask with new rows = the prompt's last row + every generated column.
  base = last | (jnp.arange(total)[None, :] >= l)
  cache = KVCache.init(model.cfg.phi, b, total, dtype=x.dtype)
  out = model(inputs_embeds=x, mask=_pad_keys(mask, total), cache=cache, compute_logits=False)

  def pick(hidden, k):
    logits = model.showo.logits(hidden) / temperature
    if top_k == 1:
      return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if top_k is not None:
      kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][..., -1:]
      logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(k, logits, axis=-1).astype(jnp.int32)

  tok = pick(out.last_hidden_state[:, -1], jax.random.fold_in(key, 0))
  tokens = jnp.full((b, max_new_tokens), eot_token if eot_token is not None else 0, jnp.int32)
  tokens = tokens.at[:, 0].set(tok)
  done = (tok == eot_token) if eot_token is not None else jnp.zeros((b,), bool)
  lengths = jnp.ones((b,), jnp.int32)

  def cond(state):
    i, _, _, done, _, _ = state
    return (i < max_new_tokens) & ~jnp.all(done)

  def body(state):
    i, tok, cache, done, tokens, lengths = state
    row_mask = (base & (jnp.arange(total)[None, :] <= l + i - 1))[:, None, :]   # the new query at l+i-1
    o = model(tok[:, None], mask=row_mask, cache=cache, compute_logits=False)
    nxt = pick(o.last_hidden_state[:, -1], jax.random.fold_in(key, i))
    nxt = jnp.where(done, tokens[:, i], nxt)            # finished rows keep their eot filler
    tokens = tokens.at[:, i].set(nxt)
    lengths = lengths + (~done).astype(jnp.int32)
    if eot_token is not None:
      done = done | (nxt == eot_token)
    return i + 1, nxt, o.cache, done, tokens, lengths

  state = (jnp.int32(1), tok, out.cache, done, tokens, lengths)
  _, _, _, _, tokens, lengths = jax.lax.while_loop(cond, body, state)
  return tokens, lengths


def _pad_keys(mask, total: int):
  """Prompt mask over a cache of ``total`` keys (MaskSpec ranges are absolute already)."""
  if isinstance(mask, masks_lib.MaskSpec):
    return mask
  return jnp.pad(mask, ((0, 0), (0, 0), (0, total - mask.shape[-1])))


def mmu_generate(model: Showo, input_ids: Int[Array | np.ndarray, "b l"] | None = None, *,
                 inputs_embeds: Float[Array, "b l d"] | None = None, mask: Mask, key: jax.Array | None = None,
                 max_new_tokens: int = 100, temperature: float = 1.0, top_k: int | None = None,
                 eot_token: int | None = None):
  """``Showo.mmu_generate`` with a KV cache (prefill once, then one token per step; jitted while-loop).

  The reference re-runs the whole sequence each step with a mask grown by "new row = last row + itself";
  with a cache that is the prompt's last mask row plus every generated column, so the results are the same.
  ``top_k=1`` is greedy (what ``inference_mmu.py`` uses). Rows stop at ``eot_token`` (kept in the output);
  positions after it hold ``eot_token``.

  Returns:
    ``(tokens [b, max_new_tokens] int32, lengths [b])`` (length includes the eot token).
  """
  if (input_ids is None) == (inputs_embeds is None):
    raise ValueError("pass exactly one of input_ids or inputs_embeds")
  if top_k != 1 and key is None:
    raise ValueError("sampling (top_k != 1) needs a PRNG key")
  return _mmu_generate(model, None if input_ids is None else jnp.asarray(input_ids), inputs_embeds, mask,
                       key if key is not None else jax.random.key(0), max_new_tokens=int(max_new_tokens),
                       temperature=float(temperature), top_k=top_k, eot_token=eot_token)
