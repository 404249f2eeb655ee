"""The fused CPU attention kernel (``showo_jax/kernels/cpu_flash.py``) equals the dense XLA path, forward and
gradients, for every mask form the models produce, and ``impl="auto"`` picks it on CPU only when it applies."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import attention, masks, sharding
from showo_jax.data import prompting_v1
from showo_jax.kernels import cpu_flash

import attention_check   # tests/kernels/attention_check.py

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu" or not cpu_flash.available(),
                                reason=f"CPU kernel unavailable: {cpu_flash.unavailable_reason()}")


def _qkv(b, t, n, kh, e, s=None, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 3)
  s = t if s is None else s
  return (jax.random.normal(ks[0], (b, t, n, e)), jax.random.normal(ks[1], (b, s, kh, e)),
          jax.random.normal(ks[2], (b, s, kh, e)))


def _check(spec, q, k, v, impl="cpu_flash"):
  attention_check.check(lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl=impl), spec, q, k, v,
                        atol=5e-6, grad_rtol=1e-5)


@pytest.mark.parametrize("b,t,s,n,kh,e", [(2, 37, 37, 4, 2, 64), (3, 70, 100, 4, 4, 16), (1, 5, 9, 2, 1, 128),
                                          (2, 129, 129, 2, 2, 256)])
def test_random_key_ranges_with_empty_rows(b, t, s, n, kh, e):
  """Arbitrary per-row ranges (tile edges, GQA, s != l); an empty range averages V like the dense path."""
  q, k, v = _qkv(b, t, n, kh, e, s=s, seed=t)
  rng = np.random.default_rng(t)
  ks = rng.integers(0, s, (b, t))
  ke = np.minimum(ks + rng.integers(0, s, (b, t)), s)
  ke[0, 0] = ks[0, 0]
  ke[-1, -1] = 0
  _check(masks.MaskSpec(jnp.asarray(ks, jnp.int32), jnp.asarray(ke, jnp.int32)), q, k, v)


def test_omni_causal_and_no_mask():
  q, k, v = _qkv(2, 96, 4, 2, 64, seed=1)
  _check(masks.omni(jnp.array([[[30, 40], [0, 0]], [[10, 20], [50, 30]]]), 96), q, k, v)
  _check(masks.causal(2, 96), q, k, v)
  _check(None, q, k, v)


def test_packed_segments_and_cached_rows():
  t = 96
  q, k, v = _qkv(2, t, 4, 2, 32, seed=2)
  seg = jnp.concatenate([jnp.zeros((2, 40), jnp.int32), jnp.ones((2, 50), jnp.int32), jnp.full((2, 6), 2)], 1)
  _check(masks.with_segments(masks.omni(jnp.array([[[5, 20], [60, 20]], [[0, 0], [45, 40]]]), t), seg), q, k, v)
  q, k, v = _qkv(2, 8, 4, 2, 32, s=64, seed=3)
  full = masks.with_segments(masks.omni(jnp.array([[[30, 20]], [[0, 0]]]), 64),
                             jnp.concatenate([jnp.zeros((2, 20), jnp.int32), jnp.ones((2, 44), jnp.int32)], 1))
  _check(masks.slice_queries(full, 40, 8), q, k, v)


def test_showo_v1_masks_through_auto():
  """The v1 predict-next (left padding removed inside the image block) and MMU masks, via ``impl="auto"``."""
  ids = np.full((2, 40), 5, np.int32)
  ids[0, :7] = 0                      # pad
  ids[:, 20], ids[:, 39] = 9, 10      # <|soi|> ... <|eoi|>
  spec = prompting_v1.predict_next_mask(jnp.asarray(ids), 0, 9, 10, rm_pad_in_image=True)
  q, k, v = _qkv(2, 40, 4, 4, 64, seed=4)
  assert attention.resolve("auto", q, k, spec) == "cpu_flash"
  _check(spec, q, k, v, impl="auto")
  _check(prompting_v1.mmu_mask(jnp.asarray(ids), 10), q, k, v, impl="auto")


def test_auto_falls_back_where_the_kernel_does_not_apply():
  q, k, _ = _qkv(1, 8, 2, 2, 24)
  dense = jnp.ones((1, 8, 8), bool)
  assert attention.resolve("auto", q, k, None) == "xla"                           # head_dim 24
  q, k, _ = _qkv(1, 8, 2, 2, 32)
  assert attention.resolve("auto", q, k, dense) == "xla"                          # dense boolean mask
  assert attention.resolve("auto", q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), None) == "xla"
  with pytest.raises(ValueError, match="cpu_flash"):
    attention.dot_product_attention(q, k, k, dense, impl="cpu_flash")


def test_sharded_under_mesh():
  q, k, v = _qkv(4, 64, 4, 2, 32, seed=5)
  spec = masks.omni(jnp.array([[[5, 20]], [[10, 40]], [[0, 0]], [[30, 34]]]), 64)
  with sharding.use_mesh(sharding.make_mesh(2, 2, 2), "fsdp_tp"):
    fn = lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl="cpu_flash")
    text = jax.jit(fn).lower(q, k, v).as_text()
    assert "sdy.manual_computation" in text and cpu_flash.FORWARD in text
    _check(spec, q, k, v)


def test_phi_model_and_cached_maskgit_equal_the_dense_path():
  """A tiny Show-o with the kernel: the logits match, and a MaskGIT run (prefix KV cache) picks the same codes."""
  from showo_jax import maskgit
  from showo_jax.models.showo import Showo, ShowoConfig
  cfg = ShowoConfig.tiny()
  models = {impl: Showo(cfg.replace(attention_impl=impl), rngs=nnx.Rngs(0)) for impl in ("xla", "cpu_flash")}
  up = prompting_v1.UniversalPrompting(cfg.token_ids, 12)
  image = np.full((2, cfg.num_vq_tokens), cfg.mask_token_id, np.int64)
  cond = up.t2i_gen_prompt([[5, 6, 7], [8] * 9], image)
  uncond = up.t2i_gen_prompt([[], []], image)
  tok = cfg.token_ids
  mask = prompting_v1.predict_next_mask(jnp.asarray(cond), tok.pad, tok.soi, tok.eoi)
  out = {impl: m(jnp.asarray(cond), mask=mask).logits for impl, m in models.items()}
  np.testing.assert_allclose(out["cpu_flash"], out["xla"], atol=2e-5)
  codes = {impl: maskgit.t2i_generate(m, cond, uncond, key=jax.random.key(3), timesteps=4, guidance_scale=1.5)
           for impl, m in models.items()}
  np.testing.assert_array_equal(codes["cpu_flash"], codes["xla"])


def test_build_is_cached_by_content(tmp_path, monkeypatch):
  """The library is compiled once per key into the cache dir (atomically); a second build reuses the file."""
  monkeypatch.setenv("SHOWO_JAX_KERNEL_CACHE", str(tmp_path))
  path = cpu_flash._build("g++")
  assert os.path.dirname(path) == str(tmp_path) and re.fullmatch(r"cpu_flash_[0-9a-f]{16}\.so", os.path.basename(path))
  mtime = os.path.getmtime(path)
  assert cpu_flash._build("g++") == path and os.path.getmtime(path) == mtime
  assert os.listdir(tmp_path) == [os.path.basename(path)]     # no temporary left behind
