"""``showo2_t2i_sample``: Show-o2 text-to-image sampling of the official benchmark (VAE decode excluded).

Same model and batch as ``shared/bench/official_cpu.json`` → ``showo2_t2i_sample``: the small Show-o2 of
``models.showo2`` (:func:`showo2_forward.bench_config`), 2 prompts of 20 and 45 (stand-in) tokens laid out by
``prepare_gen_input`` (``sequence.build``: ``[bos] text [boi] [img_pad]×65 [eoi] [eos] [pad]…``,
``max_text_len`` 187, 256 tokens) plus their 2 null rows, 16×16×16 latents, Euler, 20 grid points (19 model
evaluations), CFG 5, shift 3, initial noise rounded to bf16 as ``inference_t2i.py`` does.

The main timing uses prefix reuse (the sampler default); the ``sub`` workload ``no_prefix_reuse`` runs the
reference computation (4 rows × 256 tokens per step) so the gain is reported separately.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from showo_jax.data import sequence
from showo_jax.models.showo2 import Showo2
from showo_jax.sampling import ode
from showo_jax.text.qwen_offline import SpecialIds
from showo_jax.tools.bench import Workload
from showo_jax.tools.workloads.showo2_forward import bench_config

PROMPT_LENS = (20, 45)
MAX_TEXT_LEN, SEQ_LEN, N_IMG = 187, 256, 64
STEPS, GUIDANCE, SHIFT = 20, 5.0, 3.0
# Stand-in special ids at the top of the 2048-row vocabulary (the official benchmark's stand-in tokenizer).
SPECIAL = SpecialIds(bos=2038, eos=2039, boi=2040, eoi=2041, pad=2042, img_pad=2043, vid_pad=2044, img=2045,
                     bov=2046, eov=2047)


def branches(seed: int = 0) -> tuple[ode.Branch, ode.Branch]:
  rng = np.random.default_rng(seed)
  cond = [sequence.format_t2i(SPECIAL, rng.integers(0, 2000, n).tolist(), N_IMG, SEQ_LEN, max_text_len=MAX_TEXT_LEN)
          for n in PROMPT_LENS]
  null = [sequence.format_t2i(SPECIAL, [], N_IMG, SEQ_LEN, max_text_len=MAX_TEXT_LEN) for _ in PROMPT_LENS]
  return ode.Branch.from_batch(sequence.collate(cond)), ode.Branch.from_batch(sequence.collate(null))


def build(name: str = "showo2_t2i_sample") -> Workload:
  model = Showo2(bench_config(), rngs=nnx.Rngs(0))
  cond, uncond = branches()
  noise = ode.initial_noise(jax.random.key(1), (len(PROMPT_LENS), 16, 16, 16), round_to_bf16=True)

  def make(reuse: bool):
    def run():
      out = ode.sample(model, noise, cond, uncond, num_steps=STEPS, guidance_scale=GUIDANCE, shift=SHIFT,
                       prefix_reuse=reuse)
      return jax.block_until_ready(out.latents)
    return run

  shapes = {"batch": len(PROMPT_LENS), "cfg_rows": 2 * len(PROMPT_LENS), "prompt_lens": list(PROMPT_LENS),
            "seq_len": SEQ_LEN, "max_text_len": MAX_TEXT_LEN, "latents": [len(PROMPT_LENS), 16, 16, 16],
            "num_steps": STEPS, "model_evals": STEPS - 1, "guidance_scale": GUIDANCE, "time_shifting_factor": SHIFT,
            "prefix_reuse": True}
  sub = {"no_prefix_reuse": Workload(run=make(False), shapes={**shapes, "prefix_reuse": False})}
  return Workload(run=make(True), shapes=shapes, sub=sub)

