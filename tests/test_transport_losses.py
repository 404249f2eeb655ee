"""Transport convention (t = 1 is data), time sampling/shift, ODE grid, losses and the patch order."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from showo_jax import losses, transport
from showo_jax.tools import parity


@pytest.mark.parity
def test_transport_fixture_parity(fixtures_dir):
  status, comps = parity.run_fixture("showo2_transport", os.path.join(fixtures_dir, "showo2_transport"))
  assert status == "ok", status
  assert len(comps) >= 14
  bad = [(c.name, c.max_abs) for c in comps if not c.passed]
  assert not bad, bad


def test_shift_mu_values_from_spec():
  # spec §9.1: mu(730) = 0.580234375 (k = 1.78646), mu(1025) ≈ 0.63017, mu(3646) ≈ 1.07383, mu(4097) ≈ 1.15017
  assert transport.shift_mu(730) == pytest.approx(0.580234375, abs=1e-12)
  assert np.exp(transport.shift_mu(730)) == pytest.approx(1.78646, abs=1e-5)
  assert transport.shift_mu(1025) == pytest.approx(0.63017, abs=1e-5)
  assert np.exp(transport.shift_mu(1025)) == pytest.approx(1.87793, abs=1e-5)
  assert transport.shift_mu(3646) == pytest.approx(1.07383, abs=1e-5)
  assert transport.shift_mu(4097) == pytest.approx(1.15017, abs=1e-5)
  assert np.exp(transport.shift_mu(4097)) == pytest.approx(3.15873, abs=1e-5)
  assert transport.shift_mu(256) == pytest.approx(0.5) and transport.shift_mu(4096) == pytest.approx(1.15)


def test_time_shift_is_sd3_shift_toward_noise():
  t = jnp.linspace(0.0, 1.0, 11)
  mu = transport.shift_mu(730)
  k = np.exp(mu)
  shifted = np.asarray(transport.time_shift(t, mu))
  s = 1 - np.asarray(t, np.float64)  # noise level
  expected = 1 - k * s / (1 + (k - 1) * s)
  np.testing.assert_allclose(shifted, expected, atol=1e-6)
  assert shifted[0] == 0.0 and shifted[-1] == 1.0          # endpoints fixed (1/0 = inf at t = 1)
  assert np.all(shifted[1:-1] < np.asarray(t)[1:-1])        # more noise


def test_sample_t_logit_normal_and_understanding_rows():
  key = jax.random.key(0)
  t = transport.sample_t(key, 4096, seq_len=None)
  u = np.log(np.asarray(t) / (1 - np.asarray(t)))           # logit of t ~ N(0, 1)
  assert abs(u.mean()) < 0.06 and abs(u.std() - 1) < 0.06
  ts = transport.sample_t(key, 4096, seq_len=730)
  np.testing.assert_allclose(np.asarray(ts), np.asarray(transport.time_shift(t, transport.shift_mu(730))), atol=1e-7)
  # max_t0 = 1 (MMU rows): t == 1 exactly, also after the shift; per-row floors are allowed.
  mixed = transport.sample_t(key, 4, seq_len=730, max_t0=jnp.asarray([0.0, 0.0, 1.0, 1.0]))
  assert np.all(np.asarray(mixed)[2:] == 1.0) and np.all(np.asarray(mixed)[:2] < 1.0)


def test_plan_convention():
  x0 = jax.random.normal(jax.random.key(1), (3, 4, 4, 2))
  x1 = jax.random.normal(jax.random.key(2), (3, 4, 4, 2))
  t = jnp.asarray([0.0, 0.25, 1.0])
  _, xt, ut = transport.plan(t, x0, x1)
  np.testing.assert_array_equal(np.asarray(xt[0]), np.asarray(x0[0]))   # t = 0: noise
  np.testing.assert_array_equal(np.asarray(xt[2]), np.asarray(x1[2]))   # t = 1: data
  np.testing.assert_allclose(np.asarray(xt[1]), 0.25 * np.asarray(x1[1]) + 0.75 * np.asarray(x0[1]), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(ut), np.asarray(x1 - x0))
  # one exact Euler step along the straight path reaches the data
  np.testing.assert_allclose(np.asarray(xt[1] + (1 - 0.25) * ut[1]), np.asarray(x1[1]), atol=1e-6)


def test_ode_grid():
  g = transport.ode_grid(50, shift=3.0)
  assert g.dtype == np.float32 and g.shape == (50,) and g[0] == 0.0 and g[-1] == 1.0
  s = np.linspace(0, 1, 50)
  np.testing.assert_allclose(g, s / (3 - 2 * s), atol=1e-6)               # u / (3 − 2u)
  np.testing.assert_allclose(transport.ode_grid(4, shift=None), [0, 1 / 3, 2 / 3, 1], atol=1e-7)


def test_patchify_is_inverse_of_raster_unpatchify():
  x = np.arange(2 * 6 * 10 * 3, dtype=np.float32).reshape(2, 6, 10, 3)   # W = 10 is not a multiple of 4
  tok = np.asarray(losses.patchify_targets(jnp.asarray(x), 2))
  assert tok.shape == (2, 15, 12)
  # token k, inner index (a*p + b)*C + c  <->  raster pixel q = 4k + a*p + b, channel c
  for k in (0, 3, 14):
    for a in range(2):
      for b in range(2):
        q = 4 * k + a * 2 + b
        np.testing.assert_array_equal(tok[1, k, (a * 2 + b) * 3:(a * 2 + b + 1) * 3], x[1, q // 10, q % 10])
  np.testing.assert_array_equal(tok.reshape(2, 6, 10, 3), x)  # the model's unpatchify is the raw reshape
  v = np.arange(2 * 3 * 4 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 4, 2)  # video: the same per frame
  np.testing.assert_array_equal(np.asarray(losses.patchify_targets(jnp.asarray(v), 2)).reshape(v.shape), v)


def test_ntp_loss_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 7, 11)).astype(np.float32)
  labels = rng.integers(0, 11, (2, 7))
  labels[0, :4] = -100
  loss, metrics = losses.ntp_loss(jnp.asarray(logits), jnp.asarray(labels))
  lg, lb = logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1)
  keep = lb != -100
  logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
  expected = -logp[keep, lb[keep]].mean()
  assert float(loss) == pytest.approx(expected, abs=1e-5)
  assert int(metrics["ntp_tokens"]) == keep.sum()


def test_flow_loss_placement_and_mask():
  # two rows, one slot each; row 1 is an understanding row (image mask zero)
  mp = jnp.asarray([[[2, 4]], [[1, 4]]])
  targets = jnp.arange(2 * 3 * 5, dtype=jnp.float32).reshape(2, 3, 5) + 1
  placed = np.asarray(losses.place_targets(targets, mp, 8))
  np.testing.assert_array_equal(placed[0, 3:6], np.asarray(targets[0]))
  assert np.all(placed[0, :3] == 0) and np.all(placed[0, 6:] == 0)
  image_masks = jnp.asarray([[0, 0, 1, 1, 1, 1, 0, 0], [0] * 8], jnp.float32)
  fmask = np.asarray(losses.flow_token_mask(image_masks, mp))
  np.testing.assert_array_equal(fmask[0], [0, 0, 0, 1, 1, 1, 0, 0])      # time slot excluded
  v = jnp.zeros((2, 8, 5))
  loss, m = losses.flow_loss(v, jnp.asarray(placed), jnp.asarray(fmask))
  assert int(m["flow_entries"]) == 15
  assert float(loss) == pytest.approx(float(np.mean(np.asarray(targets[0]) ** 2)), rel=1e-6)
