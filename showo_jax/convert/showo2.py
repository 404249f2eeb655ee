"""Official ``Showo2Qwen2_5`` state dict ↔ :class:`~showo_jax.models.showo2.Showo2` (strict, both ways).

Keys (spec ``showo2.md`` §11.2): ``showo.*`` (Qwen2, rules from ``convert/qwen2.py`` with prefix ``showo.``;
the tied 1.5B ``showo.lm_head.weight`` must equal the embedding and is not loaded twice),
``image_embedder_{und,gen}.proj.*`` (Conv2d ``[O, I, kh, kw]`` → ``[kh, kw, I, O]``), ``position_embedding.weight``,
``und_trans.layers.N.*`` (``convert/siglip.py``), ``fusion_proj.{0,1,3}``, ``time_embed.mlp.{0,2}``,
``time_embed_proj``, ``diff_proj.{0,2}``, ``diffusion_head_a.N.*`` (incl. ``self_attn.{q,k}_norm`` and
``adaLN_modulation.1``), ``diffusion_head_b.{norm_final,linear,adaLN_modulation.1}``.

``to_flat`` → ``{nnx path: array}`` for :func:`common.load_into`; ``from_flat`` exports back to the official
keys bitwise (``key_order`` = the official key list, e.g. from a manifest). Scanned layer groups
(``showo.model.layers``, ``und_trans.layers``, ``diffusion_head_a``) are stacked/unstacked automatically.
Also covers the ``showo2_flow_head`` and ``showo2_semantic_layers`` fixtures (their keys are subsets).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import numpy as np

from showo_jax.convert import common, qwen2 as convert_qwen2, siglip as convert_siglip
from showo_jax.convert.common import CONV, IDENT, LINEAR, Rule
from showo_jax.models.flow_head import FlowHeadConfig
from showo_jax.models.showo2 import Showo2Config


def _linear_pair(src: str, dst: str) -> list[Rule]:
  """``src.weight``/``src.bias`` (regex, escaped by caller) → ``dst.kernel``/``dst.bias``."""
  return [Rule(src + r"\.weight", dst + ".kernel", LINEAR), Rule(src + r"\.bias", dst + ".bias", IDENT)]


def flow_head_rules() -> list[Rule]:
  """``time_embed``, ``diffusion_head_a`` and ``diffusion_head_b`` (shared with the flow-head fixture)."""
  lyr = r"diffusion_head_a\.(\d+)\."
  return [
      *_linear_pair(r"time_embed\.mlp\.(0|2)", "time_embed.mlp.{0}"),
      Rule(lyr + r"self_attn\.(q_proj|k_proj|v_proj|o_proj)\.weight", "diffusion_head_a.{0}.self_attn.{1}.kernel", LINEAR),
      Rule(lyr + r"self_attn\.(q_norm|k_norm)\.weight", "diffusion_head_a.{0}.self_attn.{1}.scale"),
      Rule(lyr + r"mlp\.(gate_proj|up_proj|down_proj)\.weight", "diffusion_head_a.{0}.mlp.{1}.kernel", LINEAR),
      Rule(lyr + r"(input_layernorm|post_attention_layernorm)\.weight", "diffusion_head_a.{0}.{1}.scale"),
      Rule(lyr + r"adaLN_modulation\.1\.weight", "diffusion_head_a.{0}.adaLN_modulation.1.kernel", LINEAR),
      Rule(lyr + r"adaLN_modulation\.1\.bias", "diffusion_head_a.{0}.adaLN_modulation.1.bias"),
      Rule(r"diffusion_head_b\.norm_final\.weight", "diffusion_head_b.norm_final.scale"),
      *_linear_pair(r"diffusion_head_b\.linear", "diffusion_head_b.linear"),
      *_linear_pair(r"diffusion_head_b\.adaLN_modulation\.1", "diffusion_head_b.adaLN_modulation.1"),
  ]


def patch_embed_rules(name: str) -> list[Rule]:
  return [Rule(re.escape(name) + r"\.proj\.weight", name + ".proj.kernel", CONV),
          Rule(re.escape(name) + r"\.proj\.bias", name + ".proj.bias")]


def rules(cfg: Showo2Config) -> list[Rule]:
  out = convert_qwen2.rules(cfg.llm, prefix="showo.", dst_prefix="showo.")
  if cfg.use_semantic:
    out += patch_embed_rules("image_embedder_und") + [convert_siglip.position_rule()] + convert_siglip.rules()
  if cfg.use_projector:
    out += patch_embed_rules("image_embedder_gen")
  out += [Rule(r"fusion_proj\.0\.weight", "fusion_proj.0.scale"), *_linear_pair(r"fusion_proj\.(1|3)", "fusion_proj.{0}")]
  if cfg.llm.hidden_size != cfg.flow_head.hidden_size:
    out += _linear_pair(r"time_embed_proj", "time_embed_proj") + _linear_pair(r"diff_proj\.(0|2)", "diff_proj.{0}")
  return out + flow_head_rules()


def aliases(cfg: Showo2Config) -> dict[str, str]:
  return convert_qwen2.aliases(cfg.llm, prefix="showo.")


def _stack(flat: dict, cfg: Showo2Config) -> dict:
  flat = convert_qwen2.stack_if_scanned(flat, cfg.llm, "showo.")
  if cfg.use_semantic:
    flat = convert_siglip.stack_if_scanned(flat, cfg.semantic)
  if cfg.flow_head.scan_layers:
    flat = common.stack_layers(flat, "diffusion_head_a")
  return flat


def _unstack(flat: Mapping[str, np.ndarray], cfg: Showo2Config) -> dict:
  flat = dict(flat)
  for on, prefix in ((cfg.llm.scan_layers, "showo.model.layers"),
                     (cfg.use_semantic and cfg.semantic.scan_layers, "und_trans.layers"),
                     (cfg.flow_head.scan_layers, "diffusion_head_a")):
    if on:
      names = {k[len(prefix) + 1:] for k in flat if k.startswith(prefix + ".")}
      flat = common.unstack_layers(flat, prefix, names)
  return flat


def to_flat(sd: Mapping[str, np.ndarray], cfg: Showo2Config) -> dict[str, np.ndarray]:
  """Official state dict → flat NNX entries (strict: unknown keys raise)."""
  return _stack(common.to_flat(sd, rules(cfg), aliases=aliases(cfg)), cfg)


def shapes_to_flat(shapes: Mapping[str, tuple], cfg: Showo2Config) -> dict[str, tuple]:
  """Manifest shapes → NNX shapes (no memory); scanned groups get their leading layer axis."""
  flat = common.shapes_to_flat(shapes, rules(cfg), aliases=aliases(cfg))
  groups = []
  if cfg.llm.scan_layers:
    groups.append("showo.model.layers")
  if cfg.use_semantic and cfg.semantic.scan_layers:
    groups.append("und_trans.layers")
  if cfg.flow_head.scan_layers:
    groups.append("diffusion_head_a")
  for prefix in groups:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.(.+)")
    stacked: dict[str, tuple] = {}
    counts: dict[str, int] = {}
    rest = {}
    for k, s in flat.items():
      m = pat.fullmatch(k)
      if m:
        stacked[f"{prefix}.{m.group(2)}"] = s
        counts[f"{prefix}.{m.group(2)}"] = counts.get(f"{prefix}.{m.group(2)}", 0) + 1
      else:
        rest[k] = s
    flat = {**rest, **{k: (counts[k],) + tuple(s) for k, s in stacked.items()}}
  return flat


def from_flat(flat: Mapping[str, np.ndarray], cfg: Showo2Config, key_order: Iterable[str]) -> dict[str, np.ndarray]:
  """Flat NNX entries → official state dict with the keys of ``key_order`` (tied head re-emitted)."""
  return common.from_flat(_unstack(flat, cfg), rules(cfg), key_order, aliases=aliases(cfg))


def load_model(sd: Mapping[str, np.ndarray], cfg: Showo2Config, dtype=None):
  """Build :class:`Showo2` abstractly (no random init) and fill it from an official state dict (strict)."""
  from flax import nnx
  from showo_jax.models.showo2 import Showo2
  model = nnx.eval_shape(lambda: Showo2(cfg, rngs=nnx.Rngs(0)))
  return common.load_into(model, to_flat(sd, cfg), dtype=dtype)


# ----------------------------------------------------------------------------- fixture sub-modules
def flow_head_to_flat(sd: Mapping[str, np.ndarray], cfg: FlowHeadConfig) -> dict[str, np.ndarray]:
  """``showo2_flow_head`` fixture (``time_embed.*``, ``diffusion_head_a.N.*``, ``diffusion_head_b.*``)."""
  flat = common.to_flat(sd, flow_head_rules())
  return common.stack_layers(flat, "diffusion_head_a") if cfg.scan_layers else flat


def semantic_layers_rules() -> list[Rule]:
  """``ShowoSemanticLayers`` (stage-0 distillation module): PatchEmbed + position table + SigLIP layers."""
  return patch_embed_rules("image_embedder_und") + [convert_siglip.position_rule()] + convert_siglip.rules()
