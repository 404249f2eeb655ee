"""tokamax flash attention with per-query key ranges (``showo_jax/kernels/tokamax_flash.py``) equals the dense
XLA path, forward and gradients. On CPU this runs tokamax's XLA op (same ``Mask(k_start, k_end)`` interface
as the GPU kernels); the Pallas GPU kernels themselves are checked by the ``gpu`` tests."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from showo_jax import attention, masks, sharding
from showo_jax.kernels import common, tokamax_flash

import attention_check   # tests/kernels/attention_check.py

E = 32
ON_GPU = jax.default_backend() == "gpu"


def _qkv(b, t, n, kh, s=None, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 3)
  s = t if s is None else s
  return (jax.random.normal(ks[0], (b, t, n, E)), jax.random.normal(ks[1], (b, s, kh, E)),
          jax.random.normal(ks[2], (b, s, kh, E)))


_check = attention_check.check


OMNI = jnp.array([[[30, 40], [0, 0]], [[10, 20], [50, 30]]])  # one block; two blocks


def test_omni_one_and_two_blocks():
  q, k, v = _qkv(2, 96, 4, 2)
  spec = masks.omni(OMNI, 96)
  _check(lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl="tokamax"), spec, q, k, v)


def test_packed_segments_fold_into_ranges():
  """Two packed sequences, each with its own image block: segment ids become key ranges exactly."""
  t = 96
  q, k, v = _qkv(2, t, 4, 2, seed=1)
  seg = jnp.concatenate([jnp.zeros((2, 40), jnp.int32), jnp.ones((2, 50), jnp.int32), jnp.full((2, 6), 2)], 1)
  spec = masks.with_segments(masks.omni(jnp.array([[[5, 20], [60, 20]], [[0, 0], [45, 40]]]), t), seg)
  ks, ke = common.key_ranges(spec, t)
  np.testing.assert_array_equal(masks.dense(masks.MaskSpec(ks, ke), t), masks.dense(spec, t))
  _check(lambda q, k, v: tokamax_flash.attention(q, k, v, spec, scale=E ** -0.5), spec, q, k, v)


def test_cached_decoding_rows():
  """KV-cache decoding: 8 query rows at absolute positions 40..47 over 64 keys, with segments."""
  q, k, v = _qkv(2, 8, 4, 2, s=64, seed=2)
  full = masks.with_segments(masks.omni(jnp.array([[[30, 20]], [[0, 0]]]), 64),
                             jnp.concatenate([jnp.zeros((2, 20), jnp.int32), jnp.ones((2, 44), jnp.int32)], 1))
  spec = masks.slice_queries(full, 40, 8)
  _check(lambda q, k, v: tokamax_flash.attention(q, k, v, spec), spec, q, k, v)


def test_sharded_under_mesh():
  q, k, v = _qkv(4, 64, 4, 2, seed=3)
  spec = masks.omni(jnp.array([[[5, 20]], [[10, 40]], [[0, 0]], [[30, 34]]]), 64)
  with sharding.use_mesh(sharding.make_mesh(2, 2, 2), "fsdp_tp"):
    fn = lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl="tokamax")
    text = jax.jit(fn).lower(q, k, v).as_text()
    assert "sdy.manual_computation" in text and re.search(r'manual_axes=\{"data", "fsdp", "tensor"\}', text)
    _check(fn, spec, q, k, v)


def test_resolve():
  assert tokamax_flash.resolve("auto") == ("xla" if not ON_GPU else tokamax_flash.resolve("auto"))
  with pytest.raises(ValueError):
    tokamax_flash.resolve("flex")


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="the Pallas Triton / Mosaic-GPU kernels need a CUDA GPU")
@pytest.mark.parametrize("impl", ["triton", "mosaic_gpu"])
def test_pallas_gpu_kernels(impl):
  if impl == "mosaic_gpu" and tokamax_flash.resolve("auto") != "mosaic_gpu":
    pytest.skip("Mosaic-GPU flash needs sm90+")
  t = 256
  q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(2, t, 4, 2, seed=4))
  spec = masks.omni(jnp.array([[[30, 100], [0, 0]], [[10, 40], [140, 90]]]), t)
  fn = lambda q, k, v: tokamax_flash.attention(q, k, v, spec, impl=impl)
  ref = lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl="xla")
  np.testing.assert_allclose(jax.jit(fn)(q, k, v).astype(jnp.float32), ref(q, k, v).astype(jnp.float32),
                             atol=2e-2)
  g = jax.grad(lambda q: (fn(q, k, v).astype(jnp.float32) ** 2).sum())(q)
  gr = jax.grad(lambda q: (ref(q, k, v).astype(jnp.float32) ** 2).sum())(q)
  assert float(jnp.abs(g - gr).max() / jnp.abs(gr).max()) < 5e-2
