"""Parity: Show-o2 transport (ODE grids, training time shift, ``plan``, ``training_losses_v2``).

``*_torchrng`` arrays are torch-RNG draws and are not comparable (reference only; see the fixture notes).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from showo_jax import losses, transport
from showo_jax.tools.parity import TIGHT, compare, load_fixture


def run(fixture_dir: str):
  cfg_json, inp, out, _ = load_fixture(fixture_dir)
  for steps in (4, 50):
    yield compare(f"ode_grid_noshift_steps{steps}", transport.ode_grid(steps, shift=None),
                  out[f"ode_grid_noshift_steps{steps}"], atol=TIGHT)
    yield compare(f"ode_grid_shift3_steps{steps}", transport.ode_grid(steps, shift=3.0),
                  out[f"ode_grid_shift3_steps{steps}"], atol=TIGHT)
  for seq in (730, 3646, 4097):
    mu = transport.shift_mu(seq)
    yield compare(f"train_shift_mu_seq{seq}", np.float32(mu), out[f"train_shift_mu_seq{seq}"], atol=TIGHT)
    yield compare(f"train_time_shift_seq{seq}", transport.time_shift(jnp.asarray(inp["t_in"]), mu),
                  out[f"train_time_shift_seq{seq}"], atol=TIGHT)
  yield compare("check_interval_train", np.array([transport.T0, transport.T1], np.float32),
                out["check_interval_train"], atol=0.0)
  x0 = jnp.asarray(np.moveaxis(inp["plan_x0_noise"], 1, -1))
  x1 = jnp.asarray(np.moveaxis(inp["plan_x1_data"], 1, -1))
  _, xt, ut = transport.plan(jnp.asarray(inp["plan_t"]), x0, x1)
  yield compare("plan_xt", np.moveaxis(np.asarray(xt), -1, 1), out["plan_xt"], atol=TIGHT)
  yield compare("plan_ut", np.moveaxis(np.asarray(ut), -1, 1), out["plan_ut"], atol=TIGHT)
  pred = jnp.asarray(inp["model_output"])
  yield compare("training_losses_v2_loss", losses.per_sample_mse(pred, jnp.asarray(out["plan_ut"])),
                out["training_losses_v2_loss"])
