"""Show-o2 text generation (multimodal understanding, text-only and mixed-modality turns) with a KV cache.

References (``showlab/Show-o@45a5a2d``, spec ``showo2.md`` §4.4, §4.5, §5, §10.3):
``show-o2/inference_mmu.py`` / ``inference_mmu_vid.py`` (hand-assembled prompts) and
``models/modeling_showo2_qwen2_5.py::{mmu_generate, lm_generate, mm_generate}``.

The reference re-runs the whole sequence for every new token and grows the mask by "new row = previous last
row + itself"; a new token is therefore a plain causal query, and prefill + KV-cache decoding is exactly
equivalent (tested against full recomputation).

* Prompts are :class:`~showo_jax.data.sequence.SeqSample` rows (``sequence.build_mmu_inference`` & co.): the
  time embedding (``t``, 1 for understanding) goes to each block's ``offset`` and the visual embeddings after
  it; the omni mask uses ``omni_positions``, which carry the reference's **off-by-one** of the MMU scripts
  (``reference_offset=True`` in the builders: the bidirectional block starts after the time token and covers
  ``eoi``; for video only the first ``num_mmu_image_tokens + 1`` positions). ``reference_offset=False`` gives
  the layout the model was trained with.
* A batch of prompts of different lengths is **left-padded**: each row keeps its own RoPE positions
  (``arange − pad``) and masks out its pads (``k_start = pad``), so every row computes what it would alone.
* Sampling (:class:`Sampling`): greedy (``temperature = 0``; the reference's ``top_k = 1`` MMU decoding is
  greedy up to exact logit ties), or temperature / top-k (ties with the k-th logit kept, as
  ``logits < v[-1] → −inf``) / top-p (nucleus, the smallest set whose mass exceeds ``p``; the first token is
  always kept). The mixed-modality script samples with temperature 1 and neither filter.
* Stops: a row finishes at the first token in ``stop_tokens`` (kept in the output; later slots hold
  ``pad_id``). Decoding is one jitted ``lax.while_loop`` over a per-token step; it ends early when every row
  has stopped.
* Images are encoded with the Wan VAE (``vae.encode_image``; the official scripts draw a posterior sample,
  ``posterior="sample"``), videos frame by frame as images, their ``[F, g, g, D]`` fused embeddings resized
  bilinearly (``align_corners=False``, no antialias) to ``14 × 14`` per frame (spec §4.5).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int, PRNGKeyArray

from showo_jax import masks as masks_lib
from showo_jax.data import sequence, transforms
from showo_jax.models.qwen2 import KVCache
from showo_jax.models.showo2 import Showo2


# ----------------------------------------------------------------------------------------------- sampling
@dataclasses.dataclass(frozen=True)
class Sampling:
  """Next-token rule: ``temperature == 0`` is greedy; otherwise categorical after the optional filters."""
  temperature: float = 0.0
  top_k: int | None = None
  top_p: float | None = None

  def __post_init__(self):
    if self.temperature < 0:
      raise ValueError("temperature must be >= 0")
    if self.top_k is not None and self.top_k < 1:
      raise ValueError("top_k must be >= 1")
    if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
      raise ValueError("top_p must be in (0, 1]")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0 or self.top_k == 1

  @classmethod
  def multinomial(cls, temperature: float = 1.0) -> "Sampling":
    """``lm_generate`` / ``mm_generate`` as the mixed-modality script calls them."""
    return cls(temperature=temperature)


def filter_logits(logits: Float[Array, "b v"], sampling: Sampling) -> Float[Array, "b v"]:
  """Temperature, then top-k, then top-p; removed entries become ``-inf``."""
  x = logits.astype(jnp.float32) / sampling.temperature
  if sampling.top_k is not None:
    k = min(sampling.top_k, x.shape[-1])
    kth = jax.lax.top_k(x, k)[0][..., -1:]
    x = jnp.where(x < kth, -jnp.inf, x)
  if sampling.top_p is not None and sampling.top_p < 1.0:
    order = jnp.argsort(-x, axis=-1)
    sorted_x = jnp.take_along_axis(x, order, axis=-1)
    cum = jnp.cumsum(jax.nn.softmax(sorted_x, axis=-1), axis=-1)
    remove = cum > sampling.top_p
    remove = jnp.concatenate([jnp.zeros_like(remove[..., :1]), remove[..., :-1]], axis=-1)  # keep the crossing one
    inv = jnp.argsort(order, axis=-1)
    x = jnp.where(jnp.take_along_axis(remove, inv, axis=-1), -jnp.inf, x)
  return x


def sample_token(key: PRNGKeyArray, logits: Float[Array, "b v"], sampling: Sampling) -> Int[Array, "b"]:
  if sampling.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jax.random.categorical(key, filter_logits(logits, sampling), axis=-1).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------- prompts
@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Prompt:
  """A left-padded batch of embedded prompts (absolute mask ranges, per-row RoPE positions)."""
  embeds: Any        # [b, L, D]
  mask: Any          # MaskSpec with [b, L] ranges
  positions: Any     # [b, L]
  pad: Any           # [b] left-pad count


@dataclasses.dataclass(frozen=True)
class _Layout:
  tokens: Any             # [b, L]
  place: Any              # [b, M, 2] shifted placement (dummy slots at offset -1)
  omni: Any               # [b, M, 2] shifted mask blocks (dummy slots (0, 0))
  pad: Any                # [b]


def left_pad(rows: Sequence[sequence.SeqSample], pad_id: int, num_slots: int | None = None,
             bucket: int = 1) -> _Layout:
  """Right-align the rows (host side); slot positions are shifted by each row's pad count.

  ``bucket`` rounds the padded length up to a multiple (fewer distinct shapes to compile; exact, since
  pads are masked out).
  """
  if not rows:
    raise ValueError("no prompts")
  length = max(len(r) for r in rows)
  length = -(-length // bucket) * bucket
  m = max([r.modality_positions.shape[0] for r in rows] + [num_slots or 0, 1])   # >= 1 dummy slot
  b = len(rows)
  tokens = np.full((b, length), pad_id, np.int32)
  place = np.zeros((b, m, 2), np.int32)
  place[..., 0] = -1
  omni = np.zeros((b, m, 2), np.int32)
  pad = np.zeros((b,), np.int32)
  for i, r in enumerate(rows):
    p = length - len(r)
    pad[i] = p
    tokens[i, p:] = r.tokens
    for j, ((o, ln), (oo, ol)) in enumerate(zip(r.modality_positions, r.omni_positions)):
      if ln > 0:   # (0, 0) slots would write a time embedding at position 0 (spec §4.9): skip them here
        place[i, j] = (o + p, ln)
      if ol > 0:
        omni[i, j] = (oo + p, ol)
  return _Layout(tokens, place, omni, pad)


def _prompt_from_layout(model: Showo2, layout: _Layout, image_embeds, time_proj) -> Prompt:
  tokens = jnp.asarray(layout.tokens)
  b, length = tokens.shape
  embeds = model.showo.embed(tokens)
  if image_embeds is not None:
    m = layout.place.shape[1]
    img = image_embeds.reshape((b * m,) + image_embeds.shape[2:])
    tp = time_proj.reshape(b * m, -1)
    embeds = model.splice(embeds, img, tp, jnp.asarray(layout.place))
  pad = jnp.asarray(layout.pad)
  spec = masks_lib.omni(jnp.asarray(layout.omni), length)
  q = jnp.arange(length, dtype=jnp.int32)[None, :]
  k_start = jnp.where(q >= pad[:, None], pad[:, None], 0)   # pad queries only see pads (finite, never read)
  positions = jnp.maximum(q - pad[:, None], 0)
  return Prompt(embeds, masks_lib.MaskSpec(k_start, spec.k_end), positions, pad)


def build_prompt(model: Showo2, rows: Sequence[sequence.SeqSample], pad_id: int,
                 image_embeds: Float[Array, "b m n d"] | None = None,
                 time_proj: Float[Array, "b m d"] | None = None, *, bucket: int = 1) -> Prompt:
  """Embed and left-pad ``rows``; slot ``j`` of row ``i`` takes ``image_embeds[i, j]`` / ``time_proj[i, j]``."""
  num_slots = None if image_embeds is None else image_embeds.shape[1]
  layout = left_pad(rows, pad_id, num_slots, bucket)
  return _prompt_compiled(model, *_layout_arrays(layout), image_embeds, time_proj)


def build_prompt_from_latents(model: Showo2, rows: Sequence[sequence.SeqSample], pad_id: int,
                              latents: Float[Array, "b m *s c"] | None, t: float = 1.0, *,
                              bucket: int = 1) -> Prompt:
  """:func:`build_prompt` with the visual embeddings computed from latents ``[b, M, *spatial, C]`` at time
  ``t`` (1.0 for understanding; the mixed-modality script uses 0.0 for history images), in one jitted call."""
  if latents is None:
    return build_prompt(model, rows, pad_id, bucket=bucket)
  layout = left_pad(rows, pad_id, latents.shape[1], bucket)
  return _prompt_latents_compiled(model, *_layout_arrays(layout), jnp.asarray(latents), jnp.float32(t))


def _layout_arrays(layout: _Layout):
  return (jnp.asarray(layout.tokens), jnp.asarray(layout.place), jnp.asarray(layout.omni), jnp.asarray(layout.pad))


@nnx.jit
def _prompt_compiled(model, tokens, place, omni, pad, image_embeds, time_proj):
  return _prompt_from_layout(model, _Layout(tokens, place, omni, pad), image_embeds, time_proj)


@nnx.jit
def _prompt_latents_compiled(model, tokens, place, omni, pad, latents, t):
  b, m = latents.shape[:2]
  emb, tp = visual_inputs(model, latents.reshape((b * m,) + latents.shape[2:]), t)
  return _prompt_from_layout(model, _Layout(tokens, place, omni, pad), emb.reshape((b, m) + emb.shape[1:]),
                             tp.reshape(b, m, -1))


def visual_inputs(model: Showo2, latents: Float[Array, "n *s c"],
                  t: float | Float[Array, ""] | Float[Array, "n"] = 1.0
                  ) -> tuple[Float[Array, "n li d"], Float[Array, "n d"]]:
  """Fused visual embeddings and the projected time embedding of ``t`` (1.0 = clean, understanding)."""
  t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (latents.shape[0],))
  image_embeds, time_embeds = model.visual_embeds(latents, t)
  return image_embeds, model.project_time(time_embeds)


def video_inputs(model: Showo2, frame_latents: Float[Array, "f h w c"], tokens_per_side: int = 14
                 ) -> tuple[Float[Array, "1 li d"], Float[Array, "1 d"]]:
  """``inference_mmu_vid.py``: frames embedded as images (t = 1), each ``g × g`` grid bilinearly resized to
  ``tokens_per_side²`` tokens (``F.interpolate(mode='bilinear', align_corners=False)``, no antialias),
  concatenated frame-major; one time token."""
  emb, tp = visual_inputs(model, frame_latents, 1.0)
  f, n, d = emb.shape
  g = int(round(n ** 0.5))
  if g * g != n:
    raise ValueError(f"video frames must give a square token grid, got {n} tokens")
  grid = emb.reshape(f, g, g, d)
  out = jax.image.resize(grid.astype(jnp.float32), (f, tokens_per_side, tokens_per_side, d), "bilinear",
                         antialias=False).astype(emb.dtype)
  return out.reshape(1, f * tokens_per_side * tokens_per_side, d), tp[:1]


# ----------------------------------------------------------------------------------------------- decoding
@dataclasses.dataclass
class Generation:
  tokens: Any                   # [b, max_new_tokens] int32 numpy (pad_id after a row stops)
  lengths: Any                  # [b] generated tokens incl. the stop token
  step_logits: Any = None       # [b, max_new_tokens, V] logits that produced each token (when asked)
  prefill_logits: Any = None    # [b, L, V] logits of the whole prompt (when asked)

  def row(self, i: int) -> list[int]:
    return [int(x) for x in self.tokens[i, :self.lengths[i]]]


def decode_step(model: Showo2, cache: KVCache, tokens: Int[Array, "b"], pad: Int[Array, "b"]
                ) -> tuple[Float[Array, "b v"], KVCache]:
  """One new causal query per row at absolute index ``cache.index`` → next-token logits and the cache."""
  b = tokens.shape[0]
  index = cache.index
  x = model.showo.embed(tokens[:, None])
  mask = masks_lib.MaskSpec(pad[:, None], jnp.broadcast_to(index + 1, (b, 1)).astype(jnp.int32))
  positions = (index - pad)[:, None]
  out = model.showo(inputs_embeds=x, mask=mask, positions=positions, cache=cache)
  return out.logits[:, -1], out.cache


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "stop_tokens", "sampling", "pad_id",
                                             "return_logits", "return_prefill"))
def _generate_jit(graphdef, state, prompt: Prompt, key, *, max_new_tokens, stop_tokens, sampling, pad_id,
                  return_logits, return_prefill):
  model = nnx.merge(graphdef, state)
  b, length, _ = prompt.embeds.shape
  cache = KVCache.init(model.cfg.llm, b, length + max_new_tokens)
  out = model.showo(inputs_embeds=prompt.embeds, mask=prompt.mask, positions=prompt.positions, cache=cache,
                    compute_logits=False)
  prefill = model.showo.logits(out.last_hidden_state) if return_prefill else None
  logits0 = model.showo.logits(out.last_hidden_state[:, -1:])[:, 0]
  stops = jnp.asarray(stop_tokens if stop_tokens else (-1,), jnp.int32)

  def is_stop(tok):
    return jnp.any(tok[:, None] == stops[None, :], axis=-1)

  tok = sample_token(jax.random.fold_in(key, 0), logits0, sampling)
  tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(tok)
  logits_buf = None
  if return_logits:
    logits_buf = jnp.zeros((b, max_new_tokens, logits0.shape[-1]), logits0.dtype).at[:, 0].set(logits0)
  done = is_stop(tok)
  lengths = jnp.ones((b,), jnp.int32)

  def cond(st):
    i, _, _, done, *_ = st
    return (i < max_new_tokens) & ~jnp.all(done)

  def body(st):
    i, tok, cache, done, tokens, lengths, buf = st
    logits, cache = decode_step(model, cache, tok, prompt.pad)
    nxt = sample_token(jax.random.fold_in(key, i), logits, sampling)
    nxt = jnp.where(done, pad_id, nxt)
    tokens = tokens.at[:, i].set(nxt)
    if buf is not None:
      buf = buf.at[:, i].set(logits)
    lengths = lengths + (~done).astype(jnp.int32)
    done = done | is_stop(nxt)
    return i + 1, nxt, cache, done, tokens, lengths, buf

  st = (jnp.int32(1), tok, out.cache, done, tokens, lengths, logits_buf)
  _, _, _, _, tokens, lengths, logits_buf = jax.lax.while_loop(cond, body, st)
  return tokens, lengths, logits_buf, prefill


def generate(model: Showo2, prompt: Prompt, *, max_new_tokens: int, stop_tokens: Sequence[int] = (),
             sampling: Sampling = Sampling(), key: PRNGKeyArray | None = None, pad_id: int = 0,
             return_logits: bool = False, return_prefill_logits: bool = False) -> Generation:
  """Prefill the prompt into a KV cache, then decode up to ``max_new_tokens`` per row (jitted)."""
  if max_new_tokens < 1:
    raise ValueError("max_new_tokens must be >= 1")
  if key is None:
    if not sampling.greedy:
      raise ValueError("sampling (temperature > 0) needs a PRNG key")
    key = jax.random.key(0)
  graphdef, state = nnx.split(model)
  tokens, lengths, logits, prefill = _generate_jit(
      graphdef, state, prompt, key, max_new_tokens=int(max_new_tokens),
      stop_tokens=tuple(int(s) for s in stop_tokens), sampling=sampling, pad_id=int(pad_id),
      return_logits=bool(return_logits), return_prefill=bool(return_prefill_logits))
  return Generation(np.asarray(tokens), np.asarray(lengths), logits, prefill)


# ----------------------------------------------------------------------------------------------- front ends
def vae_downsample(vae) -> int:
  return 2 ** (len(vae.cfg.dim_mult) - 1)


def default_resolution(model: Showo2, vae) -> int:
  """Pixels of the configured token grid (432 for the released 27×27 models)."""
  return model.cfg.image_latent_height * model.cfg.patch_size * vae_downsample(vae)


def encode_images(vae, images: Float[Array, "b h w 3"] | Float[np.ndarray, "b h w 3"], *, posterior: str = "sample",
                  key: PRNGKeyArray | None = None) -> Float[Array, "b hl wl c"]:
  """Images in [-1, 1] → normalised latents (``posterior='sample'`` as the official scripts, or ``'mean'``)."""
  if posterior not in ("sample", "mean"):
    raise ValueError("posterior must be 'sample' or 'mean'")
  if posterior == "sample" and key is None:
    raise ValueError("posterior='sample' needs a PRNG key")
  return _encode_jit(vae, jnp.asarray(images, jnp.float32), key if key is not None else jax.random.key(0),
                     deterministic=posterior == "mean")


@nnx.jit(static_argnames=("deterministic",))
def _encode_jit(vae, images, key, deterministic):
  return vae.encode_image(images, deterministic=deterministic, key=key)


def preprocess_images(images: Sequence[np.ndarray], resolution: int, *, pad: bool = False) -> np.ndarray:
  """uint8 images → ``[b, r, r, 3]`` in [-1, 1]: ``image_transform`` (resize + center crop) or, with
  ``pad``, ``resize_and_pad_image`` (LLaVA / video understanding)."""
  fn = transforms.resize_and_pad if pad else transforms.resize_center_crop
  return np.stack([transforms.to_unit_range(fn(transforms.decode_image(im), resolution)) for im in images])


def answer_images(model: Showo2, vae, tokenizer, images: Sequence[np.ndarray], questions: Sequence[str], *,
                  key: PRNGKeyArray, resolution: int | None = None, posterior: str = "sample",
                  max_new_tokens: int = 300, sampling: Sampling = Sampling(), reference_offset: bool = True,
                  system_prompt: str = sequence.DEFAULT_SYSTEM_PROMPT) -> list[str]:
  """``inference_mmu.py`` for a batch of (image, question) pairs → decoded answers (special tokens skipped)."""
  if len(images) != len(questions):
    raise ValueError(f"{len(images)} images for {len(questions)} questions")
  resolution = resolution or default_resolution(model, vae)
  k_vae, k_gen = jax.random.split(key)
  lat = encode_images(vae, preprocess_images(images, resolution), posterior=posterior, key=k_vae)
  emb, tp = _visual_jit(model, lat)
  n = emb.shape[1]
  rows = [sequence.build_mmu_inference(tokenizer, q, n, system_prompt=system_prompt,
                                       reference_offset=reference_offset) for q in questions]
  sp = tokenizer.special
  prompt = build_prompt(model, rows, sp.pad, emb[:, None], tp[:, None], bucket=16)
  gen = generate(model, prompt, max_new_tokens=max_new_tokens, stop_tokens=(sp.eos,), sampling=sampling,
                 key=k_gen, pad_id=sp.pad)
  return [tokenizer.decode(gen.row(i), skip_special_tokens=True) for i in range(len(rows))]


def answer_video(model: Showo2, vae, tokenizer, frames: Sequence[np.ndarray], question: str, *,
                 key: PRNGKeyArray, resolution: int | None = None, posterior: str = "sample",
                 tokens_per_side: int = 14, max_new_tokens: int = 300, sampling: Sampling = Sampling(),
                 reference_offset: bool = True, system_prompt: str = sequence.DEFAULT_SYSTEM_PROMPT) -> str:
  """``inference_mmu_vid.py``: already-sampled frames (uint8), each resized-and-padded and VAE-encoded as an
  image; ``F·tokens_per_side²`` visual tokens; only ``g² + 1`` positions bidirectional (reference mask)."""
  resolution = resolution or default_resolution(model, vae)
  k_vae, k_gen = jax.random.split(key)
  lat = encode_images(vae, preprocess_images(frames, resolution, pad=True), posterior=posterior, key=k_vae)
  g2 = (lat.shape[1] // model.cfg.patch_size) * (lat.shape[2] // model.cfg.patch_size)
  emb, tp = _video_jit(model, lat, tokens_per_side)
  row = sequence.build_mmu_video_inference(tokenizer, question, len(frames), tokens_per_frame=tokens_per_side ** 2,
                                           num_mmu_image_tokens=g2, system_prompt=system_prompt,
                                           reference_offset=reference_offset)
  sp = tokenizer.special
  prompt = build_prompt(model, [row], sp.pad, emb[:, None], tp[:, None], bucket=16)
  gen = generate(model, prompt, max_new_tokens=max_new_tokens, stop_tokens=(sp.eos,), sampling=sampling,
                 key=k_gen, pad_id=sp.pad)
  return tokenizer.decode(gen.row(0), skip_special_tokens=True)


@nnx.jit
def _visual_jit(model, latents):
  return visual_inputs(model, latents, 1.0)


@nnx.jit(static_argnames=("tokens_per_side",))
def _video_jit(model, latents, tokens_per_side):
  return video_inputs(model, latents, tokens_per_side)
