"""The training loop: one plain-Python loop for every family and stage (stages differ only in config).

``run(config, workdir)``: mesh and rules → abstract model → frozen/trainable layout → optimizer →
data iterator → state (resume > ``config.resume`` > ``config.init`` > scratch) → jitted step with donation
→ periodic hooks (metrics, NaN guard, checkpoints, sample grids). Returns a summary dict (the per-step
losses included), which the tests use.

Init precedence (big_vision): a valid checkpoint in ``<workdir>/checkpoints`` (corrupt ones skipped with a
message) > ``config.resume`` (another run's workdir or checkpoint directory: full state incl. step and
data position) > ``config.init.path`` (converted weights: a ``python -m showo_jax.convert`` directory,
``*.safetensors`` in our flat names, or another run's Orbax step directory; params only, per-layer keys
stacked for scanned models, ``params_not_load`` substrings keep their fresh init) > scratch.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax import flops as flops_lib
from showo_jax import rows as rows_lib
from showo_jax import sharding
from showo_jax.train import checkpoint as ckpt_lib
from showo_jax.train import metrics as metrics_lib
from showo_jax.train import optim, tasks
from showo_jax.train import state as state_lib
from showo_jax.train import step as step_lib

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
  """Raised when a step produced a NaN/Inf loss or gradient norm (the update was not applied)."""


# ------------------------------------------------------------------------------------ multi-host
def initialize_distributed() -> bool:
  """``jax.distributed.initialize`` from the environment; no-op for a single process.

  Explicit: ``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` + ``JAX_PROCESS_ID``. Otherwise jax's own
  cluster auto-detection when a multi-process SLURM / Open MPI job or a multi-host TPU slice is detected.
  """
  env = os.environ
  addr = env.get("JAX_COORDINATOR_ADDRESS")
  if addr and env.get("JAX_NUM_PROCESSES"):
    n = int(env["JAX_NUM_PROCESSES"])
    if n > 1:
      jax.distributed.initialize(addr, num_processes=n, process_id=int(env["JAX_PROCESS_ID"]))
      return True
    return False
  multi = (int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
           or "," in env.get("TPU_WORKER_HOSTNAMES", "") or "MEGASCALE_COORDINATOR_ADDRESS" in env)
  if multi:
    jax.distributed.initialize()
    return True
  return False


# ------------------------------------------------------------------------------------ weights for config.init
def _stack_to_model(flat: dict, names: set[str]) -> dict:
  """Per-layer ``prefix.<i>.rest`` entries → stacked ``prefix.rest`` where the model has scanned layers."""
  pat = re.compile(r"(.+?)\.(\d+)\.(.+)")
  groups: dict[str, dict[int, Any]] = {}
  out = {}
  for k, v in flat.items():
    m = pat.fullmatch(k)
    if k not in names and m and f"{m.group(1)}.{m.group(3)}" in names:
      groups.setdefault(f"{m.group(1)}.{m.group(3)}", {})[int(m.group(2))] = v
    else:
      out[k] = v
  for k, layers in groups.items():
    out[k] = np.stack([np.asarray(layers[i]) for i in range(len(layers))])
  return out


def load_init_weights(path: str) -> dict:
  """Flat ``{name: array}`` from a converted directory (``convert/io.py``: ``params/`` + ``meta.json``),
  ``*.safetensors`` (a file, glob or directory) or another run's Orbax step directory."""
  if os.path.isdir(path) and os.path.exists(os.path.join(path, "meta.json")):
    from showo_jax.convert import io as convert_io
    return convert_io.load_flat(path)
  if os.path.isdir(path) and os.path.isdir(os.path.join(path, "state")):
    return ckpt_lib.restore_params_only(path)
  files = sorted(glob.glob(os.path.join(path, "*.safetensors"))) if os.path.isdir(path) else sorted(glob.glob(path))
  if not files:
    raise FileNotFoundError(f"config.init.path {path!r}: no *.safetensors files nor an Orbax step directory")
  from safetensors.numpy import load_file
  flat = {}
  for f in files:
    flat.update(load_file(f))
  return flat


def apply_init(state: state_lib.TrainState, layout: state_lib.Layout, shardings: state_lib.TrainState,
               init_cfg) -> state_lib.TrainState:
  """Overwrite params/frozen of a fresh state with converted weights (strict unless ``params_not_load``)."""
  skip = list(init_cfg.get("params_not_load", None) or [])
  flat = load_init_weights(init_cfg.path)
  names = set(layout.templates["params"]) | set(layout.templates["frozen"])
  flat = _stack_to_model(flat, names)
  skipped = lambda n: any(s in n for s in skip)
  missing = sorted(n for n in names if n not in flat and not skipped(n))
  unexpected = sorted(n for n in flat if n not in names and not skipped(n))
  mismatched = []
  for part in ("params", "frozen"):
    for n, tmpl in layout.templates[part].items():
      if n in flat and not skipped(n) and tuple(np.shape(flat[n])) != tuple(tmpl.get_value().shape):
        mismatched.append(f"{n}: checkpoint {tuple(np.shape(flat[n]))} vs model {tuple(tmpl.get_value().shape)}")
  if mismatched or unexpected or (missing and not skip):
    raise ValueError(f"config.init {init_cfg.path}: {len(missing)} missing {missing[:20]}, {len(unexpected)} "
                     f"unexpected {unexpected[:20]}, mismatched {mismatched[:20]}")
  if missing:
    log.warning("config.init: %d parameters not in the checkpoint keep their fresh init: %s", len(missing), missing[:20])

  def fill(part):
    cur = getattr(state, part)
    out = dict(cur)
    for n in cur:
      if n in flat and not skipped(n):
        out[n] = jax.device_put(jnp.asarray(flat[n], cur[n].dtype), getattr(shardings, part)[n])
    return out

  params = fill("params")
  ema = None if state.ema is None else {n: params[n] for n in state.ema}
  return state_lib.TrainState(step=state.step, params=params, frozen=fill("frozen"), other=state.other,
                              opt_state=state.opt_state, rng=state.rng, ema=ema)


def _resume_dir(path: str) -> str:
  """A workdir (with ``checkpoints/``) or a checkpoints directory."""
  sub = os.path.join(path, "checkpoints")
  return sub if os.path.isdir(sub) else path


# ------------------------------------------------------------------------------------ the run
def config_to_json(config) -> dict:
  return json.loads(config.to_json_best_effort())


_JIT_CACHE: dict[str, Any] = {}
SMALL_MODEL_BYTES = 1 << 30


class Trainer:
  """Everything ``run`` builds, exposed for tests and tools (``Trainer(config, workdir).train()``)."""

  def __init__(self, config, workdir: str, *, data_iter=None):
    from showo_jax.data import pipeline
    self.config = config
    self.workdir = workdir
    self.task = tasks.get(config.model_family)
    self.model_cfg = self.task.model_config(config.model)
    m = config.mesh
    devices = jax.devices()[:m.num_devices] if m.get("num_devices", 0) else None
    self.mesh = sharding.make_mesh(m.data, m.fsdp, m.tensor, devices=devices)
    self.rules = sharding.get_rules(m.rules)
    with sharding.use_mesh(self.mesh, self.rules):
      abstract = nnx.eval_shape(lambda: self.task.build(self.model_cfg, nnx.Rngs(config.seed)))
      self.layout = state_lib.Layout.of(abstract, optim.frozen_filter(config.trainable))
    if not self.layout.templates["params"]:
      raise ValueError("every parameter is frozen: nothing to train (check config.trainable)")
    self.data = (pipeline.build(config, self.model_cfg, text_only=not self.task.uses_latents)
                 if data_iter is None else data_iter)
    # total_steps = 0: one epoch of the mmu stream (stage 2's len(mmu) // (bs_mmu · n_gpu))
    self.total_steps = int(config.total_steps) if config.total_steps > 0 else self.data.info.epoch_steps("mmu")
    self.opt = optim.build(config.optim, list(self.layout.templates["params"]), self.total_steps)
    self.ema = bool(config.optim.get("ema_decay", 0.0))
    self.shardings = state_lib.state_shardings(self.layout, self.opt.tx, self.mesh, self.rules, self.ema)
    self.ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.ckpt.keep,
                                      async_save=config.ckpt.async_save)
    self.batch_shardings = self.data.batch_shardings(self.mesh, self.rules)
    # Jitted functions are shared by Trainers of the same computation in one process (tests, tools that
    # rebuild a run), so a rebuilt Trainer does not retrace or recompile. The key is the config (minus
    # checkpoint/log/init/data-source settings), the mesh and the batch shapes: one family name = one code.
    key = self._compute_key()
    if key not in _JIT_CACHE:
      step_fn = step_lib.make_train_step(self.layout, self.task, self.opt.tx, config.get("loss", None),
                                         self.opt.schedules, config.optim.ema_decay if self.ema else None,
                                         row_types=self._row_types())
      _JIT_CACHE[key] = step_lib.jit_train_step(step_fn, self.shardings, self.batch_shardings)
    self.train_step = _JIT_CACHE[key]
    # Scratch init: small models are initialised unsharded (one compile for every mesh) and then placed;
    # large ones are created directly with their shardings (no full copy on any device).
    self._small = self.layout.num_params() * 4 < SMALL_MODEL_BYTES
    init_key = "init:" + (self._compute_key(mesh=False) if self._small else key)
    if init_key not in _JIT_CACHE:
      _JIT_CACHE[init_key] = jax.jit(self._init_fn()) if self._small else \
          jax.jit(self._init_fn(), out_shardings=self.shardings)
    self._init_jit = _JIT_CACHE[init_key]
    self.origin = None

  def _row_types(self) -> list[str] | None:
    """The static row layout handed to the loss (``showo_jax/rows.py``; ``loss.row_split``), or None to run
    every head on every row."""
    mode = (self.config.get("loss", None) or {}).get("row_split", "on")
    rt = rows_lib.split_layout(getattr(self.data.info, "row_types", None), mode)
    return None if rt is None else list(rt)

  def _compute_key(self, mesh: bool = True) -> str:
    c = config_to_json(self.config)
    for k in ("ckpt", "log", "resume", "init", "mesh"):
      c.pop(k, None)
    c["data"] = {k: v for k, v in c.get("data", {}).items()
                 if k in ("max_seq_length", "resolution", "latents", "pack_len")}
    if self.config.optim.schedule.name == "cosine":   # the only schedule whose constants depend on it
      c["_total_steps"] = self.total_steps
    c.pop("total_steps", None)
    if mesh:
      c["_mesh"] = [str(self.mesh.devices.tolist()), list(self.mesh.axis_names), self.config.mesh.rules]
    c["_batch"] = {k: [list(v.shape), str(v.dtype)] for k, v in self.data.info.global_shapes.items()}
    c["_row_types"] = self._row_types()
    return json.dumps(c, sort_keys=True)

  # -------------------------------------------------------------- state
  def _init_fn(self):
    task, mcfg, layout, tx, seed, ema = self.task, self.model_cfg, self.layout, self.opt.tx, self.config.seed, self.ema

    def init():
      model = task.build(mcfg, nnx.Rngs(seed))
      params, frozen, other = state_lib.model_to_flat(model, layout)
      return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen, other=other,
                                  opt_state=tx.init(params), rng=jax.random.key_data(jax.random.key(seed)),
                                  ema=dict(params) if ema else None)

    return init

  def fresh_state(self) -> state_lib.TrainState:
    """Scratch initialisation: large models are created directly with their shardings (no full copy on one
    device); small ones (< ``SMALL_MODEL_BYTES``) unsharded by one compile shared by every mesh, then placed."""
    with sharding.use_mesh(self.mesh, self.rules):
      state = self._init_jit()
    return jax.device_put(state, self.shardings) if self._small else state

  def restore_target(self):
    return state_lib.with_shardings(state_lib.abstract_state(self.layout, self.opt.tx, self.ema), self.shardings)

  def init_state(self) -> state_lib.TrainState:
    target = self.restore_target()
    it = self.data.iterator
    got = self.ckpt.restore_latest_valid(target, it)
    if got is not None:
      self.origin = f"resumed {self.ckpt.directory}/{got[0]}"
      return got[1]
    if self.config.get("resume", ""):
      other = ckpt_lib.Checkpointer(_resume_dir(self.config.resume), keep=10**6, async_save=False)
      try:
        got = other.restore_latest_valid(target, it)
      finally:
        other.close()
      if got is None:
        raise FileNotFoundError(f"config.resume={self.config.resume!r} holds no restorable checkpoint")
      self.origin = f"config.resume {other.directory}/{got[0]}"
      return got[1]
    state = self.fresh_state()
    if self.config.init.get("path", ""):
      state = apply_init(state, self.layout, self.shardings, self.config.init)
      self.origin = f"config.init {self.config.init.path}"
    else:
      self.origin = "scratch"
    return state

  def save(self, state, step: int, force: bool = False) -> None:
    self.ckpt.save(step, state, self.data.iterator, config_to_json(self.config), force=force)

  # -------------------------------------------------------------- training
  def train(self, *, num_steps: int | None = None) -> dict:
    """Train until ``config.total_steps`` (or ``num_steps`` more steps); returns a summary."""
    cfg = self.config
    state = self.init_state()
    start = int(jax.device_get(state.step))
    end = self.total_steps if num_steps is None else min(self.total_steps, start + num_steps)
    if jax.process_index() == 0:
      os.makedirs(self.workdir, exist_ok=True)
      with open(os.path.join(self.workdir, "config.json"), "w") as f:
        json.dump(config_to_json(cfg), f, indent=1)
    writer = metrics_lib.MetricWriter(self.workdir, tensorboard=cfg.log.tensorboard,
                                      progress_total=self.total_steps if cfg.log.progress else None, start_step=start)
    info = self.data.info
    peak = flops_lib.peak_flops()
    fl = flops_lib.train_step_flops(self.task.name, self.model_cfg, info.global_shapes) \
        if self.task.name in ("lm", "showo2") else 0.0
    thr = metrics_lib.Throughput(fl, info.tokens_per_step, info.global_batch,
                                 peak * jax.device_count() if peak else None)
    log.info("training %s from step %d (%s) to %d; %d trainable / %d frozen parameters", self.task.name, start,
             self.origin, end, self.layout.num_params("params"), self.layout.num_params("frozen"))
    rt = self._row_types() if getattr(self.task, "row_layout", False) else None
    if rt is not None:
      und_max_t0 = (self.config.get("loss", None) or {}).get("und_max_t0", 1.0)
      log.info("row split (loss.row_split): flow head on %d / %d rows, LM head on %d / %d rows",
               len(rows_lib.flow_rows(rt, und_max_t0)), len(rt), len(rows_lib.ntp_rows(rt)), len(rt))
    losses: list[float] = []
    pending: list[tuple[int, dict]] = []
    last_saved = start
    thr.start(start)
    t_begin = time.perf_counter()
    try:
      with sharding.use_mesh(self.mesh, self.rules):
        for step in range(start + 1, end + 1):
          batch = self.data.next_global(self.mesh, self.rules)
          state, m = self.train_step(state, batch)
          if step == start + 1:          # rates exclude compilation: start the clock after the first step
            jax.block_until_ready(m["loss"])
            thr.start(step)
          pending.append((step, m))
          writer.advance()
          log_now = step % cfg.log.every == 0 or step == end
          ckpt_now = bool(cfg.ckpt.every) and step % cfg.ckpt.every == 0
          if log_now or ckpt_now:
            self._flush(pending, writer, thr, losses, log_now)   # blocks: a checkpoint needs a checked step
            pending = []
          elif len(pending) > max(1, int(cfg.log.get("nan_check_every", 1))):
            # one step of lag: check the finished steps while the newest one runs
            self._flush(pending[:-1], writer, thr, losses, False)
            pending = pending[-1:]
          if cfg.ckpt.every and step % cfg.ckpt.every == 0:
            self.save(state, step)
            last_saved = step
          if cfg.log.sample_every and step % cfg.log.sample_every == 0:
            self._sample(state, step, writer)
        if pending:
          self._flush(pending, writer, thr, losses, True)
        if end > last_saved:
          self.save(state, end, force=True)
    finally:
      self.ckpt.wait()
      writer.close()
    return {"start_step": start, "final_step": end, "losses": losses, "origin": self.origin,
            "seconds": time.perf_counter() - t_begin, "state": state}

  def close(self) -> None:
    self.ckpt.close()
    self.data.close()

  def _flush(self, pending, writer, thr, losses, log_now: bool):
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
      if not int(m["finite"]):
        self.ckpt.wait()
        last = self.ckpt.latest_step()
        raise NonFiniteLossError(
            f"step {step}: non-finite loss ({float(m['loss'])}) or gradient norm ({float(m['grad_norm'])}); "
            f"the update was not applied and training stops. Last good checkpoint: "
            f"{os.path.join(self.ckpt.directory, str(last)) if last is not None else 'none'}")
      losses.append(float(m["loss"]))
    if log_now:
      step, m = pending[-1][0], fetched[-1]
      scalars = {k: v for k, v in m.items() if np.ndim(v) == 0}
      scalars.update(thr.measure(step))
      writer.write(step, scalars)
    return fetched

  def _sample(self, state, step, writer) -> None:
    """Sample-grid hook: the family's sampler (if any) on the current parameters → PNG + TensorBoard."""
    if self.task.sampler is None:
      return
    model = self.layout.merge(state.params, state.frozen, state.other)
    out = self.task.sampler(model, self.model_cfg, self.config, self.data.info, step)
    if out is not None:
      images, captions = out
      writer.write_images(step, "samples", np.asarray(images), list(captions))


def run(config, workdir: str, *, num_steps: int | None = None) -> dict:
  """Build a :class:`Trainer` and train (the entry point of ``launch/train.py``)."""
  trainer = Trainer(config, workdir)
  try:
    return trainer.train(num_steps=num_steps)
  finally:
    trainer.close()
