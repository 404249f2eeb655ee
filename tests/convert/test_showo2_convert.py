"""Show-o2 converter: real-size manifests under eval_shape, strictness, bitwise export round trip, SigLIP keys."""
import os

import numpy as np
import pytest
from flax import nnx

from showo_jax import sharding
from showo_jax.convert import common, showo2 as cs, siglip as csig
from showo_jax.models.showo2 import Showo2, Showo2Config
from showo_jax.tools import parity

MANIFEST_ELEMENTS = {"1.5b": 3_063_740_640, "7b": 8_932_118_752}  # shared/parity/manifests/SUMMARY.json


def read_manifest(path):
  shapes = {}
  for line in open(path):
    if line.startswith("#") or line.startswith("key\t"):
      continue
    key, shape, _ = line.rstrip("\n").split("\t")
    shapes[key] = tuple(int(x) for x in shape.split("x"))
  return shapes


@pytest.mark.parametrize("size,scan", [("1.5b", False), ("7b", True)])
def test_real_size_model_matches_manifest(manifests_dir, size, scan):
  cfg = (Showo2Config.showo2_1_5b if size == "1.5b" else Showo2Config.showo2_7b)(scan_layers=scan)
  model = nnx.eval_shape(lambda: Showo2(cfg, rngs=nnx.Rngs(0)))
  manifest = read_manifest(os.path.join(manifests_dir, f"showo2_{size}.tsv"))
  assert len(manifest) == 910
  assert sum(int(np.prod(s)) for s in manifest.values()) == MANIFEST_ELEMENTS[size]
  ours = common.flat_shapes(model)
  common.check_against(ours, cs.shapes_to_flat(manifest, cfg))  # same names, same shapes, nothing left over
  n_ours = sum(int(np.prod(s)) for s in ours.values())
  tied = int(np.prod(manifest["showo.model.embed_tokens.weight"])) if size == "1.5b" else 0
  assert n_ours + tied == MANIFEST_ELEMENTS[size]  # the tied 1.5B head is one array here
  mesh = sharding.make_mesh(data=1, fsdp=8, tensor=1)
  assert sharding.sharded_fraction(nnx.state(model, nnx.Param), mesh, "fsdp") >= 0.98
  assert sharding.used_logical_names(nnx.state(model, nnx.Param)) <= set(sharding.RULES["fsdp"])


def test_siglip_hf_keys_map_to_showo2_semantic_keys(manifests_dir):
  hf = read_manifest(os.path.join(manifests_dir, "siglip_so400m_patch14_384.tsv"))
  mapped = csig.hf_to_showo2_keys(hf, 26)
  s2 = read_manifest(os.path.join(manifests_dir, "showo2_1.5b.tsv"))
  expected = {k: v for k, v in s2.items() if k.startswith(("und_trans.", "position_embedding."))}
  assert mapped == expected
  with pytest.raises(common.ConversionError, match="encoder layers"):
    csig.hf_to_showo2_keys(hf, 25)
  with pytest.raises(common.ConversionError, match="unused source keys"):
    csig.hf_to_showo2_keys({**hf, "vision_model.extra.weight": (1,)}, 26)


@pytest.fixture(scope="module")
def full(fixtures_dir):
  return parity.load_fixture(os.path.join(fixtures_dir, "showo2_full"))


@pytest.mark.parametrize("scan", [False, True])
def test_export_round_trip_bitwise(full, scan):
  cfg_json, _, _, sd = full
  cfg = Showo2Config.from_fixture(cfg_json, scan_layers=scan)
  model = cs.load_model(sd, cfg)
  back = cs.from_flat(common.export_flat(model), cfg, list(sd))
  assert list(back) == list(sd)
  for k, v in sd.items():
    assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
    assert np.array_equal(back[k], v), k   # includes the tied showo.lm_head.weight, re-emitted


def test_conversion_is_strict(full):
  cfg_json, _, _, sd = full
  cfg = Showo2Config.from_fixture(cfg_json)
  with pytest.raises(common.ConversionError, match="unused source keys"):
    cs.to_flat({**sd, "diffusion_head_c.weight": np.zeros(3, np.float32)}, cfg)
  missing = {k: v for k, v in sd.items() if k != "fusion_proj.3.bias"}
  with pytest.raises(common.ConversionError, match="fusion_proj.3.bias"):
    cs.load_model(missing, cfg)
  untied = dict(sd)
  untied["showo.lm_head.weight"] = sd["showo.lm_head.weight"] + 1
  with pytest.raises(common.ConversionError, match="tied"):
    cs.to_flat(untied, cfg)


def test_layouts(full):
  cfg_json, _, _, sd = full
  cfg = Showo2Config.from_fixture(cfg_json)
  flat = cs.to_flat(sd, cfg)
  w = sd["image_embedder_gen.proj.weight"]                       # [O, I, kh, kw]
  np.testing.assert_array_equal(flat["image_embedder_gen.proj.kernel"], np.transpose(w, (2, 3, 1, 0)))
  np.testing.assert_array_equal(flat["diffusion_head_a.1.adaLN_modulation.1.kernel"],
                                sd["diffusion_head_a.1.adaLN_modulation.1.weight"].T)
  np.testing.assert_array_equal(flat["fusion_proj.0.scale"], sd["fusion_proj.0.weight"])
  np.testing.assert_array_equal(flat["und_trans.layers.1.layer_norm2.scale"], sd["und_trans.layers.1.layer_norm2.weight"])
  assert "showo.lm_head.kernel" not in flat  # tied
