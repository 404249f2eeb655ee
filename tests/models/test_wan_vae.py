"""Wan2.1 VAE: chunked ≡ closed form, one compile per clip, flat memory, image path, sampling, real-size
names/shapes, sharding, parity (converter round trips: tests/convert/test_wan_vae_convert.py).

Structural tests use ``MICRO`` (the real block layout and temporal/spatial factors with width 4 and one
residual block per level) and a lower LLVM optimisation level: XLA compile time dominates these tiny runs.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax import sharding
from showo_jax.convert import common
from showo_jax.convert import wan_vae as convert_wan_vae
from showo_jax.models import wan_vae
from showo_jax.models.wan_vae import WanVAE, WanVAEConfig
from showo_jax.tools.workloads.wan_vae import random_model

REAL_ELEMENTS = 126_892_531
MICRO = WanVAEConfig.tiny(dim=4, num_res_blocks=1)
# Same HLO and numerics (XLA's own passes and fast-math settings are unchanged); only LLVM's backend
# optimisation level drops, which compiles these tiny programs ~2.5x faster.
FAST = {"xla_backend_optimization_level": 0}


def fast_jit(fn, **kw):
  return jax.jit(fn, compiler_options=FAST, **kw)


@pytest.fixture(scope="module")
def micro():
  return nnx.split(random_model(MICRO))


def _video(seed, b, t, h, w):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1.0, 1.0, (b, t, h, w, 3)).astype(np.float32))


def _read_manifest(path):
  shapes = {}
  for line in open(path):
    if line.startswith("#") or line.startswith("key\t") or not line.strip():
      continue
    key, shape, _ = line.rstrip("\n").split("\t")
    shapes[key] = tuple(int(s) for s in shape.split("x"))
  return shapes


def test_chunked_equals_full_and_a_17_frame_clip_compiles_once(micro, monkeypatch):
  graphdef, state = micro
  traces = {"encoder": 0, "decoder": 0}
  for name, cls in (("encoder", wan_vae.Encoder3d), ("decoder", wan_vae.Decoder3d)):
    orig = cls.__call__

    def counted(self, x, cache=None, _orig=orig, _name=name):
      traces[_name] += 1
      return _orig(self, x, cache)
    monkeypatch.setattr(cls, "__call__", counted)

  def both(state, x, z):
    m = nnx.merge(graphdef, state)
    out = {}
    for tag, chunked in (("chunked", True), ("full", False)):
      out[tag] = (m.encode_raw(x, chunked=chunked), m.decode(z, clamp=False, chunked=chunked))
    return out

  fn = fast_jit(both)
  x = _video(1, 1, 17, 16, 16)
  z = jnp.asarray(np.random.default_rng(2).standard_normal((1, 5, 2, 2, 16)).astype(np.float32))
  out = fn(state, x, z)
  # Chunked: the first chunk plus ONE scan body each (5 encoder chunks, 5 latent frames); full: one each.
  assert traces == {"encoder": 3, "decoder": 3}
  out2 = fn(state, x.at[:, 9:].set(0.0), z)  # new values, same shapes: no retrace, no recompile
  assert traces == {"encoder": 3, "decoder": 3} and fn._cache_size() == 1
  jaxpr = jax.make_jaxpr(both)(state, x, z).jaxpr
  assert sorted(int(e.params["length"]) for e in jaxpr.eqns if e.primitive.name == "scan") == [4, 4]

  (mu_c, lv_c, enc_c), dec_c = out["chunked"]
  (mu_f, lv_f, enc_f), dec_f = out["full"]
  assert mu_c.shape == (1, 5, 2, 2, 16) and enc_c.shape == (1, 5, 2, 2, 32) and dec_c.shape == (1, 17, 16, 16, 3)
  for a, b in ((enc_c, enc_f), (mu_c, mu_f), (lv_c, lv_f), (dec_c, dec_f)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)
  # Causality: zeroing frames 9.. leaves the latents of frames 0..8 (latent frames 0..2) unchanged.
  np.testing.assert_array_equal(out2["chunked"][0][2][:, :3], enc_c[:, :3])
  assert not np.allclose(out2["chunked"][0][2][:, 3:], enc_c[:, 3:])


def test_chunked_memory_does_not_grow_with_frames(micro):
  graphdef, state = micro
  enc = lambda st, x: nnx.merge(graphdef, st).encode_raw(x, chunked=True)[2]
  temps, sizes = {}, {}
  for t in (9, 33):
    spec = jax.ShapeDtypeStruct((1, t, 16, 16, 3), jnp.float32)
    sizes[t] = len(jax.make_jaxpr(enc)(state, spec).jaxpr.eqns)
    temps[t] = fast_jit(enc).lower(state, spec).compile().memory_analysis().temp_size_in_bytes
  assert sizes[9] == sizes[33]  # the program does not unroll over chunks
  # Scratch memory grows by about the clip itself (input slicing), not by per-frame activations: the
  # encoder's first level alone holds 4 channels x 16 x 16 per frame in several buffers.
  clip_growth = (33 - 9) * 16 * 16 * 3 * 4
  assert temps[33] - temps[9] <= 3 * clip_growth, temps


def test_image_path_helpers_and_sampling(micro):
  graphdef, state = micro
  img = _video(4, 2, 1, 16, 16)[:, 0]
  key = jax.random.key(7)

  @fast_jit
  def fn(state, img):
    m = nnx.merge(graphdef, state)
    z = m.encode_image(img)
    return dict(z=z, z_video=m.sample(img[:, None])[:, 0], raw=m.encode_raw(img[:, None]),
                z_key=m.sample(img[:, None], deterministic=False, key=key),
                out=m.decode_image(z), out_video=m.decode(z[:, None])[:, 0], out_raw=m.decode_image(z, clamp=False))

  r = fn(state, img)
  assert r["z"].shape == (2, 2, 2, 16) and r["out"].shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(r["z"], r["z_video"])
  np.testing.assert_array_equal(r["out"], r["out_video"])
  np.testing.assert_array_equal(r["out"], jnp.clip(r["out_raw"], -1.0, 1.0))
  assert float(jnp.max(jnp.abs(r["out"]))) <= 1.0
  # Latent normalisation and the posterior sample (noise not divided by the latent std).
  model = nnx.merge(graphdef, state)
  mu, log_var, _ = r["raw"]
  mean, inv_std = model.latent_stats()
  np.testing.assert_allclose(inv_std, 1.0 / np.float32(wan_vae.LATENTS_STD), rtol=1e-7)
  mu_n = (mu - mean) * inv_std
  np.testing.assert_allclose(r["z"], mu_n[:, 0], rtol=1e-6, atol=1e-6)
  eps = jax.random.normal(key, mu.shape)
  expected = mu_n + jnp.exp(0.5 * jnp.clip(log_var, -30.0, 20.0)) * eps
  np.testing.assert_allclose(r["z_key"], expected, rtol=1e-5, atol=1e-5)
  # A single frame runs as a 2-D conv with the last temporal tap (the front taps only see zeros).
  conv = model.encoder.conv1
  ref = jax.lax.conv_general_dilated(img, conv.kernel[2], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv.bias[...]
  np.testing.assert_allclose(conv(img[:, None])[:, 0], ref, atol=1e-6)
  with pytest.raises(ValueError):
    model.sample(img[:, None], deterministic=False)


def test_bf16_latent_constants():
  # spec §6.6: mean and std rounded to the wrapper dtype, inv_std = rnd(1 / rnd(std)); decode divides by it.
  bf = nnx.eval_shape(lambda: WanVAE(WanVAEConfig.tiny(dtype="bfloat16"), rngs=nnx.Rngs(0)))
  m16, i16 = bf.latent_stats()
  assert m16.dtype == jnp.bfloat16 and i16.dtype == jnp.bfloat16
  std16 = np.asarray(wan_vae.LATENTS_STD, np.float32).astype(jnp.bfloat16)
  np.testing.assert_array_equal(i16, (1.0 / std16.astype(np.float32)).astype(jnp.bfloat16))
  np.testing.assert_array_equal(m16, np.asarray(wan_vae.LATENTS_MEAN, np.float32).astype(jnp.bfloat16))
  with pytest.raises(ValueError):
    WanVAEConfig.tiny(dropout=0.1)


def test_upsample_subpixel_equals_repeat_then_conv(micro):
  model = nnx.merge(*micro)
  modes = [getattr(layer, "mode", None) for layer in model.decoder.upsamples]
  assert modes.count("upsample3d") == 2 and modes.count("upsample2d") == 1
  conv = model.decoder.upsamples[modes.index("upsample2d")].resample  # [Upsample2x, Conv2d]
  x = jax.random.normal(jax.random.key(8), (2, 4, 6, conv[1].kernel.shape[2]))
  fast, reference = fast_jit(lambda x: (conv[1].upsample2x(x), conv[1](conv[0](x))))(x)
  assert fast.shape == (2, 8, 12, conv[1].kernel.shape[3])
  np.testing.assert_allclose(fast, reference, atol=2e-5)


@pytest.mark.parametrize("spatial", [3, 1])
def test_temporal_winograd_equals_a_3d_conv(spatial):
  """CausalConv3d (Winograd and direct) against one textbook 3-D conv over ``[history or zeros, x]``.

  Covers every frame count the chunk schedules meet (1, 2, 4; odd counts and the zero-history start of the
  closed form), with a cached history and without; ``spatial=1`` is the upsample3d time conv.
  """
  ci, co = 5, 6
  pad = (spatial - 1) // 2
  convs = {alg: wan_vae.CausalConv3d(ci, co, (3, spatial, spatial), padding=(1, pad, pad), temporal_conv=alg,
                                     rngs=nnx.Rngs(3)) for alg in ("winograd", "direct")}
  kernel, bias = convs["direct"].kernel[...], convs["direct"].bias[...]
  rng = np.random.default_rng(4)

  def textbook(x, hist):
    xc = jnp.concatenate([hist, x], axis=1)
    y = jax.lax.conv_general_dilated(xc, kernel, (1, 1, 1), ((0, 0), (pad, pad), (pad, pad)),
                                     dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    return y + bias

  for t in (1, 2, 3, 4, 5, 9):
    x = jnp.asarray(rng.normal(size=(2, t, 7, 6, ci)).astype(np.float32))
    hist = jnp.asarray(rng.normal(size=(2, wan_vae.CACHE_T, 7, 6, ci)).astype(np.float32))
    for alg, conv in convs.items():
      cache = wan_vae.FeatCache([hist])
      np.testing.assert_allclose(conv(x, cache), textbook(x, hist), atol=2e-5, err_msg=f"{alg} t={t} cached")
      np.testing.assert_array_equal(cache.new[0], jnp.concatenate([hist, x], axis=1)[:, -wan_vae.CACHE_T:])
      np.testing.assert_allclose(conv(x), textbook(x, jnp.zeros_like(hist)), atol=2e-5,
                                 err_msg=f"{alg} t={t} zero history")
  with pytest.raises(ValueError, match="temporal_conv"):
    WanVAEConfig.tiny(temporal_conv="fft")


def test_real_size_names_and_shapes_match_manifest(manifests_dir):
  model = nnx.eval_shape(lambda: WanVAE(WanVAEConfig.wan2_1(), rngs=nnx.Rngs(0)))
  ours = common.flat_shapes(model)
  manifest = _read_manifest(os.path.join(manifests_dir, "wan21_vae.tsv"))
  assert len(manifest) == convert_wan_vae.NUM_KEYS == len(ours)
  common.check_against(ours, common.shapes_to_flat(manifest, convert_wan_vae.RULES))
  assert sum(int(np.prod(s)) for s in ours.values()) == REAL_ELEMENTS
  assert sum(int(np.prod(s)) for s in manifest.values()) == REAL_ELEMENTS
  assert sorted(convert_wan_vae.official_key(k) for k in ours) == sorted(manifest)
  state = nnx.state(model)
  assert sharding.used_logical_names(state) <= set(sharding.RULES["fsdp_vae_spatial"])
  mesh = sharding.make_mesh(data=1, fsdp=8, tensor=1)
  assert sharding.sharded_fraction(state, mesh, "fsdp") >= 0.98


def test_sharded_matches_single_device(micro):
  graphdef, state = micro
  x = _video(9, 2, 1, 32, 32)  # one frame: the image path (the only one released Show-o2 uses)

  def round_trip(state, x):
    m = nnx.merge(graphdef, state)
    return m.decode(m.sample(x), clamp=False)

  ref = fast_jit(round_trip)(state, x)
  mesh = sharding.make_mesh(data=1, fsdp=2, tensor=4)
  with sharding.use_mesh(mesh, "fsdp_vae_spatial"):
    sh_state = jax.device_put(state, sharding.state_shardings(state, mesh, "fsdp_vae_spatial"))
    xs = sharding.shard_batch(np.asarray(x), mesh, "fsdp_vae_spatial")
    lowered = fast_jit(round_trip).lower(sh_state, xs)
    out = lowered.compile()(sh_state, xs)
  # act_spatial -> tensor: activations are constrained to split the frames' height 4 ways.
  assert '[{"fsdp"}, {}, {"tensor"}, {}, {}]' in lowered.as_text()  # [b, t, h, w, c]
  np.testing.assert_allclose(out, ref, atol=2e-5)


@pytest.mark.parity
def test_parity_fixture(fixtures_dir):
  from showo_jax.tools.parity_checks import wan21_vae as check
  comps = list(check.run(os.path.join(fixtures_dir, "wan21_vae"), compiler_options=FAST))
  assert len(comps) == 22
  failed = [(c.name, c.max_abs, c.note) for c in comps if not c.passed]
  assert not failed, failed
