"""Flow-matching transport of Show-o2 (spec ``showo2.md`` §9.1), one convention for the whole package.

Reference: ``showlab/Show-o@45a5a2d:show-o2/transport/{transport.py,path.py,integrators.py,utils.py}``
(``create_transport('Linear', 'velocity', snr_type='lognorm', do_shift=True, seq_len=…)``, ``ICPlan``,
``Sampler.sample_ode``).

Convention (decided once; ``types.py``): **t = 1 is data, t = 0 is noise.**
``x_t = t·x1 + (1 − t)·x0`` with ``x0 ~ N(0, I)`` and ``x1`` the clean latent; the model predicts the velocity
``u_t = x1 − x0`` (constant along the path), so an ODE step from ``t`` to ``t'`` is ``x += (t' − t)·v``.

Training times: ``t = sigmoid(u)·(1 − t0) + t0`` with ``u ~ N(0, 1)`` (``t0 = max_t0`` for understanding rows,
1.0 in the released configs → ``t = 1`` exactly), then the resolution shift toward noise
``t ← 1 − e^μ / (e^μ + 1/(1 − t) − 1)`` with ``μ = m·seq_len + b`` on the line through (256, 0.5) and
(4096, 1.15); ``seq_len`` is the number of image tokens **plus one** (the time token): 730 at 432 px.
Inference grid: ``s = linspace(0, 1, N)`` then ``t = s / (s + k − k·s)`` (shift ``k = 3``), ``N`` points,
``N − 1`` Euler steps.

Arithmetic follows the reference dtypes (float32 tensors, the scalar ``e^μ`` in double precision).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

# ``Transport.check_interval`` for the velocity-predicting linear path: the full interval.
T0, T1 = 0.0, 1.0

BASE_SHIFT, MAX_SHIFT = 0.5, 1.15
BASE_SEQ_LEN, MAX_SEQ_LEN = 256, 4096


def shift_mu(seq_len: int | float) -> float:
  """``μ(seq_len)`` of ``Transport.get_lin_function(y1=0.5, y2=1.15)`` (e.g. μ(730) = 0.580234375)."""
  m = (MAX_SHIFT - BASE_SHIFT) / (MAX_SEQ_LEN - BASE_SEQ_LEN)
  b = BASE_SHIFT - m * BASE_SEQ_LEN
  return m * seq_len + b


def time_shift(t: Float[Array, "*s"], mu: float, sigma: float = 1.0) -> Float[Array, "*s"]:
  """``1 − e^μ / (e^μ + (1/(1 − t) − 1)^σ)`` (shift toward noise in the t = 1-is-data convention).

  ``t = 1`` maps to 1 (``1/0 = inf``) and ``t = 0`` to 0, as in the reference.
  """
  t = jnp.asarray(t, jnp.float32)
  s = 1.0 - t
  e = math.exp(mu)
  return 1.0 - e / (e + (1.0 / s - 1.0) ** sigma)


def sample_t(key: PRNGKeyArray, n: int, seq_len: int | None, max_t0: float | Float[Array, "n"] | None = None,
             ) -> Float[Array, "n"]:
  """Training times ``[n]``: logit-normal, optional per-row ``max_t0`` floor, μ-shift when ``seq_len`` is set."""
  u = jax.random.normal(key, (n,), jnp.float32)
  t0 = T0 if max_t0 is None else jnp.asarray(max_t0, jnp.float32)
  t = jax.nn.sigmoid(u) * (T1 - t0) + t0
  if seq_len is not None:
    t = time_shift(t, shift_mu(seq_len))
  return t


def plan(t: Float[Array, "n"], x0: Float[Array, "n *s"], x1: Float[Array, "n *s"]):
  """``ICPlan.plan``: ``(t, x_t, u_t)`` with ``x_t = t·x1 + (1−t)·x0`` and ``u_t = x1 − x0``."""
  tb = t.astype(jnp.float32).reshape((-1,) + (1,) * (x1.ndim - 1))
  xt = tb * x1 + (1.0 - tb) * x0
  ut = x1 - x0
  return t, xt, ut


def linspace(start: float, end: float, steps: int) -> np.ndarray:
  """``torch.linspace`` in float32 (symmetric two-sided fill, so the end point is exact)."""
  if steps == 1:
    return np.array([start], np.float32)
  step = np.float32((end - start) / (steps - 1))
  i = np.arange(steps)
  half = steps // 2
  out = np.where(i < half, np.float32(start) + step * i.astype(np.float32),
                 np.float32(end) - step * (steps - 1 - i).astype(np.float32))
  return out.astype(np.float32)


def ode_grid(num_steps: int, shift: float | None = 3.0) -> np.ndarray:
  """Sampling times (float32, ``num_steps`` points from 0 = noise to 1 = data), ``s/(s + k − k·s)``."""
  t = linspace(T0, T1, num_steps)
  if shift:
    k = np.float32(shift)
    t = (t / (t + k - k * t)).astype(np.float32)
  return t
