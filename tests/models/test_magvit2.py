"""MAGVIT-v2 (Show-o v1 tokenizer): fixture parity (codes exact), LFQ rules, real-size shapes == manifest,
export round trip, non-square decode, malformed checkpoints."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax.convert import common, magvit2 as cm
from showo_jax.models.magvit2 import LFQuantizer, MAGVITv2, MAGVITv2Config, codebook, to_uint8
from showo_jax.tools import parity


@pytest.mark.parity
def test_fixture_parity(fixtures_dir):
  status, comps = parity.run_fixture("magvitv2", os.path.join(fixtures_dir, "magvitv2"))
  assert status == "ok", status
  names = {c.name for c in comps}
  assert {"encode.codes", "get_code", "decode_code", "fixed_codes.decoded", "export.bitwise"} <= names
  bad = [(c.name, c.max_abs, c.note) for c in comps if not c.passed]
  assert not bad, bad


def test_lfq_sign_rule_bit_order_and_codebook():
  q = LFQuantizer(MAGVITv2Config.tiny())
  z = jnp.zeros((1, 1, 2, 13)).at[0, 0, 0, 0].set(0.5).at[0, 0, 1, 12].set(1e-7)
  out = q(z)
  # exactly 0 -> -1; channel 0 is the most significant bit
  assert np.asarray(out["z"])[0, 0, 0, 1] == -1.0 and np.asarray(out["z"])[0, 0, 0, 0] == 1.0
  np.testing.assert_array_equal(np.asarray(out["indices"]), [[[4096, 1]]])
  codes = jax.random.randint(jax.random.key(0), (3, 16), 0, 8192)
  entry = q.get_codebook_entry(codes)
  assert entry.shape == (3, 4, 4, 13)
  np.testing.assert_array_equal(np.asarray(q.get_indices(entry)).reshape(3, 16), np.asarray(codes))
  np.testing.assert_array_equal(np.asarray(entry).reshape(-1, 13), codebook()[np.asarray(codes).reshape(-1)])
  assert codebook().shape == (8192, 13) and (codebook()[1] == [-1] * 12 + [1]).all()
  # straight-through: the quantized values are the reference's float ops z + (q - z)
  big = q(jnp.full((1, 1, 1, 13), 3e8))
  assert np.asarray(big["indices"]).item() == 0   # z + (1 - z) rounds to 0 in float32, as upstream


def test_real_size_shapes_equal_manifest(manifests_dir):
  man = common.read_manifest(os.path.join(manifests_dir, "magvitv2.tsv"))
  cfg = MAGVITv2Config.magvitv2()
  assert list(man) == cm.official_keys(cfg)
  model = nnx.eval_shape(lambda: MAGVITv2(cfg, rngs=nnx.Rngs(0)))
  common.check_against(common.flat_shapes(model), cm.shapes_to_flat(man, cfg))
  params = sum(int(np.prod(s)) for s in common.flat_shapes(model).values())
  assert params + 8192 * 13 + 13 == 95493513   # + the two LFQ buffers = SUMMARY.json


def _tiny(fixtures_dir):
  cfg_json, _, _, sd = parity.load_fixture(os.path.join(fixtures_dir, "magvitv2"))
  cfg = MAGVITv2Config.from_fixture(cfg_json)
  assert cfg == MAGVITv2Config.tiny()
  return cfg, cm.load(sd, cfg), sd


def test_export_round_trip_and_strictness(fixtures_dir):
  cfg, model, sd = _tiny(fixtures_dir)
  assert sorted(sd) == sorted(cm.official_keys(cfg)) and sd["quantize.power_vals"].dtype == np.int64
  again = cm.export(model)
  assert list(again) == cm.official_keys(cfg)
  assert all(np.array_equal(again[k], sd[k]) and again[k].dtype == sd[k].dtype for k in sd)
  with pytest.raises(common.ConversionError, match="LFQ formula"):
    cm.to_flat({**sd, "quantize.embedding": -sd["quantize.embedding"]}, cfg)
  with pytest.raises(common.ConversionError, match="missing"):
    cm.to_flat({k: v for k, v in sd.items() if k != "quantize.power_vals"}, cfg)
  with pytest.raises(common.ConversionError, match="unused source keys"):
    cm.to_flat({**sd, "quantize.codebook": sd["quantize.embedding"]}, cfg)
  with pytest.raises(common.ConversionError, match="do not exist"):
    cm.load({**sd, "encoder.down.0.block.9.conv1.weight": sd["encoder.down.0.block.0.conv1.weight"]}, cfg)
  with pytest.raises(common.ConversionError, match="unfilled"):
    cm.load({k: v for k, v in sd.items() if k != "decoder.conv_out.bias"}, cfg)


def test_non_square_decode_and_uint8(fixtures_dir):
  cfg, model, _ = _tiny(fixtures_dir)
  codes = jax.random.randint(jax.random.key(1), (1, 8), 0, 8192)
  img = jax.jit(lambda m, c: m.decode_code(c, shape=(2, 4)))(model, codes)
  assert img.shape == (1, 32, 64, 3)
  u8 = to_uint8(jnp.asarray([-2.0, -1.0, 0.0, 0.999, 1.5]))
  np.testing.assert_array_equal(np.asarray(u8), [0, 0, 127, 254, 255])
