"""Shared config pieces: ``parse_arg``, the optim / mesh / checkpoint / logging blocks, and ``runlocal``.

Experiment files define ``get_config(arg)`` (ml_collections ``config_flags`` passes the text after ``:``, e.g.
``configs/showo2/stage1.py:size=7b,runlocal``). Every returned config is locked: assigning an unknown key
(in code or with ``--config.x=y``) raises.
"""
from __future__ import annotations

import ml_collections as mlc

ConfigDict = mlc.ConfigDict


def parse_arg(arg: str | None, **spec) -> ConfigDict:
  """``"size=7b,runlocal"`` → ConfigDict over ``spec``'s keys (big_vision's helper, strict).

  Values are converted to the type of the default (bools accept ``true/false/1/0``; a bare name means
  True). Keys not in ``spec`` are errors, so a typo in the command line never passes silently.
  """
  out = ConfigDict(dict(spec))
  if not arg:
    return out
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, val = item.partition("=")
    if key not in spec:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(spec)}")
    default = spec[key]
    if not eq:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
      out[key] = True
    elif isinstance(default, bool):
      if val.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"config argument {key}={val!r} is not a boolean")
      out[key] = val.lower() in ("true", "1", "yes")
    elif default is None:
      out[key] = val
    else:
      out[key] = type(default)(val)
  return out


def optim_block(lr: float = 1e-4, *, schedule: str = "constant_with_warmup", warmup_steps: int | None = 0,
                warmup_ratio: float = 0.0) -> ConfigDict:
  """AdamW of the reference (β=(0.9, 0.999), eps 1e-8, wd 0, clip 1.0). ``groups`` maps a group name to
  ``{params: [substrings], lr}``; empty = one group with ``lr`` (stage 1). ``no_decay``: name substrings
  exempt from weight decay (Show-o v1: ``["bias"]``)."""
  return ConfigDict(dict(
      name="adamw", lr=lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
      groups=ConfigDict(), ema_decay=0.0, no_decay=[],
      schedule=ConfigDict(dict(name=schedule, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio)),
  ))


def param_groups(**groups) -> ConfigDict:
  """``param_groups(ve=(["und_trans", ...], 5e-5), ...)`` → the ``optim.groups`` block."""
  return ConfigDict({name: ConfigDict(dict(params=list(subs), lr=float(lr))) for name, (subs, lr) in groups.items()})


def mesh_block(data: int = 1, fsdp: int = -1, tensor: int = 1, rules: str = "fsdp", num_devices: int = 0
               ) -> ConfigDict:
  """Mesh axes (``-1`` = the remaining devices), the sharding rule preset (``sharding.RULES``) and how many
  devices to use (0 = all; runlocal uses 1)."""
  return ConfigDict(dict(data=data, fsdp=fsdp, tensor=tensor, rules=rules, num_devices=num_devices))


def ckpt_block(every: int = 10_000, keep: int = 3, async_save: bool = True) -> ConfigDict:
  return ConfigDict(dict(every=every, keep=keep, async_save=async_save))


def log_block(every: int = 50, sample_every: int = 1000, tensorboard: bool = True, progress: bool = True,
              num_samples: int = 4) -> ConfigDict:
  """Metrics every ``every`` steps; sample grids (held-out T2I prompts, CFG ``guidance_scale`` with
  ``sample_steps`` ODE points) every ``sample_every`` steps (0 = off); NaN check every ``nan_check_every``."""
  return ConfigDict(dict(every=every, sample_every=sample_every, tensorboard=tensorboard, progress=progress,
                         num_samples=num_samples, sample_steps=50, guidance_scale=5.0, nan_check_every=1))


def init_block(path: str = "", params_not_load: tuple[str, ...] = ()) -> ConfigDict:
  """Converted weights (safetensors in our flat names, or another run's Orbax step dir); substrings in
  ``params_not_load`` keep their fresh initialisation (the reference's ``params_not_load``)."""
  return ConfigDict(dict(path=path, params_not_load=list(params_not_load)))


def lock(config: ConfigDict) -> ConfigDict:
  config.lock()
  return config


def runlocal(config: ConfigDict) -> ConfigDict:
  """Shrink any experiment config to a CPU-sized run on procedural data (tiny model, 2 steps).

  Keeps the experiment's structure (family, trainable set, loss weights, mixture, schedule *kind*) and
  replaces sizes: tiny preset, 32 px procedural images with the patch latent space, short sequences,
  small batches, frequent checkpoints, no converted weights.
  """
  with config.unlocked():
    config.total_steps = 2
    config.model.preset = "tiny"
    config.model.dtype = "float32"
    config.model.param_dtype = "float32"
    config.model.scan_layers = False
    config.model.remat_policy = "none"
    config.model.attention_impl = "xla"
    config.init.path = ""
    config.resume = ""
    config.mesh = mesh_block(1, -1, 1, config.mesh.rules, num_devices=1)
    config.ckpt = ckpt_block(every=1, keep=2, async_save=False)
    config.log.every = 1
    config.log.sample_every = 0
    config.log.progress = False
    if config.optim.schedule.warmup_steps:
      config.optim.schedule.warmup_steps = 1
    d = config.data
    d.tokenizer = "tiny:310" if config.model_family == "showo2" else "tiny:320"
    d.num_workers = 0
    d.prefetch = 1
    d.num_records = 64
    d.procedural_size = 32
    d.max_seq_length = 32
    if config.model_family == "showo2":
      # 32 px → patch latents 8×8×16 → 4×4 = 16 image tokens (+1 time token): the tiny model's grid.
      d.resolution = 32
      d.latents.source = "patch"
      d.latents.patch = 4
      d.max_seq_length = 64
      config.loss.transport_seq_len = 17
      for kind in ("t2i", "mmu"):
        d[kind].min_res = 0
      if d.mmu.batch_size > 0 and d.mmu.format == "llava" and d.mmu.stage == "tuning":
        d.max_seq_length = 128        # system prompt + role tags + question + answer around the image
      if d.video.batch_size > 0:
        d.video.num_frames = 3        # 3 × 16 = 48 video tokens
        d.max_seq_length = 80
        config.loss.transport_seq_len = 49
      if d.interleaved.batch_size > 0:
        d.interleaved.max_num_images = 2
        d.max_seq_length = 96
    for kind in ("t2i", "mmu", "lm", "video", "interleaved"):
      if kind in d and d[kind].batch_size > 0:
        d[kind].source = "procedural"
        d[kind].path = ""
        d[kind].batch_size = 2
  return config
