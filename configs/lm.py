"""Text-only training of the Qwen2 backbone (``model_family = "lm"``): the ``lm`` stream alone.

Useful for continued LM training of the backbone and as the smallest end-to-end training path (tests run
it with ``:runlocal``). Rows are ``[bos] text [eos] [pad]`` with labels = ids (``data/sequence.py``).
"""
from configs import common


def build(arg) -> common.ConfigDict:
  presets = {"1.5b": "qwen2_5_1_5b", "7b": "qwen2_5_7b"}
  c = common.ConfigDict()
  c.model_family = "lm"
  c.seed = 0
  c.total_steps = 10_000
  c.model = common.ConfigDict(dict(preset=presets[arg.size], resolution=0, dtype="bfloat16", param_dtype="float32",
                                   scan_layers=True, remat_policy="none", attention_impl="xla",
                                   overrides=common.ConfigDict()))
  c.init = common.init_block()
  c.resume = ""
  c.trainable = common.ConfigDict(dict(frozen=[], frozen_regex=[]))
  c.loss = common.ConfigDict()
  c.optim = common.optim_block(1e-5, schedule="cosine", warmup_steps=None, warmup_ratio=0.03)
  c.data = common.ConfigDict(dict(
      tokenizer="qwen2_5", seed=0, max_seq_length=1024, mixture="concat", shuffle=True, num_workers=0,
      prefetch=2, num_records=1_000_000, procedural_size=64,
      lm=common.ConfigDict(dict(batch_size=8, source="procedural", path="", weight=1.0))))
  c.mesh = common.mesh_block()
  c.ckpt = common.ckpt_block(every=1000, keep=3)
  c.log = common.log_block(every=50, sample_every=0)
  return c


def get_config(arg=None):
  arg = common.parse_arg(arg, size="1.5b", runlocal=False)
  c = build(arg)
  c.data.seed = c.seed
  if arg.runlocal:
    c = common.runlocal(c)
  return common.lock(c)
