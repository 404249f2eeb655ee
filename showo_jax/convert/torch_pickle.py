"""Read PyTorch ``.bin`` / ``.pth`` zip checkpoints without torch.

A ``torch.save`` file is a zip archive holding ``<root>/data.pkl`` (the pickled object graph) and one
raw little-endian buffer per storage under ``<root>/data/<key>``. We unpickle ``data.pkl`` with a
*restricted* unpickler: the only globals it resolves are the tensor-rebuild helpers, storage classes and
``collections.OrderedDict``. Anything else (``os.system``, ``builtins.eval``, arbitrary classes) raises
:class:`UnsafePickleError` before it can run, so a malicious checkpoint cannot execute code.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  """The checkpoint references a global outside the small allow-list."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, name):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  itemsize = storage.dtype.itemsize
  if len(size) == 0:
    return storage[offset].copy()
  arr = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                        strides=tuple(s * itemsize for s in stride))
  return np.ascontiguousarray(arr)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
  def __init__(self, fh, zf: zipfile.ZipFile, root: str):
    super().__init__(fh)
    self._zf, self._root, self._cache = zf, root, {}

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64", "int32"):
      return name  # dtype objects appear in newer typed-storage pickles
    raise UnsafePickleError(
        f"refusing to load global {module}.{name}: only tensors and ordered dicts can be read from a "
        "checkpoint (the file may be malicious or not a plain state dict)")

  def persistent_load(self, pid):
    kind, storage_type, key, _location, numel = pid[:5]
    if kind != "storage":
      raise UnsafePickleError(f"unsupported persistent id {kind!r}")
    if key not in self._cache:
      dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.dtype(np.float32)
      raw = self._zf.read(f"{self._root}/data/{key}")
      self._cache[key] = np.frombuffer(raw, dtype=dtype, count=numel)
    return self._cache[key]


def load(path: str) -> dict[str, np.ndarray]:
  """Load a torch zip checkpoint as ``{name: numpy array}``; unwraps ``{'state_dict': ...}``/``{'model': ...}``."""
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path} is not a PyTorch zip checkpoint (legacy non-zip torch.save files are not supported)")
  with zipfile.ZipFile(path) as zf:
    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
      raise ValueError(f"{path}: no data.pkl inside the archive")
    root = pkl[0].rsplit("/", 1)[0] if "/" in pkl[0] else ""
    with zf.open(pkl[0]) as fh:
      obj: Any = _Unpickler(fh, zf, root).load()
  for wrapper in ("state_dict", "model", "module"):
    if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
      obj = obj[wrapper]
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
  return {k: np.asarray(v) for k, v in obj.items()}


def load_any(path: str) -> dict[str, np.ndarray]:
  """``.safetensors`` or a torch zip (``.bin``/``.pth``/``.pt``); sharded HF indexes are followed."""
  import json
  import os
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file
    return load_file(path)
  if path.endswith(".index.json"):
    index = json.load(open(path))
    out: dict[str, np.ndarray] = {}
    for shard in sorted(set(index["weight_map"].values())):
      out.update(load_any(os.path.join(os.path.dirname(path), shard)))
    return out
  return load(path)
