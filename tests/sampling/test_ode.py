"""Euler ODE sampler: fixture parity (every grid point), prefix reuse == uncached, video / I2V, context blocks."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import transport
from showo_jax.data import sequence
from showo_jax.models.showo2 import Showo2, Showo2Config
from showo_jax.sampling import ode
from showo_jax.text.qwen_offline import SpecialIds

SP = SpecialIds(bos=300, eos=301, boi=302, eoi=303, pad=304, img_pad=305, vid_pad=306, img=307, bov=308, eov=309)
N_IMG = 16          # tiny model: 8x8 latents, patch 2


@pytest.fixture(scope="module")
def model():
  return Showo2(Showo2Config.tiny(), rngs=nnx.Rngs(3))


def t2i_branches(lens, seq_len=40, video=False, n=N_IMG, seed=0):
  rng = np.random.default_rng(seed)
  fmt = sequence.format_t2v if video else sequence.format_t2i
  cond = [fmt(SP, rng.integers(0, 290, k).tolist(), n, seq_len) for k in lens]
  null = [fmt(SP, [], n, seq_len) for _ in lens]
  return ode.Branch.from_batch(sequence.collate(cond)), ode.Branch.from_batch(sequence.collate(null))


@pytest.mark.parity
def test_fixture_ode_all_steps(fixtures_dir):
  from showo_jax.tools.parity import load_fixture
  from showo_jax.tools.parity_checks import showo2_full, showo2_full_sampling
  d = os.path.join(fixtures_dir, "showo2_full")
  cfg_json, inp, out, sd = load_fixture(d)
  _, m = showo2_full.build(cfg_json, sd)
  results = list(showo2_full_sampling.ode_scenario(m, cfg_json, inp, out))
  names = {r.name for r in results}
  assert {"ode.time_grid", "ode.samples_all_steps", "ode.no_prefix_reuse.samples_all_steps"} <= names
  bad = [r for r in results if not r.passed]
  assert not bad, bad


def test_grid_and_step_count():
  g = transport.ode_grid(4, 3.0)
  np.testing.assert_allclose(g, [0.0, 1 / 7, 0.4, 1.0], rtol=1e-6)
  # S points -> S-1 Euler steps: a constant velocity field moves the state by exactly (t_last - t_0) * v.
  assert transport.ode_grid(2, 3.0).tolist() == [0.0, 1.0]


def test_prefix_reuse_equals_uncached(model):
  # Ragged prompts (offsets 7 and 12), a repeated prompt (shared cache row), and the shared null prefix.
  cond, uncond = t2i_branches([5, 10, 5])
  cond = ode.Branch(tokens=np.asarray(cond.tokens)[[0, 1, 0]], target=np.asarray(cond.target)[[0, 1, 0]])
  noise = ode.initial_noise(jax.random.key(0), (3, 8, 8, 16))
  noise = noise.at[2].set(noise[0])
  kw = dict(num_steps=5, guidance_scale=4.0, return_trajectory=True)
  a = ode.sample(model, noise, cond, uncond, prefix_reuse=True, **kw)
  b = ode.sample(model, noise, cond, uncond, prefix_reuse=False, **kw)
  assert a.trajectory.shape == (5, 3, 8, 8, 16)
  np.testing.assert_allclose(np.asarray(a.trajectory), np.asarray(b.trajectory), atol=2e-5, rtol=1e-5)
  # rows 0 and 2 are the same prompt with the same noise -> same sample
  np.testing.assert_allclose(np.asarray(a.latents[0]), np.asarray(a.latents[2]), atol=1e-6)
  assert float(jnp.abs(a.latents - noise).mean()) > 0.1   # the state really moved


def test_prefixes_are_shared():
  cond, uncond = t2i_branches([5, 10, 5])
  cond = ode.Branch(tokens=np.asarray(cond.tokens)[[1, 0, 1]], target=np.asarray(cond.target)[[1, 0, 1]])
  groups, arrays, index = ode._fill_plan([cond, uncond], 16)
  # rows: cond 1, cond 0, cond 1, null x3 -> 3 distinct prefixes filled in one call
  assert [g.num_unique for g in groups] == [3] and index.tolist() == [0, 1, 0, 2, 2, 2]
  assert arrays[0]["tokens"].shape == (3, 16)
  # an empty prompt has the null prompt's prefix: shared across the branches
  empty, _ = t2i_branches([0])
  groups, _, index = ode._fill_plan([empty, t2i_branches([0])[1]], 16)
  assert [g.num_unique for g in groups] == [1] and index.tolist() == [0, 0]
  # rows with context blocks are filled separately, after the plain group
  ctx = ode.Branch(tokens=np.asarray(cond.tokens)[:1], target=np.asarray([[20, N_IMG + 1]]),
                   context_positions=np.asarray([[[2, 5]]]), context_latents=np.zeros((1, 1, 8, 8, 16)))
  groups, _, index = ode._fill_plan([ctx, t2i_branches([3])[1]], 16)
  assert [(g.num_unique, g.num_context) for g in groups] == [(1, 0), (1, 1)] and index.tolist() == [1, 0]


def test_cfg_off_and_euler_update(model):
  cond, uncond = t2i_branches([6])
  noise = ode.initial_noise(jax.random.key(1), (1, 8, 8, 16))
  a = ode.sample(model, noise, cond, None, num_steps=2)
  b = ode.sample(model, noise, cond, uncond, num_steps=2, guidance_scale=0.0)
  np.testing.assert_allclose(np.asarray(a.latents), np.asarray(b.latents), atol=1e-6)
  # one Euler step from t=0 to t=1: x1 = x0 + v(x0, 0), v from a plain model call
  v = nnx.jit(lambda m, tok, x, mp: m(tok, x, jnp.zeros((1,)), mp, compute_logits=False).v_pred)(
      model, jnp.asarray(cond.tokens), noise, jnp.asarray(cond.target)[:, None])
  np.testing.assert_allclose(np.asarray(a.latents), np.asarray(noise + v), atol=2e-5)


def test_cfg_formula_in_model_dtype():
  vc = jnp.asarray([1.0, 2.0], jnp.bfloat16)
  vu = jnp.asarray([0.5, 0.25], jnp.bfloat16)
  v = ode.guided_velocity(vc, vu, jnp.float32(5.0))
  assert v.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(v, np.float32), [3.0, 9.0])


def test_noise_rounding():
  z = ode.initial_noise(jax.random.key(0), (2, 4, 4, 16), round_to_bf16=True)
  assert z.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(z), np.asarray(z.astype(jnp.bfloat16).astype(jnp.float32)))
  z2 = ode.initial_noise(jax.random.key(0), (2, 4, 4, 16), round_to_bf16=False)
  assert 0 < float(jnp.abs(z - z2).max()) < 0.02


def test_video_and_first_frame_as_cond(model):
  # T2V: 2 latent frames of 8x8 -> 32 tokens + time; I2V keeps frame 0 fixed.
  cond, uncond = t2i_branches([4, 7], seq_len=50, video=True, n=2 * N_IMG)
  noise = ode.initial_noise(jax.random.key(2), (2, 2, 8, 8, 16))
  kw = dict(num_steps=3, guidance_scale=3.0, first_frame_as_cond=True)
  a = ode.sample(model, noise, cond, uncond, prefix_reuse=True, **kw)
  b = ode.sample(model, noise, cond, uncond, prefix_reuse=False, **kw)
  np.testing.assert_allclose(np.asarray(a.latents), np.asarray(b.latents), atol=2e-5, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(a.latents[:, 0]), np.asarray(noise[:, 0]))
  assert float(jnp.abs(a.latents[:, 1] - noise[:, 1]).max()) > 1e-3


def test_context_blocks_cached_equals_uncached(model):
  # Mixed-modality layout: a clean history image (t = 1) before the generated block.
  blk = N_IMG + 1
  hist = [SP.bos, 10, 11, SP.boi] + [SP.img_pad] * blk + [SP.eoi, 12, 13, 14]
  cond_s, null_s = sequence.format_mixed_modal_gen(SP, hist[1:], [], N_IMG, multiple=16)
  ctx_lat = jax.random.normal(jax.random.key(5), (1, 1, 8, 8, 16))
  cond = ode.Branch(tokens=cond_s.tokens[None], target=cond_s.modality_positions[:1],
                    context_positions=np.asarray([[[4, blk]]]), context_latents=ctx_lat, context_t=1.0)
  uncond = ode.Branch(tokens=null_s.tokens[None], target=null_s.modality_positions[:1])
  noise = ode.initial_noise(jax.random.key(6), (1, 8, 8, 16))
  kw = dict(num_steps=3, guidance_scale=5.0)
  a = ode.sample(model, noise, cond, uncond, prefix_reuse=True, **kw)
  b = ode.sample(model, noise, cond, uncond, prefix_reuse=False, **kw)
  np.testing.assert_allclose(np.asarray(a.latents), np.asarray(b.latents), atol=2e-5, rtol=1e-5)
  # the history matters: a different history image changes the sample
  cond2 = ode.Branch(tokens=cond.tokens, target=cond.target, context_positions=cond.context_positions,
                     context_latents=ctx_lat * 0.0, context_t=1.0)
  c = ode.sample(model, noise, cond2, uncond, **kw)
  assert float(jnp.abs(c.latents - a.latents).max()) > 1e-4


def test_bad_inputs(model):
  cond, uncond = t2i_branches([5])
  with pytest.raises(ValueError, match="num_steps"):
    ode.sample(model, jnp.zeros((1, 8, 8, 16)), cond, uncond, num_steps=1)
  with pytest.raises(ValueError, match="noise batch"):
    ode.sample(model, jnp.zeros((2, 8, 8, 16)), cond, uncond)
  with pytest.raises(ValueError, match="fit"):
    ode.Branch(tokens=np.zeros((1, 10), np.int32), target=np.asarray([[5, 17]]))
