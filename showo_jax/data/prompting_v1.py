"""Show-o v1 sequence formats and attention masks (the reference ``UniversalPrompting``), spec ``showo.md`` §4, §6.2.

Reference: ``showlab/Show-o@45a5a2d:training/prompting_utils.py`` (``UniversalPrompting``,
``create_attention_mask_predict_next``, ``create_attention_mask_for_mmu``, ``create_attention_mask_for_mmu_vit``)
and ``training/train.py`` (the LLaVA-VQ MMU rows). Text arrives already tokenised (lists of ids), so the
builders are tokenizer-free host numpy code; the masks are jittable and return
:class:`~showo_jax.masks.MaskSpec` key ranges (or a dense boolean mask where the reference mask is not a
single key range per row).

Sequence formats (``max_text_len`` = the config's ``max_seq_length``; ``N`` image tokens):

* t2i:  ``[PAD]×k <|t2i|> bos text… eos | <|soi|> img×N <|eoi|>``, text part left-padded to ``max_text_len+1``;
  too long → ``ids[:max_text_len] + [eos]``. Labels = ids with ``[PAD]`` → -100 and the image part replaced by
  the MTP labels. With probability ``cond_dropout_prob`` the text becomes ``<|t2i|> bos eos`` (null prompt).
* lm:   ``bos text… eos [PAD]…`` right-padded to the t2i length (too long: truncated, no eos); -100 on pads.
* mmu:  ``<|mmu|> <|soi|> img×N <|eoi|> bos text… eos [PAD]…`` (text right-padded to ``max_text_len``);
  labels -100 on the first ``N+3`` positions and on pads, the text ids (bos included) elsewhere.
* LLaVA-VQ mmu (``train.py``): ``[<|mmu|>, <|soi|>, img×N, <|eoi|>] + input_ids`` (no bos added), labels
  ``-100×(N+3) + labels``.

Masks (``True`` = may attend):

* :func:`predict_next_mask` (t2i, and lm with ``rm_pad_in_image=False``): text rows causal; with
  ``rm_pad_in_image`` rows after the last ``[PAD]`` (index ``P``) may not see columns ``≤ P``; image rows
  (``<|soi|>`` … ``<|eoi|>``) see every column except ``[PAD]`` columns, later ones included. As key ranges:
  text ``[P+1 if q > P else 0, q+1)``, image ``[P+1, L)``. This is exact whenever the pads form a prefix
  (what the t2i builders produce, left padding); :func:`predict_next_dense` is the general form.
* :func:`mmu_mask`: causal OR ``k ≤ e``, ``e`` = position of ``<|eoi|>`` in the FIRST row, used for every
  row (reference quirk).
* :func:`mmu_vit_mask`: causal OR ``1+S+1 ≤ k < 1+S+1+576`` (visible to every row, also the earlier system
  rows): two key ranges for the first rows, hence a dense mask.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

from showo_jax import masks as masks_lib
from showo_jax.models.showo import ShowoTokenIds

IGNORE_ID = -100


class UniversalPrompting:
  """Host-side builders of the reference's v1 sequences from already tokenised text (lists of ids)."""

  def __init__(self, token_ids: ShowoTokenIds, max_text_len: int, ignore_id: int = IGNORE_ID,
               cond_dropout_prob: float = 0.1):
    self.ids = token_ids
    self.max_seq_length = max_text_len
    self.max_text_len = max_text_len + 1     # room for the task token (reference naming)
    self.ignore_id = ignore_id
    self.cond_dropout_prob = cond_dropout_prob

  def _with_bos(self, text: Sequence[int]) -> list[int]:
    text = [int(t) for t in text]
    if not text:
      return [self.ids.sot]
    return text if text[0] == self.ids.sot else [self.ids.sot] + text

  def _t2i_text(self, text: Sequence[int], task: int, drop: bool) -> list[int]:
    temp = [task] + self._with_bos(text) + [self.ids.eot]
    if drop:
      temp = [task, self.ids.sot, self.ids.eot]
    if self.max_text_len >= len(temp):
      return [self.ids.pad] * (self.max_text_len - len(temp)) + temp
    return temp[:self.max_text_len - 1] + [self.ids.eot]

  def t2i_prompt(self, texts: Sequence[Sequence[int]], image_ids: np.ndarray, labels: np.ndarray,
                 rng: np.random.Generator | None = None, drop: Sequence[bool] | None = None):
    """Training t2i rows → ``(input_ids [b, L], labels [b, L])``; ``image_ids``/``labels`` are vocabulary ids.

    Condition dropout: ``drop[i]`` if given, else ``rng.random() < cond_dropout_prob`` (no rng: no dropout).
    """
    image_ids, labels = np.asarray(image_ids), np.asarray(labels)
    seqs, labs = [], []
    for i, text in enumerate(texts):
      d = drop[i] if drop is not None else (rng is not None and rng.random() < self.cond_dropout_prob)
      temp = self._t2i_text(text, self.ids.t2i, bool(d))
      lab = np.concatenate([temp, [self.ids.soi], labels[i], [self.ids.eoi]]).astype(np.int64)
      seqs.append(np.concatenate([temp, [self.ids.soi], image_ids[i], [self.ids.eoi]]).astype(np.int64))
      labs.append(np.where(lab == self.ids.pad, self.ignore_id, lab))
    return np.stack(seqs), np.stack(labs)

  def t2i_gen_prompt(self, texts: Sequence[Sequence[int]], image_ids: np.ndarray) -> np.ndarray:
    """Inference t2i rows (``texts=[[]]*b`` gives the CFG null prompt ``<|t2i|> bos eos``)."""
    image_ids = np.asarray(image_ids)
    return np.stack([np.concatenate([self._t2i_text(t, self.ids.t2i, False), [self.ids.soi], image_ids[i],
                                     [self.ids.eoi]]).astype(np.int64) for i, t in enumerate(texts)])

  def lm_prompt(self, texts: Sequence[Sequence[int]], max_seq_len: int):
    """``bos text eos [PAD]…`` right-padded to ``max_seq_len`` → ``(input_ids, labels)``."""
    seqs, labs = [], []
    for text in texts:
      temp = self._with_bos(text) + [self.ids.eot]
      if max_seq_len >= len(temp):
        lab = temp + [self.ignore_id] * (max_seq_len - len(temp))
        temp = temp + [self.ids.pad] * (max_seq_len - len(temp))
      else:  # no eos when truncated (reference)
        lab = temp = temp[:max_seq_len]
      seqs.append(np.asarray(temp, np.int64))
      labs.append(np.asarray(lab, np.int64))
    return np.stack(seqs), np.stack(labs)

  def mmu_prompt(self, image_ids: np.ndarray, texts: Sequence[Sequence[int]]):
    """Captioning rows ``<|mmu|> <|soi|> img <|eoi|> bos text eos [PAD]…`` → ``(input_ids, labels)``."""
    image_ids = np.asarray(image_ids)
    n = image_ids.shape[-1]
    max_len = self.max_text_len - 1
    seqs, labs = [], []
    for i, text in enumerate(texts):
      temp = self._with_bos(text) + [self.ids.eot]
      if max_len >= len(temp):
        temp = temp + [self.ids.pad] * (max_len - len(temp))
      else:
        temp = temp[:max_len - 1] + [self.ids.eot]
      lab = np.concatenate([[self.ignore_id] * (n + 3), temp]).astype(np.int64)
      labs.append(np.where(lab == self.ids.pad, self.ignore_id, lab))
      seqs.append(np.concatenate([[self.ids.mmu, self.ids.soi], image_ids[i], [self.ids.eoi], temp]).astype(np.int64))
    return np.stack(seqs), np.stack(labs)

  def llava_mmu_prompt(self, image_ids: np.ndarray, input_ids: np.ndarray, labels: np.ndarray):
    """LLaVA-VQ rows (``train.py``): image prefix prepended to the rendered conversation (no bos added)."""
    image_ids, input_ids, labels = np.asarray(image_ids), np.asarray(input_ids), np.asarray(labels)
    b, n = image_ids.shape
    col = lambda t: np.full((b, 1), t, np.int64)
    seq = np.concatenate([col(self.ids.mmu), col(self.ids.soi), image_ids, col(self.ids.eoi), input_ids], axis=1)
    lab = np.concatenate([np.full((b, n + 3), self.ignore_id, np.int64), labels], axis=1)
    return seq.astype(np.int64), lab

  def mmu_gen_prompt(self, image_ids: np.ndarray, question_ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """``inference_mmu.py`` discrete input: ``<|mmu|> <|soi|> img <|eoi|> <|sot|>`` + tokens of
    ``"USER: \\n" + question + " ASSISTANT:"`` (one unpadded row per question)."""
    image_ids = np.asarray(image_ids)
    return [np.concatenate([[self.ids.mmu, self.ids.soi], image_ids[i], [self.ids.eoi, self.ids.sot],
                            list(q)]).astype(np.int64) for i, q in enumerate(question_ids)]


# ----------------------------------------------------------------------------------------------- masks
def image_segment(ids: Int[Array, "b l"], soi: int, eoi: int) -> Bool[Array, "b l"]:
  """``<|soi|>`` … ``<|eoi|>`` inclusive (cumulative-count rule of the reference)."""
  is_soi, is_eoi = ids == soi, ids == eoi
  return (jnp.cumsum(is_soi, axis=1) > jnp.cumsum(is_eoi, axis=1)) | is_soi | is_eoi


def _last_pad(ids, pad):
  l = ids.shape[1]
  return jnp.max(jnp.where(ids == pad, jnp.arange(l, dtype=jnp.int32)[None], -1), axis=1)  # -1: no pad


def predict_next_mask(ids: Int[Array, "b l"], pad: int, soi: int, eoi: int,
                      rm_pad_in_image: bool = True) -> masks_lib.MaskSpec:
  """``create_attention_mask_predict_next`` as key ranges (exact when pads form a prefix of each row)."""
  b, l = ids.shape
  q = jnp.arange(l, dtype=jnp.int32)[None, :]
  img = image_segment(ids, soi, eoi)
  if rm_pad_in_image:
    p = _last_pad(ids, pad)[:, None]
    text_start = jnp.where(q > p, p + 1, 0)
    img_start = jnp.broadcast_to(p + 1, (b, l))
  else:
    text_start = jnp.zeros((b, l), jnp.int32)
    img_start = jnp.zeros((b, l), jnp.int32)
  k_start = jnp.where(img, img_start, text_start).astype(jnp.int32)
  k_end = jnp.where(img, l, q + 1).astype(jnp.int32)
  return masks_lib.MaskSpec(k_start, jnp.broadcast_to(k_end, (b, l)))


def predict_next_dense(ids: Int[Array, "b l"], pad: int, soi: int, eoi: int,
                       rm_pad_in_image: bool = True) -> Bool[Array, "b l l"]:
  """General (any pad placement) dense form of ``create_attention_mask_predict_next``."""
  b, l = ids.shape
  q = jnp.arange(l)[:, None]
  k = jnp.arange(l)[None, :]
  img = image_segment(ids, soi, eoi)
  text = jnp.broadcast_to(k <= q, (b, l, l))
  full = jnp.ones((b, l, l), bool)
  if rm_pad_in_image:
    p = _last_pad(ids, pad)[:, None, None]
    text = text & ~((q[None] > p) & (k[None] <= p))
    # Reference: rows from the (first) <|soi|> on lose the [PAD] columns, then image rows take them.
    soi_pos = jnp.argmax(ids == soi, axis=1)[:, None, None]
    full = full & ~((q[None] >= soi_pos) & (ids == pad)[:, None, :])
  return jnp.where(img[:, :, None], full, text)


def mmu_mask(ids: Int[Array, "b l"], eoi: int) -> masks_lib.MaskSpec:
  """``create_attention_mask_for_mmu``: causal + the prefix up to the first row's ``<|eoi|>``."""
  b, l = ids.shape
  e = jnp.argmax(ids[0] == eoi).astype(jnp.int32)  # the reference reads row 0's <|eoi|> for every row
  return masks_lib.prefix_full(b, l, jnp.full((b,), e + 1, jnp.int32))


def mmu_vit_mask(batch: int, length: int, system_prompt_len: int, num_image_tokens: int = 576) -> Bool[Array, "b l l"]:
  """``create_attention_mask_for_mmu_vit``: causal OR the CLIP block ``[2+S, 2+S+576)`` for every row."""
  q = jnp.arange(length)[:, None]
  k = jnp.arange(length)[None, :]
  lo = 1 + system_prompt_len + 1
  m = (k <= q) | ((k >= lo) & (k < lo + num_image_tokens))
  return jnp.broadcast_to(m, (batch, length, length))


def causal_extend(spec: masks_lib.MaskSpec, extra: int) -> masks_lib.MaskSpec:
  """``mmu_generate``'s growing mask: old rows unchanged, each new row sees every earlier column and itself."""
  b, l = spec.k_start.shape
  q = l + jnp.arange(extra, dtype=jnp.int32)
  return masks_lib.MaskSpec(jnp.concatenate([spec.k_start, jnp.zeros((b, extra), jnp.int32)], axis=1),
                            jnp.concatenate([spec.k_end, jnp.broadcast_to(q + 1, (b, extra))], axis=1))


# ------------------------------------------------------------------------------- numpy reference oracles
def predict_next_reference(ids: np.ndarray, pad: int, soi: int, eoi: int, rm_pad_in_image: bool = False) -> np.ndarray:
  """Line-by-line numpy port of the reference function (boolean, ``[b, l, l]``): the test oracle."""
  ids = np.asarray(ids)
  n, l = ids.shape
  is_pad = ids == pad
  cs, ce = np.cumsum(ids == soi, 1), np.cumsum(ids == eoi, 1)
  in_img = (cs > ce) | (ids == soi) | (ids == eoi)
  causal = np.tril(np.ones((l, l), bool))
  mask_text = (~in_img)[:, :, None] & causal[None]
  bi = np.ones((n, l, l), bool)
  if rm_pad_in_image:
    sid = np.where(ids == soi)[1]
    for i in range(n):
      pads = np.where(ids[i] == pad)[0]
      if len(pads):
        mask_text[i][pads[-1] + 1:, :pads[-1] + 1] = False
      bi[i][sid[i]:, np.where(is_pad[i])[0]] = False
  mask_text[in_img] = bi[in_img]
  return mask_text


def mmu_reference(ids: np.ndarray, eoi: int) -> np.ndarray:
  ids = np.asarray(ids)
  n, l = ids.shape
  m = np.tril(np.ones((n, l, l), bool))
  m[:, :, :np.where(ids == eoi)[1][0] + 1] = True
  return m


def dense_of(spec: masks_lib.MaskSpec | jax.Array, length: int) -> jax.Array:
  """Boolean ``[b, l, s]`` of a MaskSpec (pass-through for dense masks)."""
  return masks_lib.dense(spec, length) if isinstance(spec, masks_lib.MaskSpec) else spec
