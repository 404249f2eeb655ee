"""MAGVIT-v2 state dict (``magvitv2.pth`` / ``showlab/magvitv2``) ↔ :class:`~showo_jax.models.magvit2.MAGVITv2`.

Every ``encoder.*`` / ``decoder.*`` key maps onto the same attribute path: conv weights
``[O, I, kh, kw]`` → ``kernel [kh, kw, I, O]``, GroupNorm weights → ``scale``. The two LFQ buffers
(``quantize.embedding [8192, 13]`` float32, ``quantize.power_vals [13]`` int64) are functions of the bit
count, not parameters: they must equal :func:`~showo_jax.models.magvit2.codebook` / ``2^(12..0)`` bitwise
(a different codebook would silently change the code ↔ image mapping, so it is an error), and export
re-creates them. Strict like every converter; no torch needed (``torch_pickle.load_any``).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from flax import nnx

from showo_jax.convert import common
from showo_jax.convert.common import CONV, ConversionError, Rule
from showo_jax.models.magvit2 import MAGVITv2, MAGVITv2Config, codebook

BUFFERS = ("quantize.embedding", "quantize.power_vals")
_NORMS = r"(norm1|norm2|norm|norm_out)"
_PATH = r"((?:encoder|decoder)(?:\.[A-Za-z_0-9]+)*?)"


def rules(cfg: MAGVITv2Config) -> list[Rule]:
  del cfg  # names do not depend on the sizes
  return [
      Rule(_PATH + r"\." + _NORMS + r"\.weight", "{0}.{1}.scale"),
      Rule(_PATH + r"\." + _NORMS + r"\.bias", "{0}.{1}.bias"),
      Rule(_PATH + r"\.weight", "{0}.kernel", CONV),
      Rule(_PATH + r"\.bias", "{0}.bias"),
  ]


def buffers(cfg: MAGVITv2Config) -> dict[str, np.ndarray]:
  return {"quantize.embedding": codebook(cfg.codebook_dim),
          "quantize.power_vals": 2 ** np.arange(cfg.codebook_dim - 1, -1, -1, dtype=np.int64)}


def official_keys(cfg: MAGVITv2Config) -> list[str]:
  """Official ``state_dict()`` order: encoder, decoder, then the quantiser buffers."""
  keys = []

  def resnet(p, cin, cout):
    out = [f"{p}.norm1.weight", f"{p}.norm1.bias", f"{p}.conv1.weight", f"{p}.conv1.bias",
           f"{p}.norm2.weight", f"{p}.norm2.bias", f"{p}.conv2.weight", f"{p}.conv2.bias"]
    return out + ([f"{p}.nin_shortcut.weight", f"{p}.nin_shortcut.bias"] if cin != cout else [])

  def attn(p):
    return [f"{p}.{n}.{w}" for n in ("norm", "q", "k", "v", "proj_out") for w in ("weight", "bias")]

  def mid(p, c):
    return resnet(f"{p}.mid.block_1", c, c) + attn(f"{p}.mid.attn_1") + resnet(f"{p}.mid.block_2", c, c)

  conv = lambda p: [f"{p}.weight", f"{p}.bias"]
  # encoder
  keys += conv("encoder.conv_in")
  mult = (1,) + tuple(cfg.encoder_ch_mult)
  res = cfg.resolution
  for i, m in enumerate(cfg.encoder_ch_mult):
    cin, cout = cfg.ch * mult[i], cfg.ch * m
    for j in range(cfg.encoder_num_res_blocks[i]):
      keys += resnet(f"encoder.down.{i}.block.{j}", cin, cout)
      cin = cout
    if res in cfg.attn_resolutions:
      for j in range(cfg.encoder_num_res_blocks[i]):
        keys += attn(f"encoder.down.{i}.attn.{j}")
    if i != len(cfg.encoder_ch_mult) - 1:
      keys += conv(f"encoder.down.{i}.downsample.conv")
      res //= 2
  c = cfg.ch * cfg.encoder_ch_mult[-1]
  keys += mid("encoder", c) + ["encoder.norm_out.weight", "encoder.norm_out.bias"]
  keys += conv("encoder.conv_out") + conv("encoder.quant_conv")
  # decoder (module registration order: conv_in, mid, up.0 … up.n-1, norm_out, conv_out, post_quant_conv)
  n = len(cfg.decoder_ch_mult)
  c = cfg.ch * cfg.decoder_ch_mult[-1]
  keys += conv("decoder.conv_in") + mid("decoder", c)
  ups, res = {}, cfg.resolution // 2 ** (n - 1)
  for i in reversed(range(n)):
    cout = cfg.ch * cfg.decoder_ch_mult[i]
    lk = []
    cin = c
    for j in range(cfg.decoder_num_res_blocks[i]):
      lk += resnet(f"decoder.up.{i}.block.{j}", cin, cout)
      cin = cout
    if res in cfg.attn_resolutions:
      for j in range(cfg.decoder_num_res_blocks[i]):
        lk += attn(f"decoder.up.{i}.attn.{j}")
    if i != 0:
      lk += conv(f"decoder.up.{i}.upsample.conv")
      res *= 2
    ups[i] = lk
    c = cout
  for i in range(n):
    keys += ups[i]
  keys += ["decoder.norm_out.weight", "decoder.norm_out.bias"] + conv("decoder.conv_out")
  keys += conv("decoder.post_quant_conv")
  return keys + list(BUFFERS)


def check_buffers(sd: Mapping[str, np.ndarray], cfg: MAGVITv2Config) -> None:
  """The LFQ buffers must be present and equal to the bit-count formulas (bitwise)."""
  errors = []
  for key, want in buffers(cfg).items():
    if key not in sd:
      errors.append(f"{key}: missing (the official state dict always holds it)")
    elif np.shape(sd[key]) != want.shape or not np.array_equal(np.asarray(sd[key]), want):
      errors.append(f"{key}: differs from the LFQ formula for {cfg.codebook_dim} bits (shape {np.shape(sd[key])})")
  if errors:
    raise ConversionError("checkpoint conversion failed:\n  " + "\n  ".join(errors))


def to_flat(sd: Mapping[str, np.ndarray], cfg: MAGVITv2Config) -> dict[str, np.ndarray]:
  check_buffers(sd, cfg)
  return common.to_flat({k: v for k, v in sd.items() if k not in BUFFERS}, rules(cfg))


def shapes_to_flat(shapes: Mapping[str, tuple], cfg: MAGVITv2Config) -> dict[str, tuple]:
  want = {k: v.shape for k, v in buffers(cfg).items()}
  bad = [k for k in BUFFERS if k in shapes and tuple(shapes[k]) != want[k]]
  if bad:
    raise ConversionError(f"checkpoint conversion failed: buffer shapes {bad} do not match {cfg.codebook_dim} bits")
  return common.shapes_to_flat({k: v for k, v in shapes.items() if k not in BUFFERS}, rules(cfg))


def from_flat(flat: Mapping[str, np.ndarray], cfg: MAGVITv2Config) -> dict[str, np.ndarray]:
  keys = official_keys(cfg)
  out = common.from_flat(flat, rules(cfg), [k for k in keys if k not in BUFFERS])
  out.update(buffers(cfg))
  return {k: out[k] for k in keys}


def load(path_or_sd, cfg: MAGVITv2Config, *, dtype=None) -> MAGVITv2:
  """Build a :class:`MAGVITv2` and fill it strictly from a checkpoint path or state dict."""
  from showo_jax.convert import torch_pickle
  sd = torch_pickle.load_any(path_or_sd) if isinstance(path_or_sd, str) else path_or_sd
  flat = to_flat(sd, cfg)
  model = nnx.eval_shape(lambda: MAGVITv2(cfg, rngs=nnx.Rngs(0)))
  return common.load_into(model, flat, dtype=dtype)


def export(model: MAGVITv2) -> dict[str, np.ndarray]:
  return from_flat(common.export_flat(model), model.cfg)
