"""Train state: flat parameter dicts, optimizer state, step, RNG and optional EMA, placed on the mesh.

The NNX model is split once into a static ``graphdef`` and three flat ``{dotted name: array}`` dicts:
``params`` (trainable, differentiated and optimized), ``frozen`` (parameters matched by the stage's frozen
filter: no gradient, no optimizer state) and ``other`` (non-``Param`` variables, if a family has any).
Flat dicts keep the optimizer state, the shardings and the Orbax checkpoint keyed by the same names as
the converters (``convert.common.flat_state``), and make freezing a plain dict partition.

:class:`Layout` turns flat dicts back into a model inside the jitted step (``nnx.merge``); it holds
abstract templates only, so building it never allocates real-size weights.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from showo_jax import sharding
from showo_jax.convert.common import _path_str


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
  """Leaves are arrays in training; the same structure carries shardings / ShapeDtypeStructs."""
  step: Any                            # int32 scalar: number of updates applied
  params: Any                          # trainable {name: array}
  frozen: Any                          # frozen {name: array}
  other: Any                           # non-Param variables {name: array}
  opt_state: Any
  rng: Any                             # raw uint32 key data (checkpoint-friendly); per-step keys fold in `step`
  ema: Any = None                      # EMA of `params` (None when disabled)


def _flat(state: nnx.State) -> dict[str, Any]:
  return {_path_str(path): var for path, var in state.flat_state()}


@dataclasses.dataclass
class Layout:
  """How flat dicts map back onto the model: graphdef plus abstract variable templates."""
  graphdef: Any
  templates: dict[str, dict[str, nnx.Variable]]    # part -> name -> abstract Variable
  paths: dict[str, dict[str, tuple]]               # part -> name -> state path

  @classmethod
  def of(cls, abstract_model: nnx.Module, is_frozen: Callable[[str], bool]) -> "Layout":
    graphdef, params, other = nnx.split(abstract_model, nnx.Param, ...)
    templates = {"params": {}, "frozen": {}, "other": {}}
    paths = {"params": {}, "frozen": {}, "other": {}}
    for path, var in params.flat_state():
      name = _path_str(path)
      part = "frozen" if is_frozen(name) else "params"
      templates[part][name] = var
      paths[part][name] = tuple(path)
    for path, var in other.flat_state():
      name = _path_str(path)
      templates["other"][name] = var
      paths["other"][name] = tuple(path)
    return cls(graphdef, templates, paths)

  def merge(self, params: Mapping, frozen: Mapping, other: Mapping) -> nnx.Module:
    """Flat dicts → model (inside jit the values are tracers)."""
    items = []
    for part, values in (("params", params), ("frozen", frozen), ("other", other)):
      for name, tmpl in self.templates[part].items():
        items.append((self.paths[part][name], tmpl.replace(values[name])))
    # one state with every variable, sorted like nnx.split would produce it
    state = nnx.State.from_flat_path(sorted(items, key=lambda kv: tuple(str(p) for p in kv[0])))
    return nnx.merge(self.graphdef, state)

  def shapes(self, part: str) -> dict[str, jax.ShapeDtypeStruct]:
    return {n: jax.ShapeDtypeStruct(v.get_value().shape, v.get_value().dtype)
            for n, v in self.templates[part].items()}

  def shardings(self, part: str, mesh, rules) -> dict[str, NamedSharding]:
    rules = sharding.get_rules(rules) if isinstance(rules, str) else rules
    out = {}
    for n, v in self.templates[part].items():
      names = sharding._names_of(v)
      out[n] = NamedSharding(mesh, sharding.logical_to_spec(names, rules, v.get_value().shape, mesh))
    return out

  def num_params(self, part: str | None = None) -> int:
    parts = [part] if part else ["params", "frozen"]
    total = 0
    for p in parts:
      for v in self.templates[p].values():
        n = 1
        for s in v.get_value().shape:
          n *= int(s)
        total += n
    return total


def model_to_flat(model: nnx.Module, layout: Layout) -> tuple[dict, dict, dict]:
  """A concrete model → (params, frozen, other) flat dicts of arrays."""
  _, params, other = nnx.split(model, nnx.Param, ...)
  pf = {k: v.get_value() for k, v in _flat(params).items()}
  of = {k: v.get_value() for k, v in _flat(other).items()}
  return ({n: pf[n] for n in layout.templates["params"]}, {n: pf[n] for n in layout.templates["frozen"]}, of)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def opt_state_shardings(tx, params_shapes: Mapping, param_shardings: Mapping, mesh):
  """Shardings for the optimizer state: param-shaped leaves follow their parameter, the rest replicate.

  Adam moments sit in dicts keyed by the parameter names (also under ``multi_transform``'s masks), so a
  leaf whose innermost dict key is a parameter name of the same shape takes that parameter's sharding.
  """
  abstract = jax.eval_shape(tx.init, dict(params_shapes))

  def one(path, leaf):
    key = path[-1].key if path and isinstance(path[-1], jax.tree_util.DictKey) else None
    if key in params_shapes and tuple(params_shapes[key].shape) == tuple(leaf.shape):
      return param_shardings[key]
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(one, abstract)


def state_shardings(layout: Layout, tx, mesh, rules, ema: bool) -> TrainState:
  ps = layout.shardings("params", mesh, rules)
  return TrainState(
      step=replicated(mesh), params=ps, frozen=layout.shardings("frozen", mesh, rules),
      other=layout.shardings("other", mesh, rules),
      opt_state=opt_state_shardings(tx, layout.shapes("params"), ps, mesh), rng=replicated(mesh),
      ema=dict(ps) if ema else None)


def abstract_state(layout: Layout, tx, ema: bool) -> TrainState:
  ps = layout.shapes("params")
  return TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=ps, frozen=layout.shapes("frozen"),
                    other=layout.shapes("other"), opt_state=jax.eval_shape(tx.init, dict(ps)),
                    rng=jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
                    ema=dict(ps) if ema else None)


def with_shardings(abstract: TrainState, shardings: TrainState) -> TrainState:
  """Abstract arrays annotated with their target shardings (Orbax restore target)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
