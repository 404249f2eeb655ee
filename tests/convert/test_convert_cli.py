"""``launch.convert``: official safetensors → Orbax directory → export back, bitwise; bad input is clear."""
import os

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from launch import convert
from showo_jax.convert import io
from showo_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM


@pytest.mark.parity
def test_convert_and_export_round_trip(fixtures_dir, tmp_path):
  f = os.path.join(fixtures_dir, "showo2_llm_backbone")
  src, cfg = os.path.join(f, "weights.safetensors"), os.path.join(f, "config.json")
  dst = str(tmp_path / "conv")
  assert convert.main(["--model", "qwen2", "--src", src, "--config-json", cfg, "--dst", dst]) == 0
  assert io.read_meta(dst)["model"] == "qwen2"
  out = str(tmp_path / "back.safetensors")
  assert convert.main(["--model", "qwen2", "--config-json", cfg, "--export", dst, "--keys-from", src,
                       "--dst", out]) == 0
  a, b = load_file(src), load_file(out)
  assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
  # the converted directory loads strictly into a model built from the same config
  import json
  model = Qwen2ForCausalLM(Qwen2Config.from_hf(json.load(open(cfg))["qwen2_config"]), rngs=nnx.Rngs(3))
  io.load_params(dst, model)
  np.testing.assert_array_equal(np.asarray(model.model.norm.scale.get_value()), a["model.norm.weight"])


@pytest.mark.parity
def test_unknown_keys_abort_with_a_list(fixtures_dir, tmp_path, capsys):
  from safetensors.numpy import save_file
  f = os.path.join(fixtures_dir, "showo2_llm_backbone")
  sd = load_file(os.path.join(f, "weights.safetensors"))
  sd["model.layers.0.self_attn.q_norm.weight"] = np.ones(16, np.float32)
  src = str(tmp_path / "bad.safetensors")
  save_file(sd, src)
  rc = convert.main(["--model", "qwen2", "--src", src, "--config-json", os.path.join(f, "config.json"),
                     "--dst", str(tmp_path / "x")])
  assert rc == 1
  assert "q_norm" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "x" / "meta.json")


@pytest.mark.parity
@pytest.mark.parametrize("model,fixture", [("showo2", "showo2_full"), ("wan_vae", "wan21_vae"),
                                           ("showo", "showo_v1"), ("magvit2", "magvitv2")])
def test_every_registered_model_converts_its_fixture(model, fixture, fixtures_dir, tmp_path):
  f = os.path.join(fixtures_dir, fixture)
  src, cfg = os.path.join(f, "weights.safetensors"), os.path.join(f, "config.json")
  dst = str(tmp_path / "conv")
  assert convert.main(["--model", model, "--src", src, "--config-json", cfg, "--dst", dst]) == 0
  out = str(tmp_path / "back.safetensors")
  assert convert.main(["--model", model, "--config-json", cfg, "--export", dst, "--keys-from", src,
                       "--dst", out]) == 0
  a, b = load_file(src), load_file(out)
  assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
