"""The train step: one pure function, jitted once with the train state donated.

``train_step(state, batch)``: per-step key ``fold_in(rng, step)`` (so a resumed run draws the same noise),
loss and gradients w.r.t. the trainable parameters only, global gradient norm, AdamW update (clipping and
per-group LRs inside ``tx``), optional EMA, and a **non-finite guard**: when the loss or the gradient norm
is NaN/Inf the update is dropped (the returned state equals the input state, step included) and
``metrics["finite"]`` is 0; the loop then stops with a clear error, so no checkpoint ever holds the
poisoned update.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from showo_jax.train.state import Layout, TrainState


def make_train_step(layout: Layout, task, tx: optax.GradientTransformation, loss_cfg,
                    schedules: dict[str, Callable], ema_decay: float | None = None,
                    row_types: Sequence[str] | None = None) -> Callable:
  """The un-jitted step ``(state, batch) -> (state, metrics)``.

  ``row_types``: the static per-row data types of every batch (``concat`` mixture), for tasks whose loss
  can skip rows (``Task.row_layout``, ``showo_jax/rows.py``).
  """
  kw = {"row_types": tuple(row_types)} if row_types is not None and getattr(task, "row_layout", False) else {}

  def loss_of(params, frozen, other, batch, key):
    model = layout.merge(params, frozen, other)
    loss, metrics = task.loss(model, batch, key, loss_cfg, **kw)
    return loss.astype(jnp.float32), metrics

  def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(
        state.params, state.frozen, state.other, batch, key)
    grad_norm = optax.global_norm(grads)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_ema = state.ema
    if ema_decay is not None and state.ema is not None:
      new_ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p.astype(e.dtype), state.ema, new_params)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    new_state = TrainState(step=jnp.where(finite, state.step + 1, state.step),
                           params=keep(new_params, state.params), frozen=state.frozen, other=state.other,
                           opt_state=keep(new_opt, state.opt_state), rng=state.rng,
                           ema=None if new_ema is None else keep(new_ema, state.ema))
    out = {"loss": loss, "grad_norm": grad_norm, "param_norm": optax.global_norm(new_params),
           "finite": finite.astype(jnp.int32), **metrics}
    for g, fn in schedules.items():
      out[f"lr/{g}"] = fn(state.step)
    return new_state, out

  return step


def jit_train_step(step_fn: Callable, state_shardings: TrainState, batch_shardings: Any) -> Callable:
  """``jax.jit`` with explicit in/out shardings and the state donated (buffers reused in place)."""
  return jax.jit(step_fn, in_shardings=(state_shardings, batch_shardings),
                 out_shardings=(state_shardings, None), donate_argnums=(0,))


def make_eval_loss(layout: Layout, task, loss_cfg) -> Callable:
  """``(state, batch, key) -> (loss, metrics)`` without gradients (for tests and eval hooks)."""

  @functools.partial(jax.jit)
  def f(state: TrainState, batch, key):
    model = layout.merge(state.params, state.frozen, state.other)
    return task.loss(model, batch, key, loss_cfg)

  return f
