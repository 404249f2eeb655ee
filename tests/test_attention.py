"""The attention switch: every backend that runs here equals the dense reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from showo_jax import attention, masks


def _naive(q, k, v, mask, scale):
  rep = q.shape[2] // k.shape[2]
  k = np.repeat(k, rep, axis=2)
  v = np.repeat(v, rep, axis=2)
  s = np.einsum("blne,bsne->bnls", q, k) * scale
  s = np.where(mask[:, None], s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  p = p / p.sum(-1, keepdims=True)
  return np.einsum("bnls,bsne->blne", p, v)


def _inputs(seed=0, b=2, l=16, n=4, kh=2, e=8):
  ks = jax.random.split(jax.random.key(seed), 3)
  q = jax.random.normal(ks[0], (b, l, n, e))
  k = jax.random.normal(ks[1], (b, l, kh, e))
  v = jax.random.normal(ks[2], (b, l, kh, e))
  spec = masks.omni(jnp.asarray([[[3, 5], [10, 4]], [[0, 0], [6, 6]]]), l)
  return q, k, v, spec


def test_xla_matches_naive_gqa_with_omni_mask():
  q, k, v, spec = _inputs()
  out = attention.dot_product_attention(q, k, v, spec, impl="xla")
  ref = _naive(*map(np.asarray, (q, k, v)), np.asarray(masks.dense(spec)), q.shape[-1] ** -0.5)
  np.testing.assert_allclose(np.asarray(out), ref, atol=2e-6)


def test_dense_mask_and_spec_agree_and_grads_flow():
  q, k, v, spec = _inputs(1)
  a = attention.dot_product_attention(q, k, v, spec)
  b = attention.dot_product_attention(q, k, v, masks.dense(spec))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  g = jax.grad(lambda q: attention.dot_product_attention(q, k, v, spec).sum())(q)
  assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0


def test_bf16_inputs_keep_f32_softmax_close():
  q, k, v, spec = _inputs(2)
  ref = attention.dot_product_attention(q, k, v, spec)
  out = attention.dot_product_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), spec)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), atol=5e-2)


def test_unknown_impl_is_a_clear_error():
  q, k, v, spec = _inputs()
  with pytest.raises(ValueError, match="unknown attention implementation"):
    attention.dot_product_attention(q, k, v, spec, impl="flash3")


@pytest.mark.gpu
def test_cudnn_matches_xla():
  if jax.default_backend() != "gpu":
    pytest.skip("cuDNN attention needs a GPU")
  q, k, v, spec = _inputs()
  q, k, v = (x.astype(jnp.bfloat16) for x in (q, k, v))
  a = attention.dot_product_attention(q, k, v, spec, impl="xla")
  b = attention.dot_product_attention(q, k, v, spec, impl="cudnn")
  np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=2e-2)
