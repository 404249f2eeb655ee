"""Orbax checkpoints of the whole run: train state, grain iterator state and the config.

Layout: ``<workdir>/checkpoints/<step>/{state, iter, config}`` written by one ``ocp.CheckpointManager``
(async by default, keep-last-N). Orbax writes each step into a temporary directory and renames it only
once every item is complete (``commit_success`` on object stores), so a run killed mid-save leaves no
half-written ``<step>`` behind: temporary directories are never listed as steps and are cleaned up.

Restore walks the finalized steps newest first; a step that fails to restore (deleted/truncated files,
wrong structure) is reported with a clear message and skipped, and the next older one is tried.

``state`` is the :class:`~showo_jax.train.state.TrainState` pytree (flat ``{name: array}`` dicts, the optax
state, step and raw RNG key data); ``iter`` uses grain's own checkpoint handler (per-process state files);
``config`` is the experiment config as JSON (``config.json`` of the step).
"""
from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  pass


def _grain_args():
  import grain
  return grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointRestore


class Checkpointer:
  """Save/restore :class:`TrainState` + data iterator + config under ``directory``."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True, save_iter: bool = True):
    self.directory = os.path.abspath(directory)
    self.save_iter = save_iter
    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True,
                                        cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=opts)

  # ---------------------------------------------------------------- saving
  def save(self, step: int, state: Any, data_iter: Any = None, config: dict | None = None, *,
           force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if self.save_iter and data_iter is not None:
      save_cls, _ = _grain_args()
      items["iter"] = save_cls(data_iter)
    if config is not None:
      items["config"] = ocp.args.JsonSave(config)
    return self.manager.save(int(step), args=ocp.args.Composite(**items), force=force)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  # ---------------------------------------------------------------- restoring
  def steps(self) -> list[int]:
    self.manager.reload()
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    s = self.steps()
    return s[-1] if s else None

  def restore(self, step: int, target: Any, data_iter: Any = None) -> tuple[Any, dict | None]:
    """Restore ``step`` into the abstract ``target`` (shapes, dtypes and shardings); also ``data_iter``."""
    items = {"state": ocp.args.StandardRestore(target)}
    step_dir = os.path.join(self.directory, str(step))
    if self.save_iter and data_iter is not None and os.path.isdir(os.path.join(step_dir, "iter")):
      _, restore_cls = _grain_args()
      items["iter"] = restore_cls(data_iter)
    if os.path.isdir(os.path.join(step_dir, "config")):
      items["config"] = ocp.args.JsonRestore()
    out = self.manager.restore(int(step), args=ocp.args.Composite(**items))
    state = out["state"]
    _check_matches(target, state, step_dir)
    return state, (out["config"] if "config" in items else None)

  def restore_latest_valid(self, target: Any, data_iter: Any = None) -> tuple[int, Any, dict | None] | None:
    """Newest step that restores cleanly, skipping unreadable ones with a message; None if there is none."""
    for step in reversed(self.steps()):
      try:
        state, cfg = self.restore(step, target, data_iter)
        return step, state, cfg
      except Exception as e:  # noqa: BLE001 - any failure means this step is unusable
        msg = (f"checkpoint {os.path.join(self.directory, str(step))} is incomplete or corrupt and is skipped "
               f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        log.warning(msg)
        print(f"WARNING: {msg}", flush=True)
    return None


def _check_matches(target, restored, where: str) -> None:
  t_leaves, t_def = jax.tree.flatten(target)
  r_leaves, r_def = jax.tree.flatten(restored)
  if t_def != r_def:
    raise CheckpointError(f"{where}: state structure differs from the current config's")
  for a, b in zip(t_leaves, r_leaves):
    if tuple(a.shape) != tuple(b.shape):
      raise CheckpointError(f"{where}: shape {tuple(b.shape)} where {tuple(a.shape)} is expected")


def restore_params_only(path: str) -> dict:
  """Parameters of another run's checkpoint (``config.init`` pointing at an Orbax step directory
  ``.../checkpoints/<step>``): a partial restore of the ``state`` item's ``params`` and ``frozen`` dicts
  (optimizer state untouched on disk) as host numpy arrays, merged into one flat ``{name: array}`` dict."""
  import numpy as np
  state_dir = os.path.join(os.path.abspath(path), "state")
  ckptr = ocp.PyTreeCheckpointer()
  meta = ckptr.metadata(state_dir)
  tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
  sub = {k: tree[k] for k in ("params", "frozen") if k in tree}
  item = jax.tree.map(lambda m: np.zeros((0,), np.float32), sub)
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  restored = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=args,
                                                                   partial_restore=True))
  flat = {}
  for part in restored.values():
    flat.update(part)
  return flat
