"""Show-o2 base config: what every stage shares (``showlab/Show-o@45a5a2d:show-o2/configs/showo2_*_stage_*.yaml``).

432 px, ``max_seq_length 1024``, Wan2.1 latents (16 ch, /8), patch 2 → 729 image tokens + 1 time token;
transport ``Linear``/velocity, lognorm times with the μ-shift at ``seq_len = 730``; bf16 compute with
float32 master weights (``mixed_precision: bf16``); AdamW β=(0.9, 0.999), eps 1e-8, wd 0, clip 1.0; the
mixed loader in ``concat_max_size_cycle`` mode (t2i rows first, then mmu rows).
"""
from configs import common
from configs.showo2 import targets

SIZES = {"1.5b": "showo2_1_5b", "7b": "showo2_7b"}


def build(arg) -> common.ConfigDict:
  if arg.size not in SIZES:
    raise ValueError(f"size must be one of {sorted(SIZES)}, got {arg.size!r}")
  c = common.ConfigDict()
  c.model_family = "showo2"
  c.seed = 10086
  c.total_steps = 150_000           # 0 = one epoch of the mmu stream (stage 2)
  c.model = common.ConfigDict(dict(
      preset=SIZES[arg.size], resolution=432, dtype="bfloat16", param_dtype="float32",
      scan_layers=True, remat_policy="none", attention_impl="xla", overrides=common.ConfigDict()))
  c.init = common.init_block()
  c.resume = ""
  c.trainable = common.ConfigDict(dict(frozen=[], frozen_regex=[]))
  # row_split: "on" runs the flow / LM heads only on the rows their losses read (concat mixture;
  # showo_jax/rows.py), "off" on every row (same loss and gradients).
  c.loss = common.ConfigDict(dict(ntp_coeff=0.2, flow_coeff=1.0, und_max_t0=1.0, transport_seq_len=730,
                                  clean_prefix_prob=0.0, row_split="on"))
  c.optim = common.optim_block(1e-4, schedule="constant_with_warmup", warmup_steps=2000)
  c.data = common.ConfigDict(dict(
      tokenizer="qwen2_5", seed=c.seed, resolution=432, max_seq_length=1024, mixture="concat", shuffle=True,
      pack_len=0,   # > 0: the LLM runs on pad-free packed rows of this many tokens per batch shard (packing.py)
      num_workers=0, prefetch=2, num_records=1_000_000, procedural_size=64,
      latents=common.ConfigDict(dict(source="vae", vae_path="", vae_preset="wan2_1", vae_dtype="bfloat16",
                                     stochastic=True, patch=4, patch_seed=0)),
      t2i=common.ConfigDict(dict(batch_size=6, source="procedural", path="", cond_dropout_prob=0.1, min_res=256,
                                 weight=1.0)),
      mmu=common.ConfigDict(dict(batch_size=2, source="procedural", path="", format="caption", stage="pre-training",
                                 system_prompt="", min_res=256, weight=1.0)),
      lm=common.ConfigDict(dict(batch_size=0, source="procedural", path="", weight=1.0)),
      video=common.ConfigDict(dict(batch_size=0, source="procedural", path="", num_frames=17, cond_dropout_prob=0.1,
                                   weight=1.0)),
      interleaved=common.ConfigDict(dict(batch_size=0, source="procedural", path="", max_num_images=4, weight=1.0)),
  ))
  c.mesh = common.mesh_block()
  c.ckpt = common.ckpt_block(every=10_000, keep=3)
  c.log = common.log_block(every=50, sample_every=1000)
  c.target = ""                     # set by ``target=...`` (configs/showo2/targets.py): the pod preset applied
  return c


def parse_arg(arg) -> common.ConfigDict:
  """The arguments every stage file accepts: ``size=1.5b|7b``, ``target=<pod>`` (:mod:`targets`), ``runlocal``."""
  return common.parse_arg(arg, size="1.5b", runlocal=False, target="")


def finalize(config: common.ConfigDict, arg, kind: str | None = None) -> common.ConfigDict:
  """Apply the ``target`` preset (``kind`` = stage1 | stage2), then ``runlocal`` when asked (it wins: one
  device, tiny model), and lock (unknown keys error from here on)."""
  config.data.seed = config.seed
  if arg.get("target"):
    if kind is None:
      raise ValueError(f"target={arg.target}: this config has no AOT-proven pod presets (configs/showo2/targets.py)")
    config = targets.apply(config, arg.target, arg.size, kind)
  if arg.runlocal:
    config = common.runlocal(config)
  return common.lock(config)


def get_config(arg=None):
  arg = parse_arg(arg)
  return finalize(build(arg), arg)
