"""Show-o2 mixed-modality generation: text → image → text … in one growing sequence (spec ``showo2.md`` §10.4).

Reference: ``showlab/Show-o@45a5a2d:show-o2/inference_mixed_modality.py`` with
``models/misc.py::prepare_mixed_modal_gen_input`` and ``Showo2Qwen2_5.{lm_generate, mm_generate, t2i_generate}``.

Per conversation (``batch_size = 1`` as upstream), ``rounds`` times (4 upstream):

1. **Text.** The history (``<|im_start|>`` prepended when missing) is continued by sampling (temperature 1,
   no top-k/top-p: :meth:`Sampling.multinomial`) until ``<|im_end|>`` or ``<|vision_start|>``, at most
   ``max_new_tokens`` (200). Without images this is ``lm_generate`` (plain causal LM); with images it is
   ``mm_generate``: the history images are spliced back with their stored latents and time
   ``und_history_t`` — **0.0 in the reference** (training fed clean images with ``t = 1``; set 1.0 for the
   consistent variant). Decoding uses :mod:`showo_jax.sampling.text` (KV cache ≡ the reference's full
   re-forward per token).
2. **Image**, when the history now ends with ``<|vision_start|>``: the conditional row is
   ``[bos] history [boi] [img_pad]×(n+1) [eoi]`` (``sequence.format_mixed_modal_gen``, padded to a multiple of
   128), the previous images are context blocks at ``t = gen_history_t`` (1.0: ``t2i_generate`` forces it)
   whose velocity is zeroed (``only_denoise_last_image``), and the null row is ``[bos] [boi] block``. Guidance
   is ``guidance_scale`` in round 0 and **5.0 in later rounds** (the script hard-codes it;
   ``later_guidance_scale=None`` keeps ``guidance_scale``). The ODE is :func:`showo_jax.sampling.ode.sample`
   (prefix reuse: the history — text and earlier images — is cached once per image).

Equivalences and deviations (documented):

* The reference's null row for the 2nd+ image is a string-mangled history whose ``m+1`` slots all sit at
  ``(2, n+1)`` with the noise repeated; the last slot wins every write, so the row is exactly
  ``[bos] [boi] <current noisy block>`` followed by causal tokens that cannot influence the block. We build that
  row directly.
* The history is kept as token ids. Upstream decodes it to a string and re-tokenizes it each round, which can
  re-segment generated text differently (BPE is not idempotent on arbitrary id sequences); the special
  tokens and image blocks are identical either way.
* Images are generated one conversation at a time (upstream's ``batch_size = 1``).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from showo_jax.data import sequence
from showo_jax.models.showo2 import Showo2
from showo_jax.sampling import ode, text


@dataclasses.dataclass(frozen=True)
class MixedConfig:
  rounds: int = 4
  max_new_tokens: int = 200
  num_steps: int = 50
  guidance_scale: float = 5.0
  later_guidance_scale: float | None = 5.0   # reference: hard-coded 5.0 after round 0; None = guidance_scale
  shift: float | None = 3.0
  und_history_t: float = 0.0                 # reference mm_generate: t = 0 for history images (training: 1)
  gen_history_t: float = 1.0                 # reference t2i_generate: history images at t = 1
  sampling: text.Sampling = text.Sampling.multinomial(1.0)
  pad_multiple: int = 128
  prefix_reuse: bool = True
  round_noise_bf16: bool = True
  latent_hw: tuple[int, int] | None = None   # default: the model's configured grid × patch size
  length_bucket: int = 64                    # text prompts are left-padded to a multiple (fewer compilations)

  def guidance_for(self, round_index: int) -> float:
    if round_index == 0 or self.later_guidance_scale is None:
      return self.guidance_scale
    return self.later_guidance_scale


@dataclasses.dataclass
class MixedResult:
  tokens: list                  # final history ids
  responses: list               # per round: the generated text (special tokens kept, as upstream)
  latents: list                 # generated image latents, each [H, W, C] float32
  positions: list               # (offset, length) of each image block in ``tokens``
  segments: list                # ("text", str) / ("image", index) in order


def _row(tokens: list[int], slots: list[tuple[int, int]], sp) -> sequence.SeqSample:
  tok = np.asarray(tokens, np.int32)
  pos = np.asarray(slots, np.int32).reshape(-1, 2)
  zeros = np.zeros_like(tok)
  return sequence.SeqSample(tok, np.full_like(tok, sequence.IGNORE), pos, pos, zeros, zeros)


def generate_mixed(model: Showo2, tokenizer, prompt: str, *, key: PRNGKeyArray,
                   cfg: MixedConfig = MixedConfig(), progress=None) -> MixedResult:
  """Run the rounds of ``inference_mixed_modality.py`` for one prompt (see the module docstring)."""
  sp = tokenizer.special
  mcfg = model.cfg
  h, w = cfg.latent_hw or (mcfg.image_latent_height * mcfg.patch_size, mcfg.image_latent_width * mcfg.patch_size)
  n = (h // mcfg.patch_size) * (w // mcfg.patch_size)
  hist = tokenizer.encode(prompt)
  if not hist or hist[0] != sp.bos:
    hist = [sp.bos] + hist
  latents: list = []
  slots: list[tuple[int, int]] = []
  responses: list[str] = []
  segments: list = []
  for r in range(cfg.rounds):
    k_text, k_img = jax.random.split(jax.random.fold_in(key, r))
    row = _row(hist, slots, sp)
    hist_lat = jnp.stack(latents)[None] if slots else None
    prompt_b = text.build_prompt_from_latents(model, [row], sp.pad, hist_lat, cfg.und_history_t,
                                              bucket=cfg.length_bucket)
    gen = text.generate(model, prompt_b, max_new_tokens=cfg.max_new_tokens, stop_tokens=(sp.eos, sp.boi),
                        sampling=cfg.sampling, key=k_text, pad_id=sp.pad)
    resp = gen.row(0)
    hist = hist + resp
    responses.append(tokenizer.decode(resp, skip_special_tokens=False))
    segments.append(("text", responses[-1]))
    if progress is not None:
      progress(f"round {r}: {len(resp)} text tokens")
    if hist[-1] != sp.boi:
      continue
    cond_s, null_s = sequence.format_mixed_modal_gen(sp, hist[1:-1], [], n, multiple=cfg.pad_multiple)
    target = tuple(int(v) for v in cond_s.modality_positions[0])
    ctx = {}
    if slots:
      ctx = dict(context_positions=np.asarray(slots, np.int32)[None], context_latents=jnp.stack(latents)[None],
                 context_t=cfg.gen_history_t)
    cond = ode.Branch(tokens=cond_s.tokens[None], target=np.asarray([target]), **ctx)
    uncond = ode.Branch(tokens=null_s.tokens[None], target=null_s.modality_positions[:1])
    noise = ode.initial_noise(k_img, (1, h, w, mcfg.image_latent_dim), round_to_bf16=cfg.round_noise_bf16)
    out = ode.sample(model, noise, cond, uncond if cfg.guidance_scale > 0 else None, num_steps=cfg.num_steps,
                     guidance_scale=cfg.guidance_for(r), shift=cfg.shift, prefix_reuse=cfg.prefix_reuse)
    latents.append(out.latents[0])
    slots.append(target)
    hist = [int(t) for t in cond_s.tokens[:target[0] + target[1] + 1]]   # ... [img_pad]×(n+1) [eoi], no [PAD]
    segments.append(("image", len(latents) - 1))
    if progress is not None:
      progress(f"round {r}: image {len(latents)}")
  return MixedResult(tokens=hist, responses=responses, latents=latents, positions=slots, segments=segments)
