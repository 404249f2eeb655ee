"""Wan2.1 VAE converter: layout rules, strictness, bitwise export (random and fixture weights)."""
import functools
import os

import numpy as np
import pytest
from flax import nnx

from showo_jax.convert import common
from showo_jax.convert import wan_vae as convert_wan_vae
from showo_jax.models.wan_vae import WanVAE, WanVAEConfig


def _abstract(cfg):
  return nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0)))


@functools.lru_cache(maxsize=None)
def _shapes(cfg):
  return common.flat_shapes(_abstract(cfg))


def _random_official(cfg, seed=0):
  """A random official-layout state dict for ``cfg``, from the model's shapes through the rules' inverse."""
  rng = np.random.default_rng(seed)
  flat = {k: rng.standard_normal(s).astype(np.float32) for k, s in _shapes(cfg).items()}
  return convert_wan_vae.from_flat(flat), flat


def test_layouts_and_bitwise_round_trip():
  sd, flat = _random_official(WanVAEConfig.tiny(), seed=3)
  assert len(sd) == convert_wan_vae.NUM_KEYS
  # Official layouts: channel-first gammas, Conv3d [O, I, t, h, w], Conv2d [O, I, h, w].
  assert sd["encoder.middle.1.norm.gamma"].shape == (32, 1, 1)
  assert sd["encoder.head.0.gamma"].shape == (32, 1, 1, 1)
  assert sd["encoder.conv1.weight"].shape == (8, 3, 3, 3, 3)
  assert sd["decoder.upsamples.3.time_conv.weight"].shape == (64, 32, 3, 1, 1)
  assert sd["encoder.downsamples.2.resample.1.weight"].shape == (8, 8, 3, 3)
  assert sd["encoder.middle.1.to_qkv.weight"].shape == (96, 32, 1, 1)
  w, k = sd["decoder.head.2.weight"], flat["decoder.head.2.kernel"]
  np.testing.assert_array_equal(k[2, 1, 0, 5, 1], w[1, 5, 2, 1, 0])  # [t, h, w, I, O] <- [O, I, t, h, w]
  back = convert_wan_vae.to_flat(sd)
  assert back.keys() == flat.keys()
  for key in flat:
    assert back[key].dtype == flat[key].dtype and np.array_equal(back[key], flat[key]), key
  again = convert_wan_vae.from_flat(back, key_order=list(sd))
  assert all(np.array_equal(again[key], sd[key]) and again[key].shape == sd[key].shape for key in sd)


def test_strict():
  sd, flat = _random_official(WanVAEConfig.tiny())
  with pytest.raises(common.ConversionError, match="encoder.extra.weight"):
    convert_wan_vae.to_flat({**sd, "encoder.extra.weight": np.zeros(1, np.float32)})
  with pytest.raises(common.ConversionError, match="unfilled"):
    common.load_into(_abstract(WanVAEConfig.tiny()), {k: v for k, v in flat.items() if "time_conv" not in k})
  with pytest.raises(common.ConversionError, match="shape"):  # a width-8 file into a width-4 model
    convert_wan_vae.load_into(_abstract(WanVAEConfig.tiny(dim=4)), sd)


def test_prefixed_rules():
  sd, flat = _random_official(WanVAEConfig.tiny())
  prefixed = {"vae." + k: v for k, v in sd.items()}
  out = convert_wan_vae.to_flat(prefixed, prefix="vae.", dst_prefix="vae.")
  assert out.keys() == {"vae." + k for k in flat}
  back = convert_wan_vae.from_flat(out, prefix="vae.", dst_prefix="vae.")
  assert back.keys() == prefixed.keys()


def test_fixture_weights_load_and_export_bitwise(fixtures_dir):
  from safetensors.numpy import load_file
  path = os.path.join(fixtures_dir, "wan21_vae", "weights.safetensors")
  sd = load_file(path)
  assert len(sd) == convert_wan_vae.NUM_KEYS
  model = convert_wan_vae.load_model(path, WanVAEConfig.tiny())  # reads through torch_pickle.load_any
  out = convert_wan_vae.from_flat(common.export_flat(model), key_order=list(sd))
  assert list(out) == list(sd)
  for key, value in sd.items():
    assert out[key].shape == value.shape and out[key].dtype == value.dtype and np.array_equal(out[key], value), key
