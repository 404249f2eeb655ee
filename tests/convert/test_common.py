"""Converter machinery: strict accounting, torch-free .bin reading, malicious pickles, bitwise export."""
import collections
import io
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
from flax import nnx

from showo_jax.convert import common, qwen2 as cq, torch_pickle
from showo_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM


# ------------------------------------------------------------------ writing torch-format zips without torch
def _fake_torch_modules():
  """Just enough of a ``torch`` module tree for pickle to *write* references to the rebuild helpers."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*a):  # never called: only its name is pickled
    raise AssertionError

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch._utils = utils

  class FloatStorage:
    pass

  class LongStorage:
    pass

  for cls in (FloatStorage, LongStorage):
    cls.__module__ = "torch"
    cls.__qualname__ = cls.__name__
    setattr(torch, cls.__name__, cls)
  return torch, utils


class _Storage:
  def __init__(self, array, key):
    self.array, self.key = array, key


class _Tensor:
  def __init__(self, array, key):
    self.array, self.storage = array, _Storage(array, key)

  def __reduce__(self):
    fn = sys.modules["torch._utils"]._rebuild_tensor_v2
    stride = tuple(s // self.array.itemsize for s in self.array.strides)
    return fn, (self.storage, 0, self.array.shape, stride, False, collections.OrderedDict())


def write_torch_zip(path, sd):
  torch, utils = _fake_torch_modules()
  saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
  sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
  try:
    tensors = {k: _Tensor(np.ascontiguousarray(v), str(i)) for i, (k, v) in enumerate(sd.items())}
    buf = io.BytesIO()

    class P(pickle.Pickler):
      def persistent_id(self, obj):
        if isinstance(obj, _Storage):
          storage = torch.LongStorage if obj.array.dtype == np.int64 else torch.FloatStorage
          return ("storage", storage, obj.key, "cpu", obj.array.size)
        return None

    P(buf, protocol=2).dump(collections.OrderedDict(tensors))
    with zipfile.ZipFile(path, "w") as zf:
      zf.writestr("archive/data.pkl", buf.getvalue())
      for t in tensors.values():
        zf.writestr(f"archive/data/{t.storage.key}", t.array.tobytes())
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


def test_torch_zip_reader_round_trips(tmp_path):
  sd = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 2, 3], np.int64),
        "t": np.arange(6, dtype=np.float32).reshape(2, 3).T.copy()}
  path = str(tmp_path / "x.bin")
  write_torch_zip(path, sd)
  assert "torch" not in sys.modules
  got = torch_pickle.load(path)
  assert set(got) == set(sd)
  for k in sd:
    np.testing.assert_array_equal(got[k], sd[k])
    assert got[k].dtype == sd[k].dtype


def test_malicious_pickle_is_refused_without_running(tmp_path):
  marker = tmp_path / "pwned"

  class Evil:
    def __reduce__(self):
      return (os.system, (f"touch {marker}",))

  path = str(tmp_path / "evil.pth")
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
  with pytest.raises(torch_pickle.UnsafePickleError, match="refusing to load global"):
    torch_pickle.load(path)
  assert not marker.exists()


def _tiny_sd(cfg, seed=0):
  model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(seed))
  keys = [k for k in _official_keys(cfg)]
  return common.from_flat(common.export_flat(model), cq.rules(cfg), keys, aliases=cq.aliases(cfg))


def _official_keys(cfg):
  keys = ["model.embed_tokens.weight"]
  for i in range(cfg.num_hidden_layers):
    p = f"model.layers.{i}."
    keys += [p + f"self_attn.{n}.weight" for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    keys += [p + f"self_attn.{n}.bias" for n in ("q_proj", "k_proj", "v_proj")]
    keys += [p + f"mlp.{n}.weight" for n in ("gate_proj", "up_proj", "down_proj")]
    keys += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
  return keys + ["model.norm.weight", "lm_head.weight"]


def test_strict_errors_list_every_offending_key():
  cfg = Qwen2Config.tiny(tie_word_embeddings=False)
  sd = _tiny_sd(cfg)
  bad = dict(sd)
  bad["model.layers.0.extra.weight"] = np.zeros(3, np.float32)
  bad["vision_tower.x"] = np.zeros(1, np.float32)
  with pytest.raises(common.ConversionError) as e:
    cq.to_flat(bad, cfg)
  assert "model.layers.0.extra.weight" in str(e.value) and "vision_tower.x" in str(e.value)
  # an explicit skip list is the only exception
  common.to_flat(bad, cq.rules(cfg), skip=[r"model\.layers\.\d+\.extra\..*", r"vision_tower\..*"])

  missing = dict(sd)
  del missing["model.layers.1.mlp.up_proj.weight"]
  missing["model.layers.0.mlp.down_proj.weight"] = np.zeros((5, 5), np.float32)
  model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(1))
  with pytest.raises(common.ConversionError) as e:
    common.load_into(model, cq.to_flat(missing, cfg))
  msg = str(e.value)
  assert "model.layers.1.mlp.up_proj.kernel" in msg and "model.layers.0.mlp.down_proj.kernel" in msg


def test_tied_head_must_equal_embedding():
  cfg = Qwen2Config.tiny(tie_word_embeddings=True)
  sd = _tiny_sd(cfg)
  assert "lm_head.weight" in sd
  cq.to_flat(sd, cfg)
  sd["lm_head.weight"] = sd["lm_head.weight"] + 1
  with pytest.raises(common.ConversionError, match="tied"):
    cq.to_flat(sd, cfg)


@pytest.mark.parametrize("scan", [False, True])
def test_export_round_trip_is_bitwise(tmp_path, scan):
  cfg = Qwen2Config.tiny(tie_word_embeddings=False, scan_layers=scan)
  sd = _tiny_sd(Qwen2Config.tiny(tie_word_embeddings=False), seed=4)
  model = Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(9))
  common.load_into(model, cq.to_flat(sd, cfg))
  back = cq.from_flat(common.export_flat(model), cfg, list(sd))
  path = str(tmp_path / "out.safetensors")
  common.save_safetensors(back, path)
  reread = torch_pickle.load_any(path)
  assert list(reread) == list(sd) or set(reread) == set(sd)
  for k in sd:
    assert reread[k].dtype == sd[k].dtype and np.array_equal(reread[k], sd[k]), k


def test_resize_vocab_keeps_leading_rows():
  sd = {"model.embed_tokens.weight": np.arange(20, dtype=np.float32).reshape(10, 2)}
  out = cq.resize_vocab(sd, 7)
  np.testing.assert_array_equal(out["model.embed_tokens.weight"], sd["model.embed_tokens.weight"][:7])
