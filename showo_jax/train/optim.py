"""Optimizer: AdamW with the reference LR schedules, frozen-parameter filters and per-group LRs.

Mirrors ``showlab/Show-o@45a5a2d:show-o2/train_stage_{one,two}.py`` (optimizer and param groups),
``show-o2/models/lr_schedulers.py`` (schedules) and ``show-o2/utils.py:_freeze_params`` (freezing):

* **Freezing** is by substring of the parameter name (the reference's ``frozen_params`` lists; e.g.
  ``'diffusion'`` freezes ``diffusion_head_a`` and ``diffusion_head_b``), plus optional regexes. Frozen
  parameters get no gradient, no optimizer state, and do not enter the clipping norm.
* **Groups** (stage 2): a trainable parameter belongs to the first group whose substrings match; a
  parameter matching two groups is an error (torch raises for that too). Trainable parameters in *no*
  group still receive gradients and count in the clipping norm, but are never updated: the reference's
  ``time_embed`` in stage 2 (requires_grad, absent from every group). Without groups one group holds all.
* **Schedules** (LambdaLR semantics, ``step`` = number of updates already applied, starting at 0):
  ``constant_with_warmup``: ``lr·min(1, step/warmup)`` (warmup 0 = constant);
  ``cosine``: ``step/max(1,warmup)`` during warmup, then ``max(0, ½(1+cos(π·progress)))`` with
  ``progress = (step−warmup)/max(1, total−warmup)``; ``constant``.
* **AdamW**: torch's decoupled weight decay equals optax ``adamw`` (``p -= lr·(adam + wd·p)``; eps added
  to ``sqrt(v̂)``); ``clip_by_global_norm(max_grad_norm)`` runs first, over every trainable gradient.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Mapping, Sequence

import jax.numpy as jnp
import optax

NO_GROUP = "__no_group__"


def schedule_fn(name: str, base_lr: float, *, warmup_steps: int = 0, total_steps: int = 0) -> Callable:
  """The reference LR schedule as an optax schedule (a function of the update count)."""
  warmup = int(warmup_steps or 0)
  if name == "constant":
    return lambda step: jnp.asarray(base_lr, jnp.float32)
  if name == "constant_with_warmup":
    def f(step):
      s = jnp.asarray(step, jnp.float32)
      mult = jnp.where(s < warmup, s / max(1.0, float(warmup)), 1.0) if warmup > 0 else 1.0
      return jnp.asarray(base_lr, jnp.float32) * mult
    return f
  if name == "cosine":
    if total_steps <= 0:
      raise ValueError("the cosine schedule needs total_steps > 0")

    def f(step):
      s = jnp.asarray(step, jnp.float32)
      warm = s / float(max(1, warmup))
      progress = (s - warmup) / float(max(1, total_steps - warmup))
      cos = jnp.maximum(0.0, 0.5 * (1.0 + jnp.cos(math.pi * progress)))
      return jnp.asarray(base_lr, jnp.float32) * jnp.where(s < warmup, warm, cos)
    return f
  raise ValueError(f"unknown LR schedule {name!r}; choose constant, constant_with_warmup or cosine")


def warmup_steps_of(sched_cfg, total_steps: int) -> int:
  """``warmup_steps`` if set, else ``int(total_steps · warmup_ratio)`` (stage 2's 3 %)."""
  ws = sched_cfg.get("warmup_steps", None)
  if ws is not None and ws >= 0:
    return int(ws)
  return int(total_steps * float(sched_cfg.get("warmup_ratio", 0.0) or 0.0))


# ------------------------------------------------------------------ parameter selection
@dataclasses.dataclass(frozen=True)
class ParamFilter:
  """Substrings and regexes over dotted parameter names; matches if any of them does."""
  substrings: tuple[str, ...] = ()
  regexes: tuple[str, ...] = ()

  def __call__(self, name: str) -> bool:
    return any(s in name for s in self.substrings) or any(re.search(r, name) for r in self.regexes)

  def __bool__(self) -> bool:
    return bool(self.substrings or self.regexes)


def frozen_filter(trainable_cfg) -> ParamFilter:
  return ParamFilter(tuple(trainable_cfg.get("frozen", None) or ()), tuple(trainable_cfg.get("frozen_regex", None) or ()))


def split_names(names: Sequence[str], frozen: ParamFilter) -> tuple[list[str], list[str]]:
  """(trainable, frozen) parameter names."""
  fr = [n for n in names if frozen(n)]
  tr = [n for n in names if not frozen(n)]
  return tr, fr


def group_labels(names: Sequence[str], groups: Mapping[str, Sequence[str]] | None) -> dict[str, str]:
  """Name → group (``NO_GROUP`` when groups are given and none matches). Ambiguity is an error."""
  if not groups:
    return {n: "all" for n in names}
  labels = {}
  for n in names:
    hits = [g for g, subs in groups.items() if any(s in n for s in subs)]
    if len(hits) > 1:
      raise ValueError(f"parameter {n!r} matches several optimizer groups {hits}; make the groups disjoint")
    labels[n] = hits[0] if hits else NO_GROUP
  return labels


# ------------------------------------------------------------------ the optimizer
@dataclasses.dataclass
class Optimizer:
  tx: optax.GradientTransformation
  labels: dict[str, str]                    # trainable name -> group
  schedules: dict[str, Callable]            # group -> lr(step)


def build(optim_cfg, names: Sequence[str], total_steps: int) -> Optimizer:
  """AdamW over the trainable ``names`` from the config's ``optim`` block."""
  groups_cfg = optim_cfg.get("groups", None) or {}
  groups = {g: list(v["params"]) for g, v in groups_cfg.items()}
  labels = group_labels(names, groups)
  sched_cfg = optim_cfg.schedule
  warmup = warmup_steps_of(sched_cfg, total_steps)
  schedules, txs = {}, {}
  no_decay = list(optim_cfg.get("no_decay", None) or [])
  # The reference's second AdamW group (Show-o v1: names containing "bias" get weight_decay 0); the mask
  # is a function of the flat {name: array} tree, so it follows whatever subset a group hands to AdamW.
  decay_mask = (lambda tree: {n: not any(s in n for s in no_decay) for n in tree}) if no_decay else None
  group_names = list(groups) if groups else ["all"]
  for g in group_names:
    lr = float(groups_cfg[g]["lr"]) if groups else float(optim_cfg.lr)
    schedules[g] = schedule_fn(sched_cfg.name, lr, warmup_steps=warmup, total_steps=total_steps)
    if optim_cfg.name != "adamw":
      raise ValueError(f"unknown optimizer {optim_cfg.name!r}; only adamw is implemented")
    txs[g] = optax.adamw(schedules[g], b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps,
                         weight_decay=optim_cfg.weight_decay, mask=decay_mask)
  if NO_GROUP in labels.values():
    txs[NO_GROUP] = optax.set_to_zero()
  chain = []
  if optim_cfg.get("grad_clip", None):
    chain.append(optax.clip_by_global_norm(float(optim_cfg.grad_clip)))
  chain.append(optax.multi_transform(txs, dict(labels)))
  return Optimizer(tx=optax.chain(*chain), labels=labels, schedules=schedules)
