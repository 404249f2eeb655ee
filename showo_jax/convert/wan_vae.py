"""``Wan2.1_VAE.pth`` state dict ↔ :class:`~showo_jax.models.wan_vae.WanVAE` (spec ``showo2.md`` §11.4).

Our attribute paths equal the official keys (``nn.Sequential`` indices included), so the table is layout
rules only: every ``weight`` is a conv (Conv3d ``[O, I, t, h, w]`` → ``kernel [t, h, w, I, O]``, Conv2d
``[O, I, h, w]`` → ``[h, w, I, O]``), biases are unchanged, and ``RMS_norm.gamma`` ``(C,1,1,1)`` (video norms)
or ``(C,1,1)`` (the attention norm, ``images=True``) becomes ``(C,)``; export restores the singleton dims, so
``from_flat(to_flat(sd))`` reproduces the file bitwise. The 194 keys of the real file are checked against
``shared/parity/manifests/wan21_vae.tsv`` in the tests.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from showo_jax.convert import common
from showo_jax.convert.common import CONV, IDENT, Rule, flatten_to

GAMMA_3D = flatten_to((1, 1, 1))   # RMS_norm(images=False)
GAMMA_2D = flatten_to((1, 1))      # RMS_norm(images=True): AttentionBlock.norm

# A block inside the encoder/decoder lists: encoder.downsamples.N, encoder.middle.N, decoder.upsamples.N, ...
_BLOCK = r"((?:encoder\.(?:downsamples|middle)|decoder\.(?:upsamples|middle))\.\d+)"

RULES: list[Rule] = [
    # top level: WanVAE_.conv1 (after the encoder) / conv2 (before the decoder), 1×1×1
    Rule(r"(conv1|conv2)\.weight", "{0}.kernel", CONV),
    Rule(r"(conv1|conv2)\.bias", "{0}.bias", IDENT),
    # Encoder3d / Decoder3d stems and heads: conv1, head = [RMS_norm, SiLU, CausalConv3d]
    Rule(r"(encoder|decoder)\.conv1\.weight", "{0}.conv1.kernel", CONV),
    Rule(r"(encoder|decoder)\.conv1\.bias", "{0}.conv1.bias", IDENT),
    Rule(r"(encoder|decoder)\.head\.0\.gamma", "{0}.head.0.gamma", GAMMA_3D),
    Rule(r"(encoder|decoder)\.head\.2\.weight", "{0}.head.2.kernel", CONV),
    Rule(r"(encoder|decoder)\.head\.2\.bias", "{0}.head.2.bias", IDENT),
    # ResidualBlock: residual = [RMS_norm, SiLU, conv, RMS_norm, SiLU, Dropout, conv], shortcut conv 1×1×1
    Rule(_BLOCK + r"\.residual\.([03])\.gamma", "{0}.residual.{1}.gamma", GAMMA_3D),
    Rule(_BLOCK + r"\.residual\.([26])\.weight", "{0}.residual.{1}.kernel", CONV),
    Rule(_BLOCK + r"\.residual\.([26])\.bias", "{0}.residual.{1}.bias", IDENT),
    Rule(_BLOCK + r"\.shortcut\.weight", "{0}.shortcut.kernel", CONV),
    Rule(_BLOCK + r"\.shortcut\.bias", "{0}.shortcut.bias", IDENT),
    # Resample: resample = [ZeroPad2d | Upsample, Conv2d]; time_conv (3,1,1) in the *3d modes
    Rule(_BLOCK + r"\.resample\.1\.weight", "{0}.resample.1.kernel", CONV),
    Rule(_BLOCK + r"\.resample\.1\.bias", "{0}.resample.1.bias", IDENT),
    Rule(_BLOCK + r"\.time_conv\.weight", "{0}.time_conv.kernel", CONV),
    Rule(_BLOCK + r"\.time_conv\.bias", "{0}.time_conv.bias", IDENT),
    # AttentionBlock: norm (images=True), to_qkv / proj Conv2d 1×1 (channels split [q | k | v])
    Rule(_BLOCK + r"\.norm\.gamma", "{0}.norm.gamma", GAMMA_2D),
    Rule(_BLOCK + r"\.(to_qkv|proj)\.weight", "{0}.{1}.kernel", CONV),
    Rule(_BLOCK + r"\.(to_qkv|proj)\.bias", "{0}.{1}.bias", IDENT),
]

# Number of tensors in the released Wan2.1_VAE.pth.
NUM_KEYS = 194


def rules(prefix: str = "", dst_prefix: str = "") -> list[Rule]:
  """:data:`RULES` under an optional source key prefix (e.g. ``"vae."``) and destination path prefix."""
  if not prefix and not dst_prefix:
    return list(RULES)
  p = prefix.replace(".", r"\.")
  return [Rule(p + r.src, dst_prefix + r.dst, r.transform) for r in RULES]


def to_flat(sd: Mapping[str, np.ndarray], prefix: str = "", dst_prefix: str = "") -> dict[str, np.ndarray]:
  """Official state dict → ``{nnx path: array}`` (strict: an unknown key raises)."""
  return common.to_flat(sd, rules(prefix, dst_prefix))


def official_key(path: str, prefix: str = "", dst_prefix: str = "") -> str:
  """Our parameter path → the official key (``kernel`` → ``weight``; everything else is the same name)."""
  if dst_prefix and not path.startswith(dst_prefix):
    raise ValueError(f"{path} is not under {dst_prefix!r}")
  rest = path[len(dst_prefix):]
  if rest.endswith(".kernel"):
    rest = rest[:-len("kernel")] + "weight"
  return prefix + rest


def from_flat(flat: Mapping[str, np.ndarray], key_order: Iterable[str] | None = None, prefix: str = "",
              dst_prefix: str = "") -> dict[str, np.ndarray]:
  """``{nnx path: array}`` → official state dict (exact inverse of :func:`to_flat`).

  ``key_order`` defaults to the official keys of the paths in ``flat``, in ``flat``'s order.
  """
  if key_order is None:
    key_order = [official_key(k, prefix, dst_prefix) for k in flat]
  return common.from_flat(flat, rules(prefix, dst_prefix), key_order)


def load_checkpoint(path: str) -> dict[str, np.ndarray]:
  """Read ``Wan2.1_VAE.pth`` (torch zip, no torch needed) or a ``.safetensors`` copy as ``{name: array}``."""
  from showo_jax.convert import torch_pickle
  return torch_pickle.load_any(path)


def load_into(model, sd_or_path, dtype=None):
  """Fill a :class:`WanVAE` (concrete or from ``nnx.eval_shape``) from a state dict or checkpoint path."""
  sd = load_checkpoint(sd_or_path) if isinstance(sd_or_path, str) else sd_or_path
  return common.load_into(model, to_flat(sd), dtype=dtype)


def load_model(sd_or_path, cfg=None, dtype=None):
  """``Wan2.1_VAE.pth`` → a :class:`WanVAE` without a random init (built abstractly, then filled; strict)."""
  from flax import nnx

  from showo_jax.models.wan_vae import WanVAE, WanVAEConfig
  cfg = cfg or WanVAEConfig.wan2_1()
  return load_into(nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0))), sd_or_path, dtype)
