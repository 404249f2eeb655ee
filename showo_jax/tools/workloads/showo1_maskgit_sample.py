"""``showo1_maskgit_sample``: Show-o v1 MaskGIT text-to-image sampling on the official benchmark's small model
(Phi 4 layers × 256, 4 heads, vocab 2035 = 1000 + 10 + 1024 + 1, 256 image tokens, max_text_len 128 →
sequence 387), batch 2 with CFG (4 model rows), 16 steps, guidance 1.75, cosine schedule, temperature 1,
prompt lengths 12 / 30 (``bench/official_cpu.json``; MAGVIT decode excluded, as there).

Main timing: the jitted sampler with the text-prefix K/V computed once (``reuse_prefix=True``, exact);
sub-workload ``no_prefix_reuse`` re-runs the full 387-token rows each step like the reference.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from showo_jax import maskgit
from showo_jax.data.prompting_v1 import UniversalPrompting
from showo_jax.models.phi import PhiConfig
from showo_jax.models.showo import Showo, ShowoConfig
from showo_jax.tools import bench
from showo_jax.tools.bench import Workload


TIMESTEPS, GUIDANCE, PROMPT_LENS, MAX_TEXT_LEN = 16, 1.75, (12, 30), 128


def bench_config() -> ShowoConfig:
  phi = PhiConfig(vocab_size=2035, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=4, partial_rotary_factor=0.5,
                  max_position_embeddings=2048, attention_impl=bench.ATTENTION["impl"])
  return ShowoConfig(phi=phi, llm_vocab_size=1000, codebook_size=1024, num_vq_tokens=256, bos_token_id=1,
                     eos_token_id=2)


def build(name: str = "showo1_maskgit_sample") -> Workload:
  cfg = bench_config()
  model = Showo(cfg, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  prompting = UniversalPrompting(cfg.token_ids, MAX_TEXT_LEN)
  texts = [list(rng.integers(3, cfg.llm_vocab_size, n)) for n in PROMPT_LENS]
  image = np.full((len(texts), cfg.num_vq_tokens), cfg.mask_token_id, np.int64)
  cond = prompting.t2i_gen_prompt(texts, image)
  uncond = prompting.t2i_gen_prompt([[]] * len(texts), image)
  key = jax.random.key(0)

  def run(reuse):
    return lambda: jax.block_until_ready(maskgit.t2i_generate(
        model, cond, uncond, key=key, timesteps=TIMESTEPS, guidance_scale=GUIDANCE, reuse_prefix=reuse))

  shapes = {"batch": len(texts), "cfg_rows": 2 * len(texts), "seq_len": int(cond.shape[1]),
            "timesteps": TIMESTEPS, "guidance_scale": GUIDANCE, "prompt_lens": list(PROMPT_LENS),
            "num_vq_tokens": cfg.num_vq_tokens, "vocab_size": cfg.vocab_size, "reuse_prefix": True}
  return Workload(run=run(True), shapes=shapes,
                  sub={"no_prefix_reuse": Workload(run=run(False), shapes={**shapes, "reuse_prefix": False})})
