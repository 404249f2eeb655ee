"""Show-o2 sequence formats (host-side numpy): token ids, labels, masks and ``modality_positions``.

Mirrors, value for value (spec showo2.md §4):
  showlab/Show-o@45a5a2d:show-o2/datasets/utils.py (format_sequence_gen_qwen2_5, format_sequence_und,
      format_interleaved_sequence, remove_prefix)
  show-o2/datasets/image_text_dataset.py (T2I / captioning samples, cond dropout, max_text_len)
  show-o2/datasets/mmu_dataset.py::format_multi_sequence_und_qwen2_5 (LLaVA stages)
  show-o2/datasets/vist_dataset.py (interleaved VIST samples)
  show-o2/models/misc.py (prepare_gen_input, prepare_mixed_modal_gen_input)
  show-o2/inference_mmu.py, show-o2/inference_mmu_vid.py (hand-assembled MMU prompts)

Every builder returns a :class:`SeqSample`:

* ``tokens [l]``: ids; each visual block is ``n + 1`` placeholder ids (``img_pad``/``vid_pad``): the time
  token, then the ``n`` visual tokens (spec §4.9: the model overwrites these embeddings);
* ``labels [l]``: NTP targets, ``-100`` = ignored (the loss shifts: logits[:, :-1] vs labels[:, 1:]);
* ``modality_positions [m, 2]``: ``(offset, length)`` where the time embedding goes to ``offset`` and the
  visual tokens to ``offset+1 .. offset+length-1`` (``length`` includes the time token); unused = (0, 0);
* ``omni_positions [m, 2]``: the ``modality_positions`` the reference hands to the omni-attention mask.
  Identical to ``modality_positions`` except in the MMU inference scripts (spec §4.4, §4.5), whose mask
  block starts one position late (``reference_offset=True``, the default, reproduces it);
* ``text_mask [l]``: ``(tokens != img_pad) & (tokens != pad)`` (reference ``text_masks``);
* ``image_mask [l]``: ``tokens == img_pad`` (reference ``image_masks``; it still includes the time-token
  position, which the model zeroes for the flow loss, see :func:`flow_loss_mask`).

``num_image_tokens`` is always the number of visual tokens *without* the time token (729 at 432 px); the
builders add the time token (the reference adds 1 to every ``num_*_tokens`` when ``add_time_embeds``, which
all released configs set). Builders come in two layers: ``format_*`` take token ids and a
:class:`~showo_jax.text.SpecialIds` table, ``build_*`` take strings and a tokenizer wrapper
(:class:`~showo_jax.text.ShowoTokenizer` or anything with ``encode(text, max_length)`` and ``special``),
so tiny tokenizers with small vocabularies work unchanged.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from jaxtyping import Int

from showo_jax.text.qwen_offline import SpecialIds

IGNORE = -100
DEFAULT_SYSTEM_PROMPT = "system\nYou are a helpful assistant.<|im_end|>"
ROLE_USER = "\n<|im_start|>user\n"
ROLE_ASSISTANT = "\n<|im_start|>assistant\n"
VIST_FLAG = "Mixed-modality generation (VIST)."
LLAVA_STAGES = ("pre-training", "pre-training-1-5", "tuning")

# Caption prefixes removed from T2I captions (datasets/utils.py::remove_prefix), applied in this order.
_CAPTION_PREFIXES = (
    "The image features ", "The image presents ", "The image you've sent is, ", "In the center of the image, ",
    "The image showcases ", "The image is ", "The image captures ", "In the given image ", "The image portrays ",
    "In the image, ", "In this image, we see ", "The image depicts ", "This is ", "In this image, ",
    "This image captures ", "This image showcases ", "This suggests ", "In the photo, we see ", "This is ",
    "This image is ", "In the photo, we have ", "The photo features ", "The photo depicts ",
    "The photo appears to be ")


@runtime_checkable
class TextTokenizer(Protocol):
  """What the ``build_*`` functions need from a tokenizer (:class:`~showo_jax.text.ShowoTokenizer`)."""
  special: SpecialIds

  def encode(self, text: str, max_length: int | None = None) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class SeqSample:
  """One formatted row (see the module docstring for each field)."""
  tokens: Int[np.ndarray, "l"]
  labels: Int[np.ndarray, "l"]
  modality_positions: Int[np.ndarray, "m 2"]
  omni_positions: Int[np.ndarray, "m 2"]
  text_mask: Int[np.ndarray, "l"]
  image_mask: Int[np.ndarray, "l"]

  def __len__(self) -> int:
    return int(self.tokens.shape[0])


# ----------------------------------------------------------------------------------------------------------
# Shared pieces.


def _finish(tokens: list[int], labels: list[int], positions: list[tuple[int, int]], pad_id: int, placeholder: int,
            max_seq_len: int | None, omni: list[tuple[int, int]] | None = None, truncate: bool = False) -> SeqSample:
  """Right-pad with ``pad_id``/-100 to ``max_seq_len`` and compute the masks.

  Only the LLaVA format truncates overlong rows (as the reference does); elsewhere the text budgets make
  overflow impossible in the reference, so an overlong row is a caller error.
  """
  if max_seq_len is not None:
    if len(tokens) > max_seq_len and not truncate:
      raise ValueError(f"row of {len(tokens)} tokens exceeds max_seq_len={max_seq_len}")
    tokens = (tokens + [pad_id] * (max_seq_len - len(tokens)))[:max_seq_len]
    labels = (labels + [IGNORE] * (max_seq_len - len(labels)))[:max_seq_len]
  tok = np.asarray(tokens, np.int32)
  lab = np.asarray(labels, np.int32)
  if tok.shape != lab.shape:
    raise AssertionError(f"tokens {tok.shape} vs labels {lab.shape}")
  pos = np.asarray(positions, np.int32).reshape(-1, 2)
  omni_pos = pos.copy() if omni is None else np.asarray(omni, np.int32).reshape(-1, 2)
  text_mask = ((tok != placeholder) & (tok != pad_id)).astype(np.int32)
  image_mask = (tok == placeholder).astype(np.int32)
  return SeqSample(tok, lab, pos, omni_pos, text_mask, image_mask)


def remove_prefix(caption: str) -> str:
  """``datasets/utils.py::remove_prefix``: deletes boilerplate phrases ("The image features ", ...) anywhere."""
  for p in _CAPTION_PREFIXES:
    caption = caption.replace(p, "")
  return caption


def t2i_max_text_len(num_image_tokens: int, max_seq_len: int, system_len: int = 0) -> int:
  """Text budget of a T2I row: ``max_seq_len - (n+1) - 4`` (290 at 432 px / 1024); ``- sys - 1`` with a system prompt."""
  base = max_seq_len - (num_image_tokens + 1) - 4
  return base if system_len == 0 else base - system_len - 1


def maybe_drop_caption(caption: str, rng: np.random.Generator | None, prob: float = 0.1) -> str:
  """Classifier-free-guidance dropout: ``''`` with probability ``prob`` (reference ``cond_dropout_prob``)."""
  if rng is not None and prob > 0 and rng.random() < prob:
    return ""
  return caption


# ----------------------------------------------------------------------------------------------------------
# Text-to-image (§4.1) and text-to-video / image-to-video (§4.8).


def format_t2i(sp: SpecialIds, text_ids: Sequence[int], num_image_tokens: int, max_seq_len: int, *,
               max_text_len: int | None = None, system_ids: Sequence[Sequence[int]] | None = None,
               video: bool = False) -> SeqSample:
  """``[bos] text [boi] [img_pad]*(n+1) [eoi] [eos] [pad]...`` (``format_sequence_gen_qwen2_5`` / ``prepare_gen_input``).

  Labels are all -100 (no NTP loss on T2I rows). Text is truncated to ``max_text_len`` (default
  :func:`t2i_max_text_len`), so every row is exactly ``max_seq_len`` long and the null prompt (empty text,
  offset 2) lines up with the conditional one. ``system_ids = (sys0, sys1, sys2)`` selects the reference's
  (unused, "TO BE VERIFIED") system-prompt branch ``[bos] sys0 sys1 text [eos] sys2 [boi] ... [eoi] [eos]``.
  ``video=True`` uses ``bov``/``vid_pad``/``eov`` (T2V, spec §4.8; ``num_image_tokens`` = all video tokens).
  """
  block = num_image_tokens + 1
  bo, eo, ph = (sp.bov, sp.eov, sp.vid_pad) if video else (sp.boi, sp.eoi, sp.img_pad)
  sys = [list(s) for s in system_ids] if system_ids is not None else [[], [], []]
  sys_len = sum(len(s) for s in sys)
  if max_text_len is None:
    max_text_len = t2i_max_text_len(num_image_tokens, max_seq_len, sys_len if sys[0] else 0)
  text = list(text_ids)[:max_text_len]
  if not sys[0]:  # the reference tests len(system_tokens[0]) to pick the branch
    positions = [(len(text) + 2, block)]
    tokens = [sp.bos] + text + [bo] + [ph] * block + [eo, sp.eos]
    labels = [IGNORE] * len(tokens)
  else:
    positions = [(1 + sys_len + len(text) + 2, block)]
    tokens = [sp.bos] + sys[0] + sys[1] + text + [sp.eos] + sys[2] + [bo] + [ph] * block + [eo, sp.eos]
    labels = ([sp.bos] + [IGNORE] * (len(sys[0]) + len(sys[1]) + len(text)) + [sp.eos] + [IGNORE] * len(sys[2])
              + [bo] + [IGNORE] * block + [eo, sp.eos])
  return _finish(tokens, labels, positions, sp.pad, ph, max_seq_len)


def build_t2i(tok: TextTokenizer, caption: str, num_image_tokens: int, max_seq_len: int, *,
              rng: np.random.Generator | None = None, cond_dropout_prob: float = 0.0,
              clean_caption: bool = True, video: bool = False) -> SeqSample:
  """A T2I training row from a caption (``ImageTextDataset`` with ``is_captioning=False``).

  ``clean_caption`` applies the dataset's ``replace('\\n', '')`` and :func:`remove_prefix`; with ``rng`` the
  caption is dropped to ``''`` with ``cond_dropout_prob`` (the reference uses 0.1 in training).
  """
  if clean_caption:
    caption = remove_prefix(caption.replace("\n", ""))
  caption = maybe_drop_caption(caption, rng, cond_dropout_prob)
  max_text_len = t2i_max_text_len(num_image_tokens, max_seq_len)
  return format_t2i(tok.special, tok.encode(caption, max_length=max_text_len), num_image_tokens, max_seq_len,
                    video=video)


def build_t2i_inference(tok: TextTokenizer, prompts: Sequence[str], num_image_tokens: int, max_seq_len: int,
                        *, video: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """``prepare_gen_input``: (cond batch, null batch) of :func:`collate`; null rows have empty text, offset 2."""
  cond = [build_t2i(tok, p, num_image_tokens, max_seq_len, clean_caption=False, video=video) for p in prompts]
  null = [format_t2i(tok.special, [], num_image_tokens, max_seq_len, video=video) for _ in prompts]
  return collate(cond), collate(null)


def format_t2v(sp: SpecialIds, text_ids: Sequence[int], num_video_tokens: int, max_seq_len: int, *,
               max_text_len: int | None = None) -> SeqSample:
  """T2V row (spec §4.8): ``[bos] text [<|vid_start|>] [<|video_pad|>]*(N+1) [<|vid_end|>] [eos] [pad]...``.

  ``num_video_tokens`` = ``T * h_ * w_`` (3645 for 17 frames at 432 px); the budget is
  ``max_seq_len - (N+1) - 4`` as in ``get_hyper_params(is_video=True)``. ``image_mask`` marks ``vid_pad``.
  """
  return format_t2i(sp, text_ids, num_video_tokens, max_seq_len, max_text_len=max_text_len, video=True)


def format_i2v(sp: SpecialIds, text_ids: Sequence[int], num_video_tokens: int, max_seq_len: int, *,
               max_text_len: int | None = None) -> SeqSample:
  """Image-to-video row: the T2V layout. Conditioning is not in the tokens: the model is called with
  ``first_frame_as_cond=True``, which zeroes the predicted velocity of latent frame 0 (spec §4.8)."""
  return format_t2v(sp, text_ids, num_video_tokens, max_seq_len, max_text_len=max_text_len)


# ----------------------------------------------------------------------------------------------------------
# Understanding: captioning (§4.2), LLaVA (§4.3), inference prompts (§4.4, §4.5).


def format_und_caption(sp: SpecialIds, text_ids: Sequence[int], num_image_tokens: int, max_seq_len: int, *,
                       max_text_len: int | None = None) -> SeqSample:
  """``format_sequence_und``: ``[bos] [boi] [img_pad]*(n+1) [eoi] caption [eos] [pad]...``, offset 2.

  Labels: ``[bos] [boi] -100*(n+1) [eoi] caption [eos] -100...`` (the model learns to emit ``boi`` after
  ``bos``). The caption is truncated to ``max_seq_len - (n+1) - 4`` tokens, as in ``ImageTextDataset``.
  """
  block = num_image_tokens + 1
  if max_text_len is None:
    max_text_len = t2i_max_text_len(num_image_tokens, max_seq_len)
  text = list(text_ids)[:max_text_len]
  tokens = [sp.bos, sp.boi] + [sp.img_pad] * block + [sp.eoi] + text + [sp.eos]
  labels = [sp.bos, sp.boi] + [IGNORE] * block + [sp.eoi] + text + [sp.eos]
  return _finish(tokens, labels, [(2, block)], sp.pad, sp.img_pad, max_seq_len)


def build_und_caption(tok: TextTokenizer, caption: str, num_image_tokens: int, max_seq_len: int) -> SeqSample:
  """Stage-1 captioning row (``ImageTextDataset`` with ``is_captioning=True``; no prefix removal, no dropout)."""
  caption = caption.replace("\n", "")
  max_text_len = t2i_max_text_len(num_image_tokens, max_seq_len)
  return format_und_caption(tok.special, tok.encode(caption, max_length=max_text_len), num_image_tokens, max_seq_len)


def format_llava(sp: SpecialIds, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                 num_image_tokens: int, max_seq_len: int, *, stage: str = "tuning",
                 system_ids: Sequence[int] = (), role_user_ids: Sequence[int] = (),
                 role_assistant_ids: Sequence[int] = (), ignore_question: bool = True) -> SeqSample:
  """``MMUDataset.format_multi_sequence_und_qwen2_5`` on tokenized turns.

  For ``stage='tuning'`` each source becomes ``role_user + source + [eos] + role_assistant`` and the first
  one is prefixed with the system prompt. The first ``<image>`` id of a source is replaced by
  ``[boi] [img_pad]*(n+1) [eoi]`` at ``offset = cur_len + index + 1`` (``cur_len = 1 + tokens so far``).
  Labels: -100 for ``bos`` and the sources (with ``ignore_question``), targets labelled. The row is padded
  and then **truncated** to ``max_seq_len``; with no image, ``modality_positions = [(0, 0)]``.
  """
  if stage not in LLAVA_STAGES:
    raise ValueError(f"stage must be one of {LLAVA_STAGES}, got {stage!r}")
  pre = stage.startswith("pre-training")
  block = num_image_tokens + 1
  tokens: list[int] = []
  labels: list[int] = []
  positions: list[tuple[int, int]] = []
  cur_len = 1  # the bos token
  for source, target in zip(sources, targets):
    source, target = list(source), list(target)
    if not pre:
      source = list(role_user_ids) + source + [sp.eos] + list(role_assistant_ids)
    if cur_len == 1 and not pre:  # "only support one image": the system prompt opens the first turn
      source = list(system_ids) + source
    if sp.img in source:
      i = source.index(sp.img)
      source = source[:i] + [sp.boi] + [sp.img_pad] * block + [sp.eoi] + source[i + 1:]
      positions.append((cur_len + i + 1, block))
    tokens += source + target
    labels += ([IGNORE] * len(source) if ignore_question else source) + target
    cur_len = len(tokens) + 1
  tokens = [sp.bos] + tokens
  labels = [IGNORE] + labels
  return _finish(tokens, labels, positions or [(0, 0)], sp.pad, sp.img_pad, max_seq_len, truncate=True)


def llava_turns(conversations: Sequence[dict], stage: str, eos_token: str = "<|im_end|>"
                ) -> tuple[list[str], list[str]]:
  """LLaVA ``conversations`` (``from``: human/gpt) -> (sources, targets) strings as ``MMUDataset.__getitem__``.

  ``\\n<image>`` at the end of a human turn moves to the front; in the pre-training stages a human turn
  containing ``<image>`` becomes exactly ``<image>``; targets get the eos token string appended.
  """
  sources, targets = [], []
  for conv in conversations:
    value = conv["value"]
    if conv["from"] == "human":
      if value.endswith("\n<image>"):
        value = "<image>\n" + value[:-len("\n<image>")]
      if stage.startswith("pre-training") and "<image>" in value:
        value = "<image>"
      sources.append(value)
    else:
      targets.append(f"{value}{eos_token}")
  return sources, targets


def build_llava(tok: TextTokenizer, conversations: Sequence[dict], num_image_tokens: int, max_seq_len: int, *,
                stage: str = "tuning", system_prompt: str = DEFAULT_SYSTEM_PROMPT, source_max_len: int = 512,
                target_max_len: int = 512) -> SeqSample:
  """A stage-2 LLaVA row (2a ``pre-training``, 2b ``pre-training-1-5``, 2c ``tuning``) from a conversation."""
  sources, targets = llava_turns(conversations, stage)
  src = [tok.encode(s, max_length=source_max_len) for s in sources]
  tgt = [tok.encode(t, max_length=target_max_len) for t in targets]
  extra = {}
  if not stage.startswith("pre-training"):
    extra = dict(system_ids=tok.encode(system_prompt, max_length=100), role_user_ids=tok.encode(ROLE_USER),
                 role_assistant_ids=tok.encode(ROLE_ASSISTANT))
  return format_llava(tok.special, src, tgt, num_image_tokens, max_seq_len, stage=stage, **extra)


def format_mmu_inference(sp: SpecialIds, prefix_ids: Sequence[int], suffix_ids: Sequence[int],
                         num_visual_tokens: int, *, mask_block_len: int | None = None,
                         reference_offset: bool = True) -> SeqSample:
  """``[bos] prefix [boi] [img_pad]*(1+V) [eoi] suffix`` as hand-assembled by the MMU inference scripts.

  The scripts concatenate ``embed([bos]+prefix)``, ``embed([boi])``, the time embedding (t = 1), the ``V``
  visual embeddings and ``embed([eoi]+suffix)``; placing the time/visual embeddings at
  ``modality_positions = [(len_a + 1, 1 + V)]`` (``len_a = 1 + len(prefix)``) reproduces that exactly.
  The omni mask instead gets ``[(len_a + 2, mask_block_len)]`` (the reference's off-by-one: the
  bidirectional block skips the time token and covers ``eoi``; for video it covers only the first
  ``mask_block_len`` = ``num_mmu_image_tokens + 1`` positions). ``reference_offset=False`` gives the
  consistent mask block (= the placement). Labels are all -100; generation appends after ``suffix``.
  """
  len_a = 1 + len(prefix_ids)
  block = num_visual_tokens + 1
  tokens = [sp.bos] + list(prefix_ids) + [sp.boi] + [sp.img_pad] * block + [sp.eoi] + list(suffix_ids)
  place = [(len_a + 1, block)]
  omni = [(len_a + 2, block if mask_block_len is None else mask_block_len)] if reference_offset else place
  return _finish(tokens, [IGNORE] * len(tokens), place, sp.pad, sp.img_pad, None, omni=omni)


def build_mmu_inference(tok: TextTokenizer, question: str, num_image_tokens: int, *,
                        system_prompt: str = DEFAULT_SYSTEM_PROMPT, reference_offset: bool = True) -> SeqSample:
  """``inference_mmu.py`` prompt: ``[bos] sys role_user [boi] time image [eoi] question role_assistant``.

  The question is tokenized without the ``\\n`` that training put after ``<image>`` (as the script does).
  """
  prefix = tok.encode(system_prompt) + tok.encode(ROLE_USER)
  suffix = tok.encode(question) + tok.encode(ROLE_ASSISTANT)
  return format_mmu_inference(tok.special, prefix, suffix, num_image_tokens, reference_offset=reference_offset)


def build_mmu_video_inference(tok: TextTokenizer, question: str, num_frames: int, *, tokens_per_frame: int = 196,
                              num_mmu_image_tokens: int = 729, system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                              reference_offset: bool = True) -> SeqSample:
  """``inference_mmu_vid.py`` prompt: as :func:`build_mmu_inference` with ``F * 196`` frame tokens.

  Frames are encoded as images and resized to 14x14 tokens each (``tokens_per_frame``), frame-major; one
  time token (t = 1). The reference mask block is ``[(len_a + 2, num_mmu_image_tokens + 1)]`` (730 at
  432 px) whatever the video length: only that window is bidirectional (spec §4.5).
  """
  prefix = tok.encode(system_prompt) + tok.encode(ROLE_USER)
  suffix = tok.encode(question) + tok.encode(ROLE_ASSISTANT)
  return format_mmu_inference(tok.special, prefix, suffix, num_frames * tokens_per_frame,
                              mask_block_len=num_mmu_image_tokens + 1, reference_offset=reference_offset)


# ----------------------------------------------------------------------------------------------------------
# Interleaved / mixed modality (§4.6, §10.4) and text-only (§4.7).


def vist_max_text_len(num_image_tokens: int, max_seq_len: int, flag_len: int, max_num_images: int = 4) -> int:
  """Per-caption budget ``(max_seq_len - len(flag) - (n+1+2) * max_num_images - 2) // max_num_images``."""
  return (max_seq_len - flag_len - (num_image_tokens + 1 + 2) * max_num_images - 2) // max_num_images


def format_interleaved(sp: SpecialIds, texts: Sequence[Sequence[int] | None], has_image: Sequence[bool],
                       num_image_tokens: int, max_seq_len: int, *, max_num_images: int = 4,
                       flag_len: int = 0) -> SeqSample:
  """``format_interleaved_sequence``: ``[bos] text_1 [boi][img_pad]*(n+1)[eoi] text_2 ... [eos] [pad]...``.

  ``texts[k]`` (or None) precedes image ``k`` (present when ``has_image[k]``). Labels are the ids
  themselves, ``img_pad`` placeholders, ``boi``/``eoi``, ``bos`` and ``eos`` included (the reference asks the
  model to predict ``img_pad`` inside blocks); the first ``flag_len`` text labels after ``bos`` are -100
  (the VIST flag). ``modality_positions`` is padded with (0, 0) to ``max_num_images`` rows.
  """
  block = num_image_tokens + 1
  tokens: list[int] = []
  positions: list[tuple[int, int]] = []
  cur_len = 1  # bos
  for text, image in zip(texts, has_image):
    if text is not None:
      tokens += list(text)
      cur_len += len(text)
    if image:
      tokens += [sp.boi] + [sp.img_pad] * block + [sp.eoi]
      positions.append((cur_len + 1, block))
      cur_len += block + 2
  tokens = [sp.bos] + tokens + [sp.eos]
  labels = list(tokens)
  labels[1:flag_len + 1] = [IGNORE] * len(labels[1:flag_len + 1])
  positions += [(0, 0)] * (max_num_images - len(positions))
  return _finish(tokens, labels, positions, sp.pad, sp.img_pad, max_seq_len)


def vist_window(num_images: int, max_num_images: int, rng: np.random.Generator | None) -> int:
  """Start of the image window of a long story: ``random.randint(0, len - max - 1)`` (the last window is
  never drawn, a reference quirk); 0 without ``rng`` or for short stories."""
  if num_images <= max_num_images or rng is None:
    return 0
  return int(rng.integers(0, num_images - max_num_images))  # inclusive upper bound len - max - 1


def build_interleaved(tok: TextTokenizer, captions: Sequence[str], num_image_tokens: int, max_seq_len: int, *,
                      max_num_images: int = 4, flag: str = VIST_FLAG,
                      rng: np.random.Generator | None = None) -> tuple[SeqSample, int, int]:
  """A VIST-style row from one caption per image (``VISTDataset``).

  Returns ``(sample, start, count)``: images ``start .. start+count-1`` of the story are used, in order
  (slots beyond ``count`` are (0, 0) and their image tensors are zeros in the reference).
  """
  start = vist_window(len(captions), max_num_images, rng)
  window = list(captions[start:start + max_num_images])
  flag_ids = tok.encode(flag)
  budget = vist_max_text_len(num_image_tokens, max_seq_len, len(flag_ids), max_num_images)
  texts = [tok.encode(c, max_length=budget) for c in window]
  texts[0] = flag_ids + texts[0]
  sample = format_interleaved(tok.special, texts, [True] * len(texts), num_image_tokens, max_seq_len,
                              max_num_images=max_num_images, flag_len=len(flag_ids))
  return sample, start, len(window)


def format_mixed_modal_gen(sp: SpecialIds, prompt_ids: Sequence[int], null_ids: Sequence[int],
                           num_image_tokens: int, multiple: int = 128) -> tuple[SeqSample, SeqSample]:
  """``prepare_mixed_modal_gen_input``: ``[bos] text [boi] [img_pad]*(n+1) [eoi]`` for prompt and null,
  both right-padded with ``[PAD]`` to the same multiple of ``multiple``; offset ``len(text) + 2``."""
  block = num_image_tokens + 1
  rows = [[sp.bos] + list(t) + [sp.boi] + [sp.img_pad] * block + [sp.eoi] for t in (prompt_ids, null_ids)]
  length = -(-max(len(r) for r in rows) // multiple) * multiple
  return tuple(_finish(r, [IGNORE] * len(r), [(len(t) + 2, block)], sp.pad, sp.img_pad, length)
               for r, t in zip(rows, (prompt_ids, null_ids)))


def format_text_only(sp: SpecialIds, text_ids: Sequence[int], max_seq_len: int | None, *, add_bos: bool = True,
                     add_eos: bool = True) -> SeqSample:
  """Text-only row ``[bos] text [eos] [pad]...`` with labels = ids (pads -100), no visual slots (``m = 0``).

  The reference has no text-only training format (``forward`` with ``image_latents=None`` runs the LLM
  causally on the given ids; ``lm_generate`` feeds the raw prompt ids); this follows the interleaved
  format's labelling. Note: batching such a row with visual rows pads it with (0, 0) slots, which the
  model's scatter quirk (spec §4.9) turns into a time embedding at position 0.
  """
  text = list(text_ids)
  if max_seq_len is not None:
    text = text[:max_seq_len - int(add_bos) - int(add_eos)]
  tokens = ([sp.bos] if add_bos else []) + text + ([sp.eos] if add_eos else [])
  return _finish(tokens, list(tokens), [], sp.pad, sp.img_pad, max_seq_len)


def build_text_only(tok: TextTokenizer, text: str, max_seq_len: int | None, **kw) -> SeqSample:
  return format_text_only(tok.special, tok.encode(text), max_seq_len, **kw)


# ----------------------------------------------------------------------------------------------------------
# Batching.


def collate(samples: Sequence[SeqSample], num_slots: int | None = None) -> dict[str, np.ndarray]:
  """Stack rows into ``tokens/labels/text_mask/image_mask [b, l]`` and ``modality_positions``/
  ``omni_positions [b, M, 2]`` padded with (0, 0) slots (``M = num_slots`` or the largest ``m``)."""
  if not samples:
    raise ValueError("empty batch")
  lengths = {len(s) for s in samples}
  if len(lengths) != 1:
    raise ValueError(f"rows of different lengths {sorted(lengths)}: format them with one max_seq_len")
  m = max(s.modality_positions.shape[0] for s in samples)
  num_slots = m if num_slots is None else num_slots
  if num_slots < m:
    raise ValueError(f"num_slots={num_slots} < {m} visual blocks in a row")

  def slots(key: str) -> np.ndarray:
    out = np.zeros((len(samples), num_slots, 2), np.int32)
    for i, s in enumerate(samples):
      p = getattr(s, key)
      out[i, :p.shape[0]] = p
    return out

  return dict(tokens=np.stack([s.tokens for s in samples]), labels=np.stack([s.labels for s in samples]),
              text_mask=np.stack([s.text_mask for s in samples]), image_mask=np.stack([s.image_mask for s in samples]),
              modality_positions=slots("modality_positions"), omni_positions=slots("omni_positions"))


def flow_loss_mask(image_mask: Int[np.ndarray, "b l"], modality_positions: Int[np.ndarray, "b m 2"],
                   is_understanding: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
  """Flow-loss token mask of spec §9.2: ``image_mask`` with every time-token position ``o`` zeroed and the
  rows of understanding samples zeroed (float32 ``[b, l]``). (0, 0) slots zero position 0, which is ``bos``."""
  mask = np.asarray(image_mask, np.float32).copy()
  b = mask.shape[0]
  rows = np.repeat(np.arange(b), modality_positions.shape[1])
  mask[rows, np.asarray(modality_positions)[..., 0].reshape(-1)] = 0.0
  if is_understanding is not None:
    mask[np.asarray(is_understanding, bool)] = 0.0
  return mask
