"""``qwen2_forward``: jitted forward of the Qwen2 backbone of the official benchmark's small Show-o2
model (4 layers × 256, GQA 4/2, vocab 2048, tied), batch 4 × 256 tokens, omni mask of 2 T2I + 2 MMU rows."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from showo_jax import masks
from showo_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM
from showo_jax.tools.bench import Workload


def build(name: str = "qwen2_forward") -> Workload:
  cfg = Qwen2Config(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
  model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))
  b, l = 4, 256
  ids = jax.random.randint(jax.random.key(0), (b, l), 0, cfg.vocab_size)
  # rows: T2I with text 60/120 then a 65-slot image block; MMU with the block at offset 2.
  mp = jnp.asarray([[[62, 65]], [[122, 65]], [[2, 65]], [[2, 65]]])
  fwd = jax.jit(lambda m, x, p: m(x, mask=masks.omni(p, l)).logits)
  return Workload(run=lambda: jax.block_until_ready(fwd(model, ids, mp)),
                  shapes={"batch": b, "seq_len": l, "layers": 4, "hidden": 256, "vocab": 2048})
