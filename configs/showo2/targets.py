"""Per-target presets for the Show-o2 training stages: mesh, sharding rules, remat policy and attention kernel.

``configs/showo2/stage2b.py:size=7b,target=v5p-128`` applies ``TARGET_PRESETS[("v5p-128", "7b", "stage2")]``
on top of the stage recipe, so a pod run needs no hand-edited ``--config.mesh.*`` / ``--config.model.*``
flags. Every entry was proven to fit by compiling the real train step for that target on a CPU-only machine
(``launch/aot_compile.py``); ``proof`` names the report in ``docs/aot/`` (table: ``docs/aot_table.md``).

Keys are ``(target, size, kind)``: ``kind`` is ``stage1`` (stages 1a/1b: LLM and semantic path frozen) or
``stage2`` (stages 2a/2b/2c; proven on 2b/2c, where nothing is frozen: the heaviest stage-2 step, 2a only
trains ``fusion_proj``). The per-device batch is the recipe's (rows per data-parallel device, the reference's
per-GPU ``batch_size``); the global batch is ``rows × data × fsdp``. A combination without a proven entry is
an error, not a guess.

Why these meshes: pure FSDP (``rules="fsdp"``: parameters and AdamW state split over ``fsdp``, the batch over
``data × fsdp``) is enough at these sizes; a ``data`` axis is added where FSDP would otherwise split a weight
axis that does not divide (the 1152-wide SigLIP ``und_trans``: 1152 = 9 · 128, so on 256 chips fsdp = 128 and
data = 2; with fsdp = 256 those weights and their AdamW state stay replicated, +5 GiB per chip) and for
multislice / multi-node targets, where ``data`` is the outermost axis and spans the slow links (DCN between TPU
slices, InfiniBand between GPU nodes) so only the once-per-step gradient all-reduce crosses them.
Attention: Splash with the omni mask on TPU (dense XLA on v4, see its entry), tokamax's Pallas-Triton flash
kernel on H100.
"""
from __future__ import annotations

import dataclasses

from configs import common

# Devices (jax.devices()) per target: TPU chips (v4 / v5p: megacore chips, half the TensorCores of the name),
# GPUs. Must agree with launch/aot_compile.py's TARGETS (tests/test_targets.py checks).
TARGET_DEVICES = {
    "v4-32": 16, "v5e-256": 256, "v5p-128": 64, "v5p-256": 128, "v6e-256": 256, "2xv6e-256": 512,
    "8xh100": 8, "32xh100": 32,
}
KINDS = ("stage1", "stage2")


@dataclasses.dataclass(frozen=True)
class Preset:
  data: int
  fsdp: int
  tensor: int
  remat: str                  # showo_jax/models/remat.py POLICIES
  attention: str              # showo_jax/attention.py impl
  proof: str                  # docs/aot/<file>.json: the compile that showed it fits
  rules: str = "fsdp"         # showo_jax/sharding.py RULES


_H100, _TPU = "tokamax", "splash"

TARGET_PRESETS: dict[tuple[str, str, str], Preset] = {
    # ---- one 8×H100 80GB node: fsdp over the 8 GPUs (NVLink)
    ("8xh100", "1.5b", "stage1"): Preset(1, 8, 1, "minimal", _H100, "s1_15b_8xh100_minimal.json"),
    ("8xh100", "1.5b", "stage2"): Preset(1, 8, 1, "minimal", _H100, "s2b_15b_8xh100_minimal.json"),
    ("8xh100", "7b", "stage1"): Preset(1, 8, 1, "minimal", _H100, "s1_7b_8xh100_minimal.json"),
    ("8xh100", "7b", "stage2"): Preset(1, 8, 1, "minimal", _H100, "s2b_7b_8xh100_minimal.json"),
    # ---- four 8×H100 nodes: fsdp inside a node, data across nodes
    ("32xh100", "7b", "stage2"): Preset(4, 8, 1, "minimal", _H100, "s2b_7b_32xh100.json"),
    # ---- v5p-128 (64 chips, 95 GiB)
    ("v5p-128", "1.5b", "stage1"): Preset(1, 64, 1, "none", _TPU, "s1_15b_v5p128_none.json"),
    ("v5p-128", "1.5b", "stage2"): Preset(1, 64, 1, "minimal", _TPU, "s2b_15b_v5p128_minimal.json"),
    ("v5p-128", "7b", "stage1"): Preset(1, 64, 1, "minimal", _TPU, "s1_7b_v5p128_minimal.json"),
    ("v5p-128", "7b", "stage2"): Preset(1, 64, 1, "minimal", _TPU, "s2b_7b_v5p128_minimal.json"),
    # ---- v5p-256 (128 chips, 95 GiB)
    ("v5p-256", "7b", "stage2"): Preset(2, 64, 1, "minimal", _TPU, "s2b_7b_v5p256.json"),
    # ---- v6e-256 (256 chips, 32 GiB): fsdp 128 so the 1152-wide SigLIP weights shard (see above)
    ("v6e-256", "1.5b", "stage1"): Preset(2, 128, 1, "full", _TPU, "s1_15b_v6e256.json"),
    ("v6e-256", "1.5b", "stage2"): Preset(2, 128, 1, "full", _TPU, "s2b_15b_v6e256.json"),
    ("v6e-256", "7b", "stage1"): Preset(2, 128, 1, "full", _TPU, "s1_7b_v6e256.json"),
    ("v6e-256", "7b", "stage2"): Preset(2, 128, 1, "full", _TPU, "s2b_7b_v6e256.json"),
    # ---- two v6e-256 slices over DCN: data = 2 per slice × 2 slices
    ("2xv6e-256", "7b", "stage2"): Preset(4, 128, 1, "full", _TPU, "s2b_7b_2xv6e256.json"),
    # ---- v5e-256 (256 chips, 16 GiB)
    ("v5e-256", "7b", "stage2"): Preset(2, 128, 1, "full", _TPU, "s2b_7b_v5e256.json"),
    # ---- v4-32 (16 chips, 32 GiB). Dense XLA attention: the Splash kernel's int8 mask tiles do not lower on
    # v4 (Mosaic: "failed to legalize operation 'arith.cmpi'" on vector<8x128x4xi8>), so the reference path runs.
    ("v4-32", "7b", "stage2"): Preset(1, 16, 1, "full", "xla", "s2b_7b_v4_32.json"),
}


def get(target: str, size: str, kind: str) -> Preset:
  if target not in TARGET_DEVICES:
    raise ValueError(f"unknown target {target!r}; known: {sorted(TARGET_DEVICES)}")
  key = (target, size, kind)
  if key not in TARGET_PRESETS:
    have = sorted(f"{t}:{s}:{k}" for t, s, k in TARGET_PRESETS if t == target)
    raise ValueError(f"no AOT-proven preset for target={target} size={size} {kind}; this target has {have} "
                     "(compile one with launch/aot_compile.py and add it to configs/showo2/targets.py)")
  return TARGET_PRESETS[key]


def apply(config: common.ConfigDict, target: str, size: str, kind: str) -> common.ConfigDict:
  """Set ``config.mesh`` (data, fsdp, tensor, rules; all devices), ``model.remat_policy`` and
  ``model.attention_impl`` from the preset, and record ``config.target``."""
  p = get(target, size, kind)
  config.mesh = common.mesh_block(p.data, p.fsdp, p.tensor, p.rules, num_devices=0)
  config.model.remat_policy = p.remat
  config.model.attention_impl = p.attention
  config.target = target
  return config
