"""SigLIP encoder-layer rules, and the HF ``SiglipModel`` → Show-o2 semantic-layer mapping.

Show-o2 builds ``und_trans`` from ``SiglipModel.from_pretrained('google/siglip-so400m-patch14-384')``:
``position_embedding = vision_model.embeddings.position_embedding`` and
``und_trans = vision_model.encoder`` with its last layer deleted (spec ``showo2.md`` §7, manifest header of
``siglip_so400m_patch14_384.tsv``). :func:`from_hf_siglip` does exactly that renaming on an HF state dict; every
other key (text tower, patch embedding, post-LayerNorm, head, the deleted layer, logit scale/bias) is skipped
*explicitly*, so an unexpected key still raises.

Layouts: Linear ``weight [out, in]`` → ``kernel [in, out]``; LayerNorm ``weight`` → ``scale``;
``nn.Embedding.weight`` → ``embedding``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from showo_jax.convert import common
from showo_jax.convert.common import IDENT, LINEAR, Rule
from showo_jax.models.siglip import SiglipConfig


def rules(prefix: str = "und_trans.", dst_prefix: str = "und_trans.") -> list[Rule]:
  """Encoder-layer rules (``{prefix}layers.N.…`` → ``{dst_prefix}layers.N.…``)."""
  p, d = re.escape(prefix), dst_prefix
  lyr = p + r"layers\.(\d+)\."
  return [
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.weight", d + "layers.{0}.self_attn.{1}.kernel", LINEAR),
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj|out_proj)\.bias", d + "layers.{0}.self_attn.{1}.bias", IDENT),
      Rule(lyr + r"(layer_norm1|layer_norm2)\.weight", d + "layers.{0}.{1}.scale", IDENT),
      Rule(lyr + r"(layer_norm1|layer_norm2)\.bias", d + "layers.{0}.{1}.bias", IDENT),
      Rule(lyr + r"mlp\.(fc1|fc2)\.weight", d + "layers.{0}.mlp.{1}.kernel", LINEAR),
      Rule(lyr + r"mlp\.(fc1|fc2)\.bias", d + "layers.{0}.mlp.{1}.bias", IDENT),
  ]


def position_rule(prefix: str = "", dst_prefix: str = "") -> Rule:
  return Rule(re.escape(prefix) + r"position_embedding\.weight", dst_prefix + "position_embedding.embedding")


def stack_if_scanned(flat: dict, cfg: SiglipConfig, dst_prefix: str = "und_trans.") -> dict:
  return common.stack_layers(flat, dst_prefix + "layers") if cfg.scan_layers else flat


def unstack_if_scanned(flat: Mapping[str, np.ndarray], cfg: SiglipConfig, dst_prefix: str = "und_trans.") -> dict:
  if not cfg.scan_layers:
    return dict(flat)
  pre = dst_prefix + "layers."
  names = {k[len(pre):] for k in flat if k.startswith(pre)}
  return common.unstack_layers(flat, dst_prefix + "layers", names)


def hf_to_showo2_keys(sd: Mapping[str, Any], num_kept_layers: int = 26) -> dict[str, Any]:
  """HF ``SiglipModel`` keys → the official Show-o2 keys (``position_embedding.*``, ``und_trans.layers.*``).

  Values pass through untouched (arrays, or shapes for manifests). Raises on any key that is neither mapped
  nor one of the explicitly dropped groups, and unless exactly one (the last) encoder layer is dropped.
  """
  out, unused, layer_ids = {}, [], set()
  drop = [r"logit_scale", r"logit_bias", r"text_model\..*", r"vision_model\.embeddings\.patch_embedding\..*",
          r"vision_model\.post_layernorm\..*", r"vision_model\.head\..*"]
  for key, value in sd.items():
    if key == "vision_model.embeddings.position_embedding.weight":
      out["position_embedding.weight"] = value
      continue
    m = re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)", key)
    if m:
      layer_ids.add(int(m.group(1)))
      if int(m.group(1)) < num_kept_layers:
        out[f"und_trans.layers.{m.group(1)}.{m.group(2)}"] = value
      continue  # layers past the kept ones: deleted upstream (``del und_trans.layers[-1]``)
    if any(re.fullmatch(p, key) for p in drop):
      continue
    unused.append(key)
  if layer_ids and max(layer_ids) != num_kept_layers:
    # Upstream deletes exactly ONE (the last) layer; anything else means a config/checkpoint mismatch.
    unused.append(f"checkpoint has {max(layer_ids) + 1} encoder layers, expected {num_kept_layers + 1}")
  if unused:
    raise common.ConversionError(common._report(unused=unused))
  return out


def from_hf_siglip(sd: Mapping[str, np.ndarray], cfg: SiglipConfig) -> dict[str, np.ndarray]:
  """HF ``SiglipModel`` state dict → flat NNX entries for ``position_embedding`` and ``und_trans``."""
  official = hf_to_showo2_keys(sd, cfg.num_hidden_layers)
  flat = common.to_flat(official, rules() + [position_rule()])
  return stack_if_scanned(flat, cfg)
