"""Shared oracle of the kernel tests: a backend equals the dense XLA attention, forward and gradients."""
import jax
import jax.numpy as jnp
import numpy as np

from showo_jax import attention


def check(fn, spec, q, k, v, atol=2e-5, grad_rtol=2e-5):
  """``fn(q, k, v)`` against ``impl="xla"`` under ``spec``: outputs within ``atol``, dq/dk/dv within
  ``grad_rtol`` of the reference's largest entry."""
  ref = lambda q, k, v: attention.dot_product_attention(q, k, v, spec, impl="xla")
  np.testing.assert_allclose(jax.jit(fn)(q, k, v), ref(q, k, v), atol=atol)
  # A non-uniform cotangent, so dK/dV see every output row differently.
  w = jax.random.normal(jax.random.PRNGKey(7), q.shape)
  loss = lambda f: (lambda q, k, v: (f(q, k, v) * w).sum())
  got = jax.jit(jax.grad(loss(fn), argnums=(0, 1, 2)))(q, k, v)
  want = jax.grad(loss(ref), argnums=(0, 1, 2))(q, k, v)
  for name, a, b in zip("qkv", got, want):
    err = float(jnp.abs(a - b).max() / jnp.abs(b).max())
    assert err < grad_rtol, f"d{name}: relative error {err}"
