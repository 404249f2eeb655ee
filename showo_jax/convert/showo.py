"""Show-o v1 checkpoint (``showo.bin`` / ``pytorch_model.safetensors``) ↔ :class:`~showo_jax.models.showo.Showo`.

Composes the Phi rule table under the ``showo.`` prefix (spec §9.2) with the Show-o‡ ``mm_projector``
(upstream ``nn.Sequential`` indices 0 and 2 → our ``mm_projector.0`` / ``mm_projector.1``; index 1 is the
parameter-free GELU). Strict: an unknown key, a missing parameter or a shape mismatch raises one
:class:`~showo_jax.convert.common.ConversionError` listing all of them. No torch: ``.bin``/``.pth`` files
are read by ``convert.torch_pickle.load_any``. Export (:func:`from_flat`) restores the official keys,
order and layouts bitwise.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from flax import nnx

from showo_jax.convert import common, phi as convert_phi
from showo_jax.convert.common import LINEAR, Rule
from showo_jax.models.showo import Showo, ShowoConfig

PREFIX = "showo."


def rules(cfg: ShowoConfig) -> list[Rule]:
  out = convert_phi.rules(cfg.phi, PREFIX, PREFIX)
  if cfg.w_clip_vit:
    out += [
        Rule(r"mm_projector\.0\.weight", "mm_projector.0.kernel", LINEAR),
        Rule(r"mm_projector\.0\.bias", "mm_projector.0.bias"),
        Rule(r"mm_projector\.2\.weight", "mm_projector.1.kernel", LINEAR),
        Rule(r"mm_projector\.2\.bias", "mm_projector.1.bias"),
    ]
  return out


def official_keys(cfg: ShowoConfig) -> list[str]:
  keys = convert_phi.official_keys(cfg.phi, PREFIX)
  if cfg.w_clip_vit:
    keys += ["mm_projector.0.weight", "mm_projector.0.bias", "mm_projector.2.weight", "mm_projector.2.bias"]
  return keys


def to_flat(sd: Mapping[str, np.ndarray], cfg: ShowoConfig) -> dict[str, np.ndarray]:
  """Official state dict → ``{nnx path: array}`` (stacked layers when ``cfg.phi.scan_layers``)."""
  flat = common.to_flat(sd, rules(cfg))
  return convert_phi.stack_if_scanned(flat, cfg.phi, PREFIX)


def shapes_to_flat(shapes: Mapping[str, tuple], cfg: ShowoConfig) -> dict[str, tuple]:
  """Manifest shapes → our parameter shapes (stacked layers when scanning), without any memory."""
  flat = common.shapes_to_flat(shapes, rules(cfg))
  if not cfg.phi.scan_layers:
    return flat
  out, groups = {}, {}
  pre = PREFIX + "model.layers."
  for k, s in flat.items():
    if k.startswith(pre):
      idx, rest = k[len(pre):].split(".", 1)
      groups.setdefault(rest, []).append(s)
    else:
      out[k] = s
  for rest, shapes_ in groups.items():
    out[pre + rest] = (len(shapes_),) + tuple(shapes_[0])
  return out


def from_flat(flat: Mapping[str, np.ndarray], cfg: ShowoConfig) -> dict[str, np.ndarray]:
  """``{nnx path: array}`` → official state dict (official keys, order and layouts)."""
  flat = convert_phi.unstack_if_scanned(flat, cfg.phi, PREFIX)
  return common.from_flat(flat, rules(cfg), official_keys(cfg))


def load(path_or_sd, cfg: ShowoConfig, *, rngs: nnx.Rngs | None = None, dtype=None) -> Showo:
  """Build a :class:`Showo` for ``cfg`` and fill it strictly from a checkpoint path or state dict."""
  from showo_jax.convert import torch_pickle
  sd = torch_pickle.load_any(path_or_sd) if isinstance(path_or_sd, str) else path_or_sd
  flat = to_flat(sd, cfg)
  # Abstract construction: no random initialisation of parameters that are overwritten anyway.
  model = nnx.eval_shape(lambda: Showo(cfg, rngs=rngs or nnx.Rngs(0)))
  return common.load_into(model, flat, dtype=dtype)


def export(model: Showo) -> dict[str, np.ndarray]:
  return from_flat(common.export_flat(model), model.cfg)
