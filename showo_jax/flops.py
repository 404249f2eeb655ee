"""Model FLOPs per train step (for MFU) and nominal peak FLOP rates of devices.

Convention (PaLM appendix B / MaxText): a train step costs 3× the forward matmul FLOPs (forward + two
backward matmuls per forward one), counting every matmul of every parameter whether trainable or frozen,
plus attention scores and values over the full (unmasked) key length. Omni/causal masking, remat
recomputation and elementwise ops are not counted, so MFU is comparable across masks and remat policies.

Families: ``lm`` (Qwen2 alone), ``showo2`` (Qwen2 + SigLIP semantic layers + dual-path fusion + flow head
over all L positions), ``showo`` (Show-o v1: Phi-1.5 with the extended vocabulary, plus the CLIP projector of
Show-o‡), ``phi`` (Phi-1.5 alone). The Wan2.1 VAE (convolutions, frozen, run on the data path) is counted by
XLA's HLO cost analysis of the real module (:func:`wan_vae_flops`; :func:`xla_flops` does this for any
function), which needs no hand-written conv arithmetic and stays exact when the architecture changes. ``peak_flops(device)`` returns a dense bf16 peak per chip for known accelerators;
on CPU it estimates cores × clock × SIMD FMA width (a nominal figure; override with
``SHOWO_PEAK_FLOPS``).
"""
from __future__ import annotations

import os
import re


def _linear(n_in: int, n_out: int) -> float:
  return 2.0 * n_in * n_out


def qwen2_forward(cfg, batch: int, seq_len: int, logits: bool = True) -> float:
  """Forward FLOPs of the Qwen2 decoder (+ LM head) on ``batch × seq_len`` tokens."""
  d, e = cfg.hidden_size, cfg.dim_head
  n, k, f = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size
  per_tok = (_linear(d, n * e) + 2 * _linear(d, k * e) + _linear(n * e, d) + 3 * _linear(d, f))
  per_tok_attn = 2 * 2.0 * seq_len * n * e
  total = batch * seq_len * cfg.num_hidden_layers * (per_tok + per_tok_attn)
  if logits:
    total += batch * seq_len * _linear(d, cfg.vocab_size)
  return total


def siglip_forward(cfg, images: int, tokens: int) -> float:
  d, f = cfg.hidden_size, cfg.intermediate_size
  per_tok = 4 * _linear(d, d) + 2 * _linear(d, f) + 2 * 2.0 * tokens * d
  return images * tokens * cfg.num_hidden_layers * per_tok


def flow_head_forward(cfg, batch: int, seq_len: int, slots: int) -> float:
  dh, e = cfg.hidden_size, cfg.head_dim
  n, k, f = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size
  per_tok = (_linear(dh, n * e) + 2 * _linear(dh, k * e) + _linear(n * e, dh) + 3 * _linear(dh, f)
             + 2 * 2.0 * seq_len * n * e)
  adaln = slots * cfg.num_layers * _linear(dh, 6 * dh) + slots * _linear(dh, 2 * dh)
  return batch * seq_len * (cfg.num_layers * per_tok + _linear(dh, cfg.out_dim)) + adaln


def showo2_forward(cfg, batch: int, seq_len: int, slots: int, image_tokens: int) -> float:
  """Show-o2 forward on ``batch × seq_len`` with ``slots`` latent slots of ``image_tokens`` tokens each."""
  d, dh = cfg.hidden_size, cfg.flow_head.hidden_size
  pin = cfg.patch_size ** 2 * cfg.image_latent_dim
  total = qwen2_forward(cfg.llm, batch, seq_len)
  vis = 0.0
  fusion_in = 0
  if cfg.use_semantic:
    ds = cfg.clip_latent_dim
    vis += slots * image_tokens * _linear(pin, ds) + siglip_forward(cfg.semantic, slots, image_tokens)
    fusion_in += ds
  if cfg.use_projector:
    vis += slots * image_tokens * _linear(pin, d)
    fusion_in += d
  vis += slots * image_tokens * (_linear(fusion_in, d) + _linear(d, d))
  time = slots * (_linear(cfg.flow_head.frequency_embedding_size, dh) + _linear(dh, dh) + _linear(dh, d))
  diff_proj = batch * seq_len * (_linear(d, dh) + _linear(dh, dh)) if d != dh else 0.0
  return total + vis + time + diff_proj + flow_head_forward(cfg.flow_head, batch, seq_len, slots)


def phi_forward(cfg, batch: int, seq_len: int, logits: bool = True, vocab_size: int | None = None) -> float:
  """Forward FLOPs of Phi-1.5 (parallel attention + MLP block, fc1/fc2 GELU MLP, dense q/k/v/o with bias)."""
  d, f = cfg.hidden_size, cfg.intermediate_size
  n = cfg.num_attention_heads
  e = d // n
  k = cfg.num_key_value_heads or n
  per_tok = _linear(d, n * e) + 2 * _linear(d, k * e) + _linear(n * e, d) + 2 * _linear(d, f)
  per_tok_attn = 2 * 2.0 * seq_len * n * e
  total = batch * seq_len * cfg.num_hidden_layers * (per_tok + per_tok_attn)
  if logits:
    total += batch * seq_len * _linear(d, vocab_size or cfg.vocab_size)
  return total


def showo_forward(cfg, batch: int, seq_len: int, clip_tokens: int = 0) -> float:
  """Show-o v1 forward: Phi over ``seq_len`` tokens with the extended vocabulary head (text + special +
  codebook + mask rows, i.e. ``cfg.vocab_size``); with ``w_clip_vit`` the ``mm_projector`` (Linear → GELU → Linear) on ``clip_tokens`` CLIP
  features per row (the CLIP tower itself runs frozen on the data path, like the VQ tokenizer)."""
  total = phi_forward(cfg.phi, batch, seq_len, vocab_size=cfg.phi.vocab_size)
  if cfg.w_clip_vit and clip_tokens:
    d = cfg.phi.hidden_size
    total += batch * clip_tokens * (_linear(cfg.clip_hidden_size, d) + _linear(d, d))
  return total


def xla_flops(fn, *abstract_args) -> float:
  """FLOPs of ``fn(*abstract_args)`` from XLA's cost analysis of the lowered (unoptimised) HLO; no compile."""
  import jax
  cost = jax.jit(fn).lower(*abstract_args).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


def wan_vae_flops(cfg, pixel_shape: tuple[int, ...], part: str = "encode") -> float:
  """Forward FLOPs of the Wan2.1 VAE on pixels ``[b, t, h, w, 3]`` (``part="encode"``) or of decoding the
  latents of such pixels (``part="decode"``), counted by XLA on the real module built abstractly."""
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from showo_jax.models import wan_vae
  vae = nnx.eval_shape(lambda: wan_vae.WanVAE(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(vae)
  b, t, h, w, _ = pixel_shape
  dt = jnp.dtype(cfg.dtype) if isinstance(cfg.dtype, str) else cfg.dtype
  if part == "encode":
    x = jax.ShapeDtypeStruct(pixel_shape, dt)
    return xla_flops(lambda st, x: nnx.merge(graphdef, st).encode(x), state, x)
  if part == "decode":
    tl = 1 + (t - 1) // 4
    z = jax.ShapeDtypeStruct((b, tl, h // 8, w // 8, cfg.z_dim), dt)
    return xla_flops(lambda st, z: nnx.merge(graphdef, st).decode(z), state, z)
  raise ValueError(f"part must be 'encode' or 'decode', got {part!r}")


def per_token(family: str, model_cfg, seq_len: int, **kw) -> float:
  """Training FLOPs per token (3 × forward) of one ``seq_len`` row: the number MFU multiplies by tokens/s.

  ``showo2`` takes ``slots`` and ``image_tokens`` (default: one image of the config's token grid);
  ``showo`` takes ``clip_tokens``."""
  if family == "lm":
    f = qwen2_forward(model_cfg, 1, seq_len)
  elif family == "phi":
    f = phi_forward(model_cfg, 1, seq_len)
  elif family == "showo":
    f = showo_forward(model_cfg, 1, seq_len, kw.get("clip_tokens", 0))
  elif family == "showo2":
    grid = model_cfg.image_latent_height * model_cfg.image_latent_width
    f = showo2_forward(model_cfg, 1, seq_len, kw.get("slots", 1), kw.get("image_tokens", grid))
  else:
    raise ValueError(f"no FLOP model for family {family!r}")
  return 3.0 * f / seq_len


def train_step_flops(family: str, model_cfg, batch: dict) -> float:
  """3 × forward FLOPs of one step on ``batch`` (a dict of arrays or ShapeDtypeStructs)."""
  b, l = batch["text_tokens"].shape
  if family == "lm":
    return 3.0 * qwen2_forward(model_cfg, b, l)
  if family == "showo2":
    lat = batch["latents"].shape
    slots = lat[0]
    spatial = 1
    for s in lat[1:-1]:
      spatial *= s
    return 3.0 * showo2_forward(model_cfg, b, l, slots, spatial // model_cfg.patch_size ** 2)
  if family == "showo":
    clip = batch["clip_features"].shape[1] if "clip_features" in batch else 0
    return 3.0 * showo_forward(model_cfg, b, l, clip)
  if family == "phi":
    return 3.0 * phi_forward(model_cfg, b, l)
  raise ValueError(f"no FLOP model for family {family!r}")


# --------------------------------------------------------------------------------------- peak rates
_PEAK_BF16 = [  # dense bf16 FLOP/s per chip (vendor data sheets)
    (r"h200", 989e12), (r"h100", 989e12), (r"h800", 989e12), (r"a100", 312e12), (r"l4", 121e12),
    (r"b200", 2250e12), (r"gb200", 2500e12),
    (r"v6", 918e12), (r"v5p", 459e12), (r"v5 lite|v5e|v5litepod", 197e12), (r"v4", 275e12), (r"v3", 123e12),
]


def _cpu_peak() -> float:
  """Nominal CPU f32 peak: cores × GHz × FMA lanes (AVX-512: 32, AVX2: 16 f32 FMAs = ×2 FLOPs)."""
  cores = os.cpu_count() or 1
  ghz, flags = 2.0, ""
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
    m = re.search(r"cpu MHz\s*:\s*([\d.]+)", info)
    if m:
      ghz = float(m.group(1)) / 1000
    m = re.search(r"flags\s*:\s*(.*)", info)
    flags = m.group(1) if m else ""
  except OSError:
    pass
  lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
  return cores * ghz * 1e9 * lanes * 2 * (2 if "fma" in flags else 1)


def peak_flops(device=None) -> float | None:
  """Peak FLOP/s of one device (``SHOWO_PEAK_FLOPS`` overrides); None when unknown."""
  if os.environ.get("SHOWO_PEAK_FLOPS"):
    return float(os.environ["SHOWO_PEAK_FLOPS"])
  import jax
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    return _cpu_peak() / max(1, len(jax.local_devices()))
  kind = device.device_kind.lower()
  for pat, val in _PEAK_BF16:
    if re.search(pat, kind):
      return val
  return None
