"""Splash omni attention (``showo_jax/kernels/splash.py``) equals the dense XLA path, forward and gradients.

Runs the real Splash kernels in Pallas interpret mode on CPU; sizes are the smallest Splash allows (blocks
of 128 lanes, two query blocks) because interpret mode is slow.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from showo_jax import attention, masks, sharding
from showo_jax.kernels import splash

import attention_check   # tests/kernels/attention_check.py

E = 64


def _qkv(b, t, n, kh, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 3)
  return (jax.random.normal(ks[0], (b, t, n, E)), jax.random.normal(ks[1], (b, t, kh, E)),
          jax.random.normal(ks[2], (b, t, kh, E)))


_check = attention_check.check


def test_dynamic_omni_one_and_two_blocks_gqa():
  """Traced per-example layouts (one image; two images) → tokamax dynamic Splash; GQA 2:1."""
  t = 256
  q, k, v = _qkv(2, t, 2, 1)
  spec = masks.omni(jnp.array([[[30, 100], [0, 0]], [[10, 40], [140, 90]]]), t)
  # the spec must reach the kernel traced (the dynamic route): pass it through jit as an argument
  fn = lambda q, k, v, sp: splash.attention(q, k, v, sp, scale=E ** -0.5, options=splash.Options(static=False))
  _check(lambda q, k, v: fn(q, k, v, spec), spec, q, k, v)
  with pytest.raises(ValueError, match="traced"):
    jax.jit(lambda q, k, v, sp: splash.attention(q, k, v, sp, options=splash.Options(static=True)))(q, k, v, spec)


def test_static_fixed_layout_two_blocks():
  """A concrete, batch-uniform layout (fixed-layout task) → one static NumpyMask shared by the batch."""
  t = 256
  q, k, v = _qkv(2, t, 4, 2, seed=1)
  with jax.ensure_compile_time_eval():
    spec = masks.omni(jnp.array([[[10, 40], [140, 90]]] * 2), t)
  fn = lambda q, k, v: splash.attention(q, k, v, spec, scale=E ** -0.5, options=splash.Options(static=True))
  _check(fn, spec, q, k, v)


def test_sharded_padded_packed():
  """Under a (2,2,2) mesh (batch over data×fsdp, heads over tensor), length 200 (padded to 256), 2 packed
  segments, one/two/no blocks: inside shard_map, equal to the dense path."""
  t, b = 200, 4
  q, k, v = _qkv(b, t, 4, 2, seed=2)
  seg = jnp.concatenate([jnp.zeros((b, 120), jnp.int32), jnp.ones((b, 80), jnp.int32)], 1)
  mp = jnp.array([[[5, 50], [0, 0]], [[10, 40], [130, 30]], [[0, 0], [0, 0]], [[100, 60], [0, 0]]])
  spec = masks.with_segments(masks.omni(mp, t), seg)
  with sharding.use_mesh(sharding.make_mesh(2, 2, 2), "fsdp_tp"):
    fn = lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl="splash")
    text = jax.jit(fn).lower(q, k, v).as_text()
    assert "sdy.manual_computation" in text and re.search(r'manual_axes=\{"data", "fsdp", "tensor"\}', text)
    _check(fn, spec, q, k, v)


def test_qwen2_backbone_splash_equals_xla():
  """The switch end to end: a tiny Qwen2 with attention_impl='splash' gives the xla logits."""
  import dataclasses
  from flax import nnx
  from showo_jax.models import qwen2
  cfg = qwen2.Qwen2Config.tiny(num_hidden_layers=1)
  model = qwen2.Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))
  ids = jax.random.randint(jax.random.PRNGKey(3), (2, 128), 0, cfg.vocab_size)
  spec = masks.omni(jnp.array([[[20, 50]], [[64, 64]]]), 128)
  ref = model(ids, mask=spec).logits
  model.cfg = dataclasses.replace(cfg, attention_impl="splash")
  for layer in model.model.layers:
    layer.self_attn.cfg = model.cfg
  got = jax.jit(lambda m, i: m(i, mask=spec).logits)(model, ids)
  np.testing.assert_allclose(got, ref, atol=2e-5)


@pytest.mark.tpu
@pytest.mark.skipif(jax.default_backend() != "tpu", reason="compiled (non-interpret) Splash needs a TPU")
def test_compiled_on_tpu():
  t = 512
  q, k, v = _qkv(2, t, 4, 2, seed=4)
  spec = masks.omni(jnp.array([[[30, 200], [0, 0]], [[10, 40], [300, 150]]]), t)
  _check(lambda q, k, v: splash.attention(q, k, v, spec, scale=E ** -0.5), spec, q, k, v, atol=2e-3,
         grad_rtol=2e-2)
