"""``showo2_forward``: jitted full Show-o2 forward (logits + velocity) of the official benchmark's small model.

Model = ``shared/bench/official_cpu.json`` → ``models.showo2``: Qwen2 4 × 256 (GQA 4/2, MLP 688, vocab 2048,
tied), SigLIP semantic layers 128-d (3 → 2 kept layers, 2 heads, MLP 512, 8×8 position table), flow head 256-d
(4 / 2 heads × 64, MLP 1024, 2 layers), 16×16×16 latents → 64 patches + 1 time slot. Batch = the
``showo2_train_step`` layout: 4 rows × 256 tokens, rows T2I (text 60, 120) then MMU (blocks at offset 2), one
65-slot image block per row, omni mask. Sequences follow spec §4.1 / §4.2; token ids are random.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax.models.flow_head import FlowHeadConfig
from showo_jax.models.qwen2 import Qwen2Config
from showo_jax.models.showo2 import Showo2, Showo2Config, with_policy
from showo_jax.models.siglip import SiglipConfig
from showo_jax.tools import bench
from showo_jax.tools.bench import Workload

BATCH, SEQ_LEN, TEXT_LENS, ROWS = 4, 256, (60, 120, 100, 180), ("t2i", "t2i", "mmu", "mmu")
PAD = 2042


def bench_config(**policy) -> Showo2Config:
  """The official benchmark's small Show-o2 (7,059,776 parameters, the tied table counted once)."""
  llm = Qwen2Config(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
  sem = SiglipConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                     num_positions=64)
  head = FlowHeadConfig(hidden_size=256, head_dim=64, intermediate_size=1024, num_attention_heads=4,
                        num_key_value_heads=2, num_layers=2)
  return with_policy(Showo2Config(llm=llm, semantic=sem, flow_head=head, image_latent_height=8,
                                  image_latent_width=8, clip_latent_dim=128),
                     **{"attention_impl": bench.ATTENTION["impl"], **policy})


def batch_layout(n_img_tokens: int = 64, seed: int = 0):
  """Token ids ``[4, 256]`` and ``modality_positions [4, 1, 2]`` of the T2I + MMU training batch."""
  rng = np.random.default_rng(seed)
  bos, eos, boi, eoi, pad, img = 2038, 2039, 2040, 2041, PAD, 2043
  tokens = np.full((BATCH, SEQ_LEN), pad, np.int32)
  mp = np.zeros((BATCH, 1, 2), np.int32)
  for i, (kind, n_text) in enumerate(zip(ROWS, TEXT_LENS)):
    text = list(rng.integers(0, 2000, n_text))
    block = [img] * (n_img_tokens + 1)
    if kind == "t2i":   # [bos] text [boi] [time+img]×(n+1) [eoi] [eos] pad
      seq, off = [bos] + text + [boi] + block + [eoi, eos], 1 + n_text + 1
    else:               # [bos] [boi] [time+img]×(n+1) [eoi] caption [eos] pad
      seq, off = [bos, boi] + block + [eoi] + text + [eos], 2
    seq = seq[:SEQ_LEN]
    tokens[i, :len(seq)] = seq
    mp[i, 0] = (off, n_img_tokens + 1)
  return tokens, mp


def build(name: str = "showo2_forward") -> Workload:
  cfg = bench_config()
  model = Showo2(cfg, rngs=nnx.Rngs(0))
  tokens, mp = batch_layout()
  latents = jax.random.normal(jax.random.key(1), (BATCH, 16, 16, 16), jnp.float32)
  t = jnp.asarray([0.3, 0.7, 1.0, 1.0], jnp.float32)  # MMU rows use t = 1 (clean latents)

  @nnx.jit
  def fwd(m, tok, lat, tt, p):
    out = m(tok, lat, tt, p)
    return out.logits, out.v_pred

  args = (jnp.asarray(tokens), latents, t, jnp.asarray(mp))
  n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
  return Workload(run=lambda: jax.block_until_ready(fwd(model, *args)),
                  shapes={"batch": BATCH, "seq_len": SEQ_LEN, "rows": list(ROWS), "text_lens": list(TEXT_LENS),
                          "latents": [BATCH, 16, 16, 16], "params": n_params})
