"""Rule-driven, strict conversion between official state dicts and NNX states.

A converter is a table of :class:`Rule`\\ s: a regex over the *official* key, the NNX path it fills
(``{0}``, ``{1}`` … are the regex groups) and a :class:`Transform` (layout change with its exact inverse).
:func:`to_flat` applies the table to a state dict; :func:`load_into` checks the result against the model
(unfilled targets, unexpected targets, shape mismatches) and raises one :class:`ConversionError` listing
every offending key. Source keys no rule matches are errors too, unless listed in the ``skip`` regexes.
:func:`from_flat` runs the rules backwards so that export reproduces the official keys bitwise.

Stacked (``nnx.scan``) layer groups: a model with ``scan_layers`` stores ``layers.<i>.x`` as one array
``layers.x`` with a leading layer axis; :func:`stack_layers` / :func:`unstack_layers` bridge the two, so
rule tables are written once for the per-layer names.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx


class ConversionError(ValueError):
  """Strict accounting failed: the message lists every offending key."""


@dataclasses.dataclass(frozen=True)
class Transform:
  """Layout change official → ours (``fwd``), its inverse (``inv``) and the shape map (``shape``)."""
  name: str
  fwd: Callable[[np.ndarray], np.ndarray]
  inv: Callable[[np.ndarray], np.ndarray]
  shape: Callable[[tuple], tuple]


IDENT = Transform("ident", lambda x: x, lambda x: x, lambda s: tuple(s))
# nn.Linear weight [out, in] → kernel [in, out].
LINEAR = Transform("linear", lambda x: np.ascontiguousarray(x.T), lambda x: np.ascontiguousarray(x.T),
                   lambda s: tuple(s[::-1]))
# Conv weights [O, I, *k] → [*k, I, O] (channels-last).
CONV = Transform("conv", lambda x: np.ascontiguousarray(np.moveaxis(x, (0, 1), (-1, -2))),
                 lambda x: np.ascontiguousarray(np.moveaxis(x, (-1, -2), (0, 1))),
                 lambda s: tuple(s[2:]) + (s[1], s[0]))


def flatten_to(trailing: Sequence[int]) -> Transform:
  """[C, 1, 1(, 1)] style gammas → [C]; ``trailing`` are the singleton dims restored on export."""
  trailing = tuple(trailing)
  return Transform(f"flatten{trailing}", lambda x: np.ascontiguousarray(x.reshape(x.shape[0])),
                   lambda x: np.ascontiguousarray(x.reshape((x.shape[0],) + trailing)),
                   lambda s: (s[0],))


@dataclasses.dataclass(frozen=True)
class Rule:
  src: str              # regex over official keys (full match)
  dst: str              # NNX path template, groups as {0}, {1}, ...
  transform: Transform = IDENT

  def match(self, key: str):
    return re.fullmatch(self.src, key)


def _dst(rule: Rule, m: re.Match) -> str:
  return rule.dst.format(*m.groups())


def map_key(rules: Sequence[Rule], key: str) -> tuple[str, Rule] | None:
  for rule in rules:
    m = rule.match(key)
    if m:
      return _dst(rule, m), rule
  return None


def to_flat(sd: Mapping[str, np.ndarray], rules: Sequence[Rule], skip: Sequence[str] = (),
            aliases: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
  """Official state dict → ``{nnx path: array}``. Unmatched keys (not in ``skip``) raise.

  ``aliases`` maps official keys that duplicate another key (tied weights) to that key; they must be
  equal, and are not converted twice.
  """
  out: dict[str, np.ndarray] = {}
  unused, errors = [], []
  aliases = dict(aliases or {})
  for key, value in sd.items():
    if key in aliases:
      if aliases[key] in sd and not np.array_equal(np.asarray(sd[aliases[key]]), np.asarray(value)):
        errors.append(f"{key}: expected to be tied to {aliases[key]} but the values differ")
      continue
    if any(re.fullmatch(s, key) for s in skip):
      continue
    hit = map_key(rules, key)
    if hit is None:
      unused.append(key)
      continue
    dst, rule = hit
    if dst in out:
      errors.append(f"{key}: target {dst} filled twice")
    out[dst] = rule.transform.fwd(np.asarray(value))
  if unused or errors:
    raise ConversionError(_report(unused=unused, errors=errors))
  return out


def shapes_to_flat(shapes: Mapping[str, tuple], rules: Sequence[Rule], skip: Sequence[str] = (),
                   aliases: Mapping[str, str] | None = None) -> dict[str, tuple]:
  """Like :func:`to_flat` on shapes only (real-size manifests without memory)."""
  out, unused = {}, []
  for key, shape in shapes.items():
    if key in (aliases or {}) or any(re.fullmatch(s, key) for s in skip):
      continue
    hit = map_key(rules, key)
    if hit is None:
      unused.append(key)
      continue
    out[hit[0]] = hit[1].transform.shape(tuple(shape))
  if unused:
    raise ConversionError(_report(unused=unused))
  return out


def from_flat(flat: Mapping[str, np.ndarray], rules: Sequence[Rule], key_order: Iterable[str],
              aliases: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
  """``{nnx path: array}`` → official state dict, for the official keys in ``key_order``."""
  out, missing = {}, []
  aliases = dict(aliases or {})
  for key in key_order:
    src_key = aliases.get(key, key)
    hit = map_key(rules, src_key)
    if hit is None or hit[0] not in flat:
      missing.append(key)
      continue
    out[key] = hit[1].transform.inv(np.asarray(flat[hit[0]]))
  if missing:
    raise ConversionError(_report(missing=missing))
  return out


def _report(unused=(), missing=(), errors=(), mismatched=(), unexpected=()) -> str:
  parts = []
  for title, items in (("unused source keys (no rule matches; add a rule or an explicit skip)", unused),
                       ("unfilled target parameters", missing),
                       ("targets that do not exist in the model", unexpected),
                       ("shape mismatches", mismatched), ("errors", errors)):
    items = list(items)
    if items:
      shown = "\n    ".join(items[:200]) + (f"\n    ... and {len(items) - 200} more" if len(items) > 200 else "")
      parts.append(f"  {len(items)} {title}:\n    {shown}")
  return "checkpoint conversion failed:\n" + "\n".join(parts)


# ------------------------------------------------------------------ model state <-> flat dicts
def _path_str(path) -> str:
  return ".".join(str(getattr(p, "key", p)) for p in path)


def flat_state(model_or_state) -> dict[str, nnx.Variable]:
  """``{dotted path: Variable}`` of the ``nnx.Param`` leaves of a model or state."""
  state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state, nnx.Param)
  return {_path_str(path): var for path, var in state.flat_state()}


def flat_shapes(model_or_state) -> dict[str, tuple]:
  return {k: tuple(v.get_value().shape) for k, v in flat_state(model_or_state).items()}


def stack_layers(flat: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
  """``prefix.<i>.rest`` entries → ``prefix.rest`` stacked on a new leading axis (``nnx.scan`` layout)."""
  pat = re.compile(re.escape(prefix) + r"\.(\d+)\.(.+)")
  groups: dict[str, dict[int, np.ndarray]] = {}
  out = {}
  for k, v in flat.items():
    m = pat.fullmatch(k)
    if m:
      groups.setdefault(m.group(2), {})[int(m.group(1))] = v
    else:
      out[k] = v
  for rest, layers in groups.items():
    n = max(layers) + 1
    if sorted(layers) != list(range(n)):
      raise ConversionError(f"layers of {prefix}.*.{rest} are not contiguous: {sorted(layers)}")
    out[f"{prefix}.{rest}"] = np.stack([layers[i] for i in range(n)])
  return out


def unstack_layers(flat: Mapping[str, np.ndarray], prefix: str, names: Iterable[str]) -> dict[str, np.ndarray]:
  """Inverse of :func:`stack_layers` for the stacked entries whose rest-path is in ``names``."""
  names = set(names)
  out = {}
  for k, v in flat.items():
    rest = k[len(prefix) + 1:] if k.startswith(prefix + ".") else None
    if rest in names:
      for i in range(v.shape[0]):
        out[f"{prefix}.{i}.{rest}"] = v[i]
    else:
      out[k] = v
  return out


def check_against(model_shapes: Mapping[str, tuple], flat_shapes_: Mapping[str, tuple]) -> None:
  """Raise one :class:`ConversionError` unless ``flat_shapes_`` fills ``model_shapes`` exactly."""
  missing = sorted(set(model_shapes) - set(flat_shapes_))
  unexpected = sorted(set(flat_shapes_) - set(model_shapes))
  mismatched = [f"{k}: checkpoint {tuple(flat_shapes_[k])} vs model {tuple(model_shapes[k])}"
                for k in sorted(set(model_shapes) & set(flat_shapes_))
                if tuple(model_shapes[k]) != tuple(flat_shapes_[k])]
  if missing or unexpected or mismatched:
    raise ConversionError(_report(missing=missing, unexpected=unexpected, mismatched=mismatched))


def load_into(model: nnx.Module, flat: Mapping[str, np.ndarray], dtype=None) -> nnx.Module:
  """Fill ``model``'s parameters from ``flat`` (strict; one error lists everything wrong)."""
  targets = flat_state(model)
  check_against({k: tuple(v.get_value().shape) for k, v in targets.items()},
                {k: tuple(np.shape(v)) for k, v in flat.items()})
  for k, var in targets.items():
    value = flat[k]
    var.set_value(jax.numpy.asarray(value, dtype=dtype or var.get_value().dtype))
  return model


def export_flat(model: nnx.Module) -> dict[str, np.ndarray]:
  return {k: np.asarray(v.get_value()) for k, v in flat_state(model).items()}


def save_safetensors(sd: Mapping[str, np.ndarray], path: str) -> None:
  from safetensors.numpy import save_file
  save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, path)


def read_manifest(path: str) -> dict[str, tuple]:
  """A ``shared/parity/manifests/*.tsv`` file → ``{official key: shape}`` (``#`` lines are provenance)."""
  out = {}
  for line in open(path):
    if line.startswith("#") or line.startswith("key\t") or not line.strip():
      continue
    key, shape = line.rstrip("\n").split("\t")[:2]
    out[key] = tuple(int(s) for s in shape.split("x")) if shape not in ("", "scalar", "()") else ()
  return out
