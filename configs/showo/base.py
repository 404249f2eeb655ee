"""Show-o (v1) base config: what every v1 stage shares (``showlab/Show-o@45a5a2d:configs/showo_*.yaml``,
``training/train.py``; spec ``showo.md`` §4, §6).

Phi-1.5 over the unified vocabulary (58498 = 50295 text + 10 special + 8192 MAGVIT-v2 codes + [MASK]); 256 px
images → 256 MAGVIT-v2 codes; rows ``[t2i | lm | mmu]`` every step (Lightning ``CombinedLoader``:
one batch of each loader per step); T2I rows corrupted by MTP (cosine mask schedule, ``min_masking_rate 0``,
``cond_dropout_prob 0.1``); ``loss = 1.0·t2i + 0.1·lm + 1.0·mmu``; AdamW β=(0.9, 0.999), eps 1e-8, weight decay
0.01, no gradient clipping (``max_grad_norm: null``), cosine schedule with linear warmup; bf16 compute with
float32 master weights; gradient checkpointing on (``remat_policy="full"``); seed 10086; checkpoints every
10k steps. Data: ``data/pipeline_v1.py`` (procedural streams by default; ArrayRecord files with
``--config.data.<kind>.source=arrayrecord --config.data.<kind>.path=...``).

Text tokenizer: ``data.tokenizer="phi_1_5"`` reads the Phi-1.5 ``tokenizer.json`` at ``data.tokenizer_file``
(nothing is downloaded); image tokenizer: ``data.image_tokenizer`` (``magvitv2`` with converted weights at
``path``, from ``python -m showo_jax.convert magvit2``).

Weight decay: the reference's two AdamW groups exempt names containing ``bias`` (for Phi only the biases;
``maskgit.adamw_decay_mask``): ``optim.no_decay = ["bias"]``.

``runlocal``: ``common.runlocal`` (tiny preset, procedural data, batch 2 per stream, text budget 32) plus the
v1 pieces: 32 px images through a random-init toy MAGVIT-v2 (x8, 6-bit LFQ → 16 codes of 64, deterministic
from ``image_tokenizer.seed``; no pretrained MAGVIT weights exist offline), the tiny BPE ``tiny:320`` as the
text vocabulary (``<|endoftext|>`` = bos = eos, as Phi), and no caption prompt (it would not fit 32 tokens).
"""
from configs import common

# The tiny BPE of runlocal runs: ``len == 320`` and ``<|endoftext|>`` (Phi's bos = eos) at 294. The v1
# pipeline checks these against the tokenizer it builds, so a change there fails loudly.
RUNLOCAL_TOKENIZER = "tiny:320"
RUNLOCAL_VOCAB = dict(llm_vocab_size=320, bos_token_id=294, eos_token_id=294)


def build(arg) -> common.ConfigDict:
  del arg
  c = common.ConfigDict()
  c.model_family = "showo"
  c.seed = 10086
  c.total_steps = 500_000
  c.model = common.ConfigDict(dict(
      preset="show_o", dtype="bfloat16", param_dtype="float32", scan_layers=True, remat_policy="full",
      attention_impl="xla", overrides=common.ConfigDict(),
      # 0 / -1 = the preset's vocabulary layout (see train/tasks.py::_showo_v1_task)
      llm_vocab_size=0, codebook_size=0, num_vq_tokens=0, bos_token_id=-1, eos_token_id=-1))
  c.init = common.init_block()
  c.resume = ""
  c.trainable = common.ConfigDict(dict(frozen=[], frozen_regex=[]))
  c.loss = common.ConfigDict(dict(t2i_coeff=1.0, lm_coeff=0.1, mmu_coeff=1.0, mask_schedule="cosine",
                                  min_masking_rate=0.0))
  c.optim = common.optim_block(1e-4, schedule="cosine", warmup_steps=5000)
  c.optim.weight_decay = 0.01
  c.optim.no_decay = ["bias"]
  c.optim.grad_clip = 0.0
  c.data = common.ConfigDict(dict(
      tokenizer="phi_1_5", tokenizer_file="", seed=c.seed, resolution=256, max_seq_length=128, shuffle=True,
      num_workers=0, prefetch=2, num_records=1_000_000, procedural_size=256,
      pack_len=0,   # > 0: pad-free packed rows of this many tokens per batch shard (showo_jax/packing.py)
      image_tokenizer=common.ConfigDict(dict(preset="magvitv2", path="", seed=0)),
      t2i=common.ConfigDict(dict(batch_size=15, source="procedural", path="", cond_dropout_prob=0.1)),
      lm=common.ConfigDict(dict(batch_size=4, source="procedural", path="")),
      mmu=common.ConfigDict(dict(batch_size=10, source="procedural", path="", format="caption",
                                 caption_prompt=True)),
  ))
  c.mesh = common.mesh_block()
  c.ckpt = common.ckpt_block(every=10_000, keep=3)
  c.log = common.log_block(every=50, sample_every=0)
  return c


def runlocal(config: common.ConfigDict) -> common.ConfigDict:
  """``common.runlocal`` plus the v1 specifics (see the module docstring)."""
  config = common.runlocal(config)
  with config.unlocked():
    d = config.data
    d.tokenizer, d.tokenizer_file = RUNLOCAL_TOKENIZER, ""
    d.resolution = d.procedural_size
    d.image_tokenizer.preset, d.image_tokenizer.path = "toy", ""
    d.mmu.caption_prompt = False
    for k, v in RUNLOCAL_VOCAB.items():
      config.model[k] = v
    config.model.codebook_size, config.model.num_vq_tokens = 64, (d.resolution // 8) ** 2
  return config


def finalize(config: common.ConfigDict, arg) -> common.ConfigDict:
  """Apply ``runlocal`` when asked and lock (unknown keys error from here on)."""
  config.data.seed = config.seed
  if arg.runlocal:
    config = runlocal(config)
  return common.lock(config)


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False)
  return finalize(build(arg), arg)
