"""A trained run, ready to evaluate: config + model + tokenizer + latent codec (no upstream counterpart).

:func:`load_run` reads ``<workdir>/checkpoints/<step>`` (the train loop's Orbax layout) and rebuilds the model
from the run's own ``config.json``: the same task (``train.tasks``), the same frozen/trainable split and
optimizer structure, so the restore target is the one training resumes into (no partial restores).
Only the model parameters are kept. :func:`fresh_run` builds an untrained model from a config (tests and
"random checkpoint" smoke runs).

:class:`LatentCodec` turns uint8 images into the run's latents and back: the toy ``patch`` latent space
(``data.transforms.PatchLatents``, fixed orthonormal projection) or the Wan VAE (``data.latents.vae_path``,
or the random ``tiny`` preset in tests). Evaluation uses the *posterior mean* of the VAE (deterministic).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from showo_jax.data import transforms


# ------------------------------------------------------------------------------------------ configs
def config_from_json(d: dict) -> mlc.ConfigDict:
  """A run's ``config.json`` → ConfigDict (``model.overrides`` may hold dotted keys such as ``llm.vocab_size``)."""
  d = json.loads(json.dumps(d))
  overrides = (d.get("model") or {}).pop("overrides", None) or {}
  c = mlc.ConfigDict(d)
  if "model" in c:
    c.model.overrides = mlc.ConfigDict(overrides, allow_dotted_keys=True)
  return c


def read_config(workdir: str) -> mlc.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} has no config.json (not a training workdir)")
  with open(path) as f:
    return config_from_json(json.load(f))


# ------------------------------------------------------------------------------------------ codec
class LatentCodec:
  """uint8 images ``[n, (t,) h, w, 3]`` ↔ channels-last latents of the run's latent space."""

  def __init__(self, kind: str, resolution: int, *, patch: int = 4, channels: int = 16, patch_seed: int = 0,
               vae=None):
    self.kind, self.resolution = kind, int(resolution)
    if kind == "patch":
      self.patch = transforms.PatchLatents(patch, channels, patch_seed)
      self.factor = patch
    elif kind == "vae":
      if vae is None:
        raise ValueError("a VAE codec needs the VAE")
      self.vae = vae
      self.factor = 2 ** (len(vae.cfg.dim_mult) - 1)
    else:
      raise ValueError(f"unknown codec {kind!r}: patch | vae")

  @classmethod
  def from_config(cls, config, channels: int = 16) -> "LatentCodec":
    d = config.data
    lat = d.latents
    if lat.source == "patch":
      return cls("patch", d.resolution, patch=int(lat.patch), channels=channels, patch_seed=int(lat.patch_seed))
    from showo_jax.models import wan_vae
    vae = wan_vae.WanVAE(wan_vae.PRESETS[lat.vae_preset](), rngs=nnx.Rngs(0))
    if lat.get("vae_path", ""):
      from safetensors.numpy import load_file
      from showo_jax.convert import common
      common.load_into(vae, load_file(lat.vae_path))
    elif lat.vae_preset != "tiny":
      raise ValueError("evaluating a Wan-VAE run needs data.latents.vae_path (converted weights)")
    return cls("vae", d.resolution, vae=vae)

  def latent_shape(self, video_frames: int = 0) -> tuple[int, ...]:
    hw = self.resolution // self.factor
    c = self.patch.channels if self.kind == "patch" else self.vae.cfg.z_dim
    if video_frames:
      t = video_frames if self.kind == "patch" else 1 + (video_frames - 1) // 4
      return (t, hw, hw, c)
    return (hw, hw, c)

  def encode(self, images: np.ndarray) -> np.ndarray:
    x = transforms.to_unit_range(np.asarray(images, np.uint8))
    if self.kind == "patch":
      return self.patch.encode(x)
    video = x.ndim == 5
    z = _vae_encode(self.vae, jnp.asarray(x if video else x[:, None]))
    return np.asarray(z if video else z[:, 0])

  def decode(self, latents) -> np.ndarray:
    z = np.asarray(latents, np.float32)
    if self.kind == "patch":
      return transforms.from_unit_range(self.patch.decode(z))
    video = z.ndim == 5
    x = _vae_decode(self.vae, jnp.asarray(z if video else z[:, None]))
    x = np.asarray(x)
    return transforms.from_unit_range(x if video else x[:, 0])


@nnx.jit
def _vae_encode(vae, x):
  return vae.sample(x, deterministic=True)


@nnx.jit
def _vae_decode(vae, z):
  return vae.decode(z)


# ------------------------------------------------------------------------------------------ runs
@dataclasses.dataclass
class Run:
  """Everything an eval suite needs about one trained model."""
  config: Any                     # ml_collections ConfigDict of the run
  family: str                     # "showo2" | "lm" | other registered task names
  model_cfg: Any
  model: nnx.Module
  tokenizer: Any
  step: int
  workdir: str = ""
  codec: LatentCodec | None = None
  extras: dict = dataclasses.field(default_factory=dict)

  @property
  def resolution(self) -> int:
    return int(self.config.data.get("resolution", 0) or 0)

  @property
  def max_seq_len(self) -> int:
    return int(self.config.data.max_seq_length)

  @property
  def num_image_tokens(self) -> int:
    hw = self.codec.resolution // self.codec.factor // self.model_cfg.patch_size
    return hw * hw


def _layout_and_tx(config, task, model_cfg):
  from showo_jax.train import optim
  from showo_jax.train import state as state_lib
  abstract = nnx.eval_shape(lambda: task.build(model_cfg, nnx.Rngs(0)))
  layout = state_lib.Layout.of(abstract, optim.frozen_filter(config.trainable))
  total = int(config.total_steps) if int(config.total_steps) > 0 else 1
  tx = optim.build(config.optim, list(layout.templates["params"]), total).tx
  return layout, tx


def checkpoint_steps(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(s) for s in os.listdir(d) if s.isdigit() and os.path.isdir(os.path.join(d, s, "state")))


def load_model(config, workdir: str, step: int | None = None):
  """``(model_cfg, model, step)`` from ``<workdir>/checkpoints/<step>`` (latest when ``step`` is None)."""
  from showo_jax import sharding
  from showo_jax.train import checkpoint as ckpt_lib
  from showo_jax.train import state as state_lib
  from showo_jax.train import tasks
  task = tasks.get(config.model_family)
  model_cfg = task.model_config(config.model)
  layout, tx = _layout_and_tx(config, task, model_cfg)
  ema = bool(config.optim.get("ema_decay", 0.0))
  mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  rules = sharding.get_rules(config.mesh.get("rules", "fsdp"))
  shardings = state_lib.state_shardings(layout, tx, mesh, rules, ema)
  target = state_lib.with_shardings(state_lib.abstract_state(layout, tx, ema), shardings)
  ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=10**6, async_save=False, save_iter=False)
  try:
    steps = ck.steps()
    if not steps:
      raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints")
    step = steps[-1] if step is None else int(step)
    if step not in steps:
      raise FileNotFoundError(f"step {step} not in {steps} ({workdir})")
    state, _ = ck.restore(step, target)
  finally:
    ck.close()
  params = state.ema if (ema and state.ema is not None) else state.params
  model = layout.merge(params, state.frozen, state.other)
  return model_cfg, model, step


def _tokenizer(config):
  from showo_jax.data import pipeline
  return pipeline.make_tokenizer(config.data.tokenizer)


def _finish(config, family, model_cfg, model, step, workdir) -> Run:
  codec = None
  if family == "showo2":
    codec = LatentCodec.from_config(config, channels=model_cfg.image_latent_dim)
  return Run(config, family, model_cfg, model, _tokenizer(config), step, workdir, codec)


def load_run(path: str, step: int | None = None) -> Run:
  """A run from a training workdir (or its ``checkpoints`` dir, or one ``checkpoints/<step>`` dir)."""
  path = os.path.abspath(path)
  if os.path.basename(path).isdigit() and os.path.isdir(os.path.join(path, "state")):
    step = int(os.path.basename(path)) if step is None else step
    path = os.path.dirname(path)
  if os.path.basename(path) == "checkpoints":
    path = os.path.dirname(path)
  config = read_config(path)
  family = config.model_family
  if family.startswith("showo_v1"):
    from showo_jax.eval import v1_toy
    return v1_toy.load_run(config, path, step)
  model_cfg, model, step = load_model(config, path, step)
  return _finish(config, family, model_cfg, model, step, path)


def fresh_run(config, seed: int | None = None) -> Run:
  """An untrained model of ``config`` (``seed`` defaults to ``config.seed``), step 0."""
  from showo_jax.train import tasks
  family = config.model_family
  if family.startswith("showo_v1"):
    from showo_jax.eval import v1_toy
    return v1_toy.fresh_run(config, seed)
  task = tasks.get(family)
  model_cfg = task.model_config(config.model)
  model = task.build(model_cfg, nnx.Rngs(config.seed if seed is None else seed))
  return _finish(config, family, model_cfg, model, 0, "")
