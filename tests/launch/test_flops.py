"""``showo_jax.flops``: the analytic forward FLOPs equal the matmul FLOPs of the real forward pass.

Every ``dot_general`` in the forward jaxpr (scans, remat and custom-vjp bodies included) is counted as
``2 · batch · M · N · K`` and every convolution as ``2 · outputs · (kernel size · C_in)``; the analytic model must match it exactly for every family with an analytic model
(Qwen2 / lm, Phi, Show-o v1, Show-o2). The Wan VAE is counted by XLA itself; checked to be positive and to
scale with the number of frames.
"""
import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from showo_jax import flops


def _dot_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
      a, b = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
      k = math.prod(a[i] for i in lc)
      batch = math.prod(a[i] for i in lb)
      m = math.prod(a[i] for i in range(len(a)) if i not in lc and i not in lb)
      n = math.prod(b[i] for i in range(len(b)) if i not in rc and i not in eqn.params["dimension_numbers"][1][1])
      total += 2.0 * batch * m * n * k
    elif eqn.primitive.name == "conv_general_dilated":   # patch embeddings are strided convs
      rhs = eqn.invars[1].aval.shape
      out_ch = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
      per_out = math.prod(rhs) // out_ch // eqn.params["feature_group_count"]
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_out
    mult = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for sub in _subjaxprs(eqn.params):
      total += mult * _dot_flops(sub)
  return total


def _subjaxprs(params):
  for v in params.values():
    for x in (v if isinstance(v, (tuple, list)) else (v,)):
      if hasattr(x, "jaxpr") and hasattr(x, "consts"):   # ClosedJaxpr
        yield x.jaxpr
      elif hasattr(x, "eqns"):                           # Jaxpr
        yield x


def _forward_dots(fn, *args) -> float:
  return _dot_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def test_qwen2_lm():
  from showo_jax.models import qwen2
  cfg = qwen2.Qwen2Config.tiny(scan_layers=True)
  model = nnx.eval_shape(lambda: qwen2.Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0)))
  ids = jax.ShapeDtypeStruct((2, 24), jnp.int32)
  got = _forward_dots(lambda m, i: m(i).logits, model, ids)
  assert got == flops.qwen2_forward(cfg, 2, 24)
  assert flops.train_step_flops("lm", cfg, {"text_tokens": ids}) == 3 * got
  assert flops.per_token("lm", cfg, 24) * 2 * 24 == pytest.approx(3 * got)


def test_phi_and_showo_v1():
  from showo_jax.models import phi, showo
  cfg = showo.ShowoConfig.tiny()
  model = nnx.eval_shape(lambda: showo.Showo(cfg, rngs=nnx.Rngs(0)))
  ids = jax.ShapeDtypeStruct((2, 20), jnp.int32)
  got = _forward_dots(lambda m, i: m(i).logits, model, ids)
  assert got == flops.showo_forward(cfg, 2, 20)
  pcfg = phi.PhiConfig.tiny()
  pm = nnx.eval_shape(lambda: phi.PhiForCausalLM(pcfg, rngs=nnx.Rngs(0)))
  assert _forward_dots(lambda m, i: m(i).logits, pm, ids) == flops.phi_forward(pcfg, 2, 20)


def test_showo2():
  from showo_jax.models import showo2
  cfg = showo2.Showo2Config.tiny()
  model = nnx.eval_shape(lambda: showo2.Showo2(cfg, rngs=nnx.Rngs(0)))
  b, l, m = 2, 40, 1
  tokens = jax.ShapeDtypeStruct((b, l), jnp.int32)
  lat = jax.ShapeDtypeStruct((b * m, 8, 8, cfg.image_latent_dim), jnp.float32)
  t = jax.ShapeDtypeStruct((b * m,), jnp.float32)
  mp = jnp.array([[[3, 17]], [[10, 17]]], jnp.int32)
  got = _forward_dots(lambda mod, x, z, tt: mod(x, z, tt, mp).logits, model, tokens, lat, t)
  want = flops.showo2_forward(cfg, b, l, b * m, (8 // cfg.patch_size) ** 2)
  assert got == pytest.approx(want, rel=1e-9)


def test_wan_vae_counts_with_xla():
  """XLA's count covers at least the first and last full-resolution convolutions (3×3×3 kernels)."""
  from showo_jax.models import wan_vae
  cfg = wan_vae.WanVAEConfig.tiny()
  t, h, w = 1, 16, 16
  first_conv = 2.0 * t * h * w * cfg.dim * (27 * 3)
  assert flops.wan_vae_flops(cfg, (1, t, h, w, 3), "encode") > 2 * first_conv
  assert flops.wan_vae_flops(cfg, (1, t, h, w, 3), "decode") > 2 * first_conv
