"""On-disk format of converted weights: an Orbax pytree of ``{dotted param path: array}`` + ``meta.json``.

Keys are the model's own parameter paths (``showo.model.layers.3.mlp.up_proj.kernel`` or, for scanned
layers, ``…layers.mlp.up_proj.kernel`` with a leading layer axis), so a directory written here can be
loaded by the train loop (``config.init``), the sampler (``--checkpoint``) and :func:`load_params`.
Orbax writes to a temporary directory and renames on commit, so a crashed conversion leaves no
half-written checkpoint behind.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

import numpy as np
from flax import nnx

from showo_jax.convert import common


def save_params(path: str, flat: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
  import orbax.checkpoint as ocp
  path = os.path.abspath(path)
  os.makedirs(path, exist_ok=True)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.join(path, "params"), {k: np.asarray(v) for k, v in flat.items()}, force=True)
  ckptr.wait_until_finished()
  with open(os.path.join(path, "meta.json"), "w") as f:
    json.dump(dict(meta), f, indent=1, default=str)


def read_meta(path: str) -> dict:
  meta = os.path.join(path, "meta.json")
  if not os.path.exists(meta):
    raise FileNotFoundError(f"{path} is not a converted checkpoint directory (no meta.json)")
  return json.load(open(meta))


def load_flat(path: str, shapes: Mapping[str, tuple] | None = None) -> dict[str, np.ndarray]:
  """Read the ``{path: array}`` tree (``shapes`` restores into exactly those shapes, strictly)."""
  import orbax.checkpoint as ocp
  ckptr = ocp.StandardCheckpointer()
  target = None
  if shapes is not None:
    import jax
    meta_tree = ckptr.metadata(os.path.join(os.path.abspath(path), "params"))
    tree = getattr(meta_tree, "item_metadata", meta_tree)
    tree = getattr(tree, "tree", tree)
    common.check_against(dict(shapes), {k: tuple(v.shape) for k, v in dict(tree).items()})
    target = {k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for k, v in dict(tree).items()}
  restored = ckptr.restore(os.path.join(os.path.abspath(path), "params"), target)
  return {k: np.asarray(v) for k, v in restored.items()}


def load_params(path: str, model: nnx.Module) -> nnx.Module:
  """Strictly fill ``model`` from a converted directory (layout: scanned or looped, as saved)."""
  flat = load_flat(path, common.flat_shapes(model))
  return common.load_into(model, flat)
