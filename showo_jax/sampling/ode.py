"""Show-o2 flow-matching sampler: Euler ODE with time shift, classifier-free guidance, prefix reuse.

Reference: ``showlab/Show-o@45a5a2d:show-o2/transport/transport.py::Sampler.sample_ode`` +
``transport/integrators.py::ode`` (torchdiffeq ``odeint(method='euler')``), driving
``models/modeling_showo2_qwen2_5.py::Showo2Qwen2_5.t2i_generate`` (spec ``showo2.md`` §10.1, §10.2, §4.8).

Algorithm (exactly the reference's):

* grid ``t_k = s_k / (s_k + k − k·s_k)`` with ``s = linspace(0, 1, S)`` in float32 (``transport.ode_grid``):
  ``S`` points, ``S − 1`` model evaluations; ``t = 0`` is noise, ``t = 1`` data;
* Euler on a float32 state: ``x_{k+1} = x_k + (t_{k+1} − t_k) · v(x_k, t_k)``, ``v`` cast to float32;
* guidance ``v = v_u + g·(v_c − v_u)`` computed **in the model dtype** (bf16 for the released scripts); both
  CFG halves of the reference follow the same trajectory, so only one copy of the state is kept here;
* initial noise: :func:`initial_noise` draws float32 ``N(0, 1)`` and, with ``round_to_bf16=True`` (the
  default, as ``inference_t2i.py`` / ``inference_mixed_modality.py`` do with ``.to(torch.bfloat16)``),
  rounds it to bfloat16 values before the float32 ODE starts;
* ``first_frame_as_cond`` (image-to-video): latent frame 0 of the state is the conditioning frame and the
  model zeroes its velocity, so it never moves.

The generated block of each row is described by a :class:`Branch` (tokens, ``(offset, length)`` of the
block being denoised, and optionally *context* blocks before it: the clean history images of
mixed-modality generation, fed with a fixed ``t`` — the reference's ``t2i_generate`` forces 1.0 — and a
zero velocity, i.e. ``only_denoise_last_image``). One branch is the conditional rows, the other the
null-prompt rows.

**Prefix reuse** (``prefix_reuse=True``, the default). Under the omni mask the positions before a row's
generated block (prompt text and any context blocks) never attend to it, and the flow head does not modulate
them with the current ``t``: their LLM and flow-head keys/values are the same at every step. Positions after
the block (``eoi``, ``eos``, padding) are causal and cannot influence it. So:

1. once per call, the prefixes ``[0, F)`` (``F`` = the largest block offset, rounded up to ``bucket``) are run
   into a :class:`~showo_jax.models.showo2.Showo2Cache`: one causal call for the *distinct* prefixes of all
   rows without context blocks — de-duplicated across the conditional and null branches (identical null rows,
   repeated prompts, an empty prompt) — plus one call for rows with context blocks, then gathered back to one
   cache row per row; positions of a row at or after its own block offset are junk here and are overwritten
   (its block) or never read (after it);
2. every Euler step runs **only the block positions** ``[o_r, o_r + l)`` of every row — conditional and null
   rows in one call, ``jax.vmap`` over rows so that each row has its own cache index ``o_r`` (ragged prompts
   cost nothing extra).

Per step this is ``rows × l`` positions instead of ``rows × L`` (4 × 65 instead of 4 × 256 in the benchmark).
The result equals the uncached path (tested, also on the fixture); ``prefix_reuse=False`` is the reference
computation (all rows at full length, one batched call when the two branches have the same layout).

Everything from the prefix fill to the last Euler step is one jitted function (``lax.scan`` over the steps),
compiled once per (model, shapes, ``F``, step count) and cached; offsets are traced values.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, PRNGKeyArray

from showo_jax import transport
from showo_jax.models.showo2 import Showo2, Showo2Cache


# ----------------------------------------------------------------------------------------------- inputs
@dataclasses.dataclass(frozen=True)
class Branch:
  """The rows of one guidance branch (host-side; see the module docstring).

  Attributes:
    tokens: ``[b, L]`` ids, placeholders at the visual positions (``sequence.build_t2i_inference`` etc.).
    target: ``[b, 2]`` ``(offset, length)`` of the block being generated (``length`` includes the time token).
    context_positions: ``[b, m, 2]`` absolute ``(offset, length)`` of clean visual blocks that precede the
      target in every row (mixed-modality history), or None.
    context_latents: ``[b, m, *spatial, C]`` (channels-last, same spatial shape as the target), or None.
    context_t: the ``t`` those blocks are embedded with (1.0 = clean: ``t2i_generate`` sets it).
  """
  tokens: Any
  target: Any
  context_positions: Any = None
  context_latents: Any = None
  context_t: float = 1.0

  def __post_init__(self):
    tok, tgt = np.asarray(self.tokens), np.asarray(self.target)
    if tok.ndim != 2 or tgt.shape != (tok.shape[0], 2):
      raise ValueError(f"tokens must be [b, L] and target [b, 2]; got {tok.shape} and {tgt.shape}")
    if np.any(tgt[:, 1] < 2) or np.any(tgt.sum(-1) > tok.shape[1]):
      raise ValueError(f"target blocks {tgt.tolist()} do not fit rows of length {tok.shape[1]}")
    if (self.context_positions is None) != (self.context_latents is None):
      raise ValueError("context_positions and context_latents go together")
    if self.context_positions is not None:
      cp = np.asarray(self.context_positions)
      if cp.ndim != 3 or cp.shape[0] != tok.shape[0] or np.any(cp[..., 1] <= 0):
        raise ValueError(f"context_positions must be [b, m, 2] with non-empty blocks; got {cp.tolist()}")
      if np.any(cp.sum(-1) > tgt[:, None, 0]):
        raise ValueError("context blocks must end before the generated block")

  @classmethod
  def from_batch(cls, batch: dict, **kw) -> "Branch":
    """From a ``sequence.collate`` dict whose rows have one visual block (T2I / T2V)."""
    return cls(tokens=batch["tokens"], target=np.asarray(batch["modality_positions"])[:, -1], **kw)

  @property
  def batch(self) -> int:
    return int(np.asarray(self.tokens).shape[0])

  @property
  def num_context(self) -> int:
    return 0 if self.context_positions is None else int(np.asarray(self.context_positions).shape[1])


@dataclasses.dataclass(frozen=True)
class _BranchSpec:
  """Static facts about one branch (hashable; part of the jit cache key)."""
  length: int           # L (uncached path)
  num_context: int
  context_t: float


@dataclasses.dataclass(frozen=True)
class _FillGroup:
  """Rows whose prefixes are filled by one call: their distinct prefixes, with or without context blocks."""
  num_unique: int
  num_context: int
  context_t: float


def _unique_rows(tok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(first row of each distinct row, inverse)``, distinct rows numbered in first-occurrence order."""
  if tok.shape[1] == 0:
    return np.zeros((1,), np.int64), np.zeros((tok.shape[0],), np.int64)
  _, first, inverse = np.unique(tok, axis=0, return_index=True, return_inverse=True)
  order = np.argsort(first)
  rank = np.empty_like(order)
  rank[order] = np.arange(order.size)
  return first[order], rank[np.asarray(inverse).reshape(-1)]


def _fill_plan(branches: list[Branch], fill: int) -> tuple[tuple[_FillGroup, ...], list[dict], np.ndarray]:
  """Group all rows (cond then null) for the prefix fill. Rows without context blocks are de-duplicated across
  both branches (identical null rows, repeated prompts, an empty prompt equal to the null prompt) and filled
  in one call; rows with context blocks are filled as they are. Returns the groups (static), their arrays and
  ``index``: row → cache row in the concatenation of the groups."""
  groups, arrays = [], []
  index = [None] * len(branches)
  base = 0
  plain = [i for i, br in enumerate(branches) if br.context_positions is None]
  if plain:
    tok = np.concatenate([np.asarray(branches[i].tokens)[:, :fill] for i in plain])
    first, inv = _unique_rows(tok)
    groups.append(_FillGroup(int(first.size), 0, 1.0))
    arrays.append(dict(tokens=jnp.asarray(tok[first], jnp.int32)))
    for i, part in zip(plain, np.split(inv, np.cumsum([branches[i].batch for i in plain])[:-1])):
      index[i] = part
    base = int(first.size)
  for i, br in enumerate(branches):
    if br.context_positions is not None:
      groups.append(_FillGroup(br.batch, br.num_context, float(br.context_t)))
      arrays.append(dict(tokens=jnp.asarray(np.asarray(br.tokens)[:, :fill], jnp.int32),
                         ctx_pos=jnp.asarray(np.asarray(br.context_positions), jnp.int32),
                         ctx_lat=jnp.asarray(br.context_latents, jnp.float32)))
      index[i] = base + np.arange(br.batch)
      base += br.batch
  return tuple(groups), arrays, np.concatenate(index).astype(np.int32)


def _branch_arrays(br: Branch) -> tuple[_BranchSpec, dict]:
  spec = _BranchSpec(int(np.asarray(br.tokens).shape[1]), br.num_context, float(br.context_t))
  arr = dict(tokens=jnp.asarray(np.asarray(br.tokens), jnp.int32), target=jnp.asarray(np.asarray(br.target), jnp.int32))
  if br.context_positions is not None:
    arr["ctx_pos"] = jnp.asarray(np.asarray(br.context_positions), jnp.int32)
    arr["ctx_lat"] = jnp.asarray(br.context_latents, jnp.float32)
  return spec, arr


@dataclasses.dataclass(frozen=True)
class _Spec:
  """Everything static about one sampler call."""
  num_points: int
  cond: _BranchSpec
  uncond: _BranchSpec | None
  block_len: int        # l: every generated block has this length
  fill_len: int         # F: prefix positions run into the caches
  fill_groups: tuple    # _FillGroup per prefix-fill call
  prefix_reuse: bool
  first_frame_as_cond: bool
  trajectory: bool
  progress: bool = False


# ----------------------------------------------------------------------------------------------- public
def initial_noise(key: PRNGKeyArray, shape: tuple[int, ...], *, round_to_bf16: bool = True) -> Float[Array, "..."]:
  """``torch.randn(shape)`` stand-in (float32), optionally rounded to bf16 values as the official scripts do."""
  z = jax.random.normal(key, shape, jnp.float32)
  return z.astype(jnp.bfloat16).astype(jnp.float32) if round_to_bf16 else z


@dataclasses.dataclass
class SampleOutput:
  latents: Any                 # [b, *spatial, C] float32: the state at t = 1 (the conditional half)
  trajectory: Any = None       # [S, b, *spatial, C]: the state at every grid point (t_0 … t_{S-1})
  time_grid: Any = None        # [S] float32


def sample(model: Showo2, noise: Float[Array, "b *s c"], cond: Branch, uncond: Branch | None = None, *,
           num_steps: int = 50, guidance_scale: float = 5.0, shift: float | None = 3.0,
           prefix_reuse: bool = True, first_frame_as_cond: bool = False, return_trajectory: bool = False,
           bucket: int = 8, progress: Callable[[int], None] | None = None) -> SampleOutput:
  """Integrate the flow ODE from ``noise`` (``t = 0``) to data (``t = 1``).

  Args:
    model: the Show-o2 model (its dtype is the guidance dtype).
    noise: ``[b, H, W, C]`` or ``[b, T, H, W, C]`` float32 initial state (see :func:`initial_noise`); for
      image-to-video, frame 0 must already hold the conditioning latent and ``first_frame_as_cond=True``.
    cond: conditional rows; ``uncond``: null rows (same batch), used when ``guidance_scale != 0``.
    num_steps: grid points ``S`` (``S − 1`` model evaluations), the reference's ``num_inference_steps``.
    guidance_scale: ``g`` of ``v_u + g (v_c − v_u)``; 0 or ``uncond=None`` runs the conditional rows only.
    shift: time-shifting factor of the grid (3.0 in every released config; None = uniform).
    prefix_reuse: reuse the prompt prefix's KV caches across steps (exact; see the module docstring).
    bucket: round the prefix length ``F`` up to this multiple (fewer recompilations across prompt lengths).
    progress: called with the index of each finished Euler step (a host callback from inside the jitted
      loop; e.g. ``tqdm.update``). Compiled separately from the silent sampler.

  Returns:
    :class:`SampleOutput` with the final float32 latents (and the whole trajectory when asked).
  """
  if num_steps < 2:
    raise ValueError("num_steps counts grid points and must be >= 2 (one Euler step)")
  b = cond.batch
  noise = jnp.asarray(noise, jnp.float32)
  if noise.shape[0] != b:
    raise ValueError(f"noise batch {noise.shape[0]} != {b} conditional rows")
  guided = uncond is not None and guidance_scale != 0
  if guided and uncond.batch != b:
    raise ValueError(f"uncond has {uncond.batch} rows, cond {b}")
  tgt = np.asarray(cond.target)
  block_len = int(tgt[0, 1])
  offsets = [tgt[:, 0]]
  if guided:
    offsets.append(np.asarray(uncond.target)[:, 0])
    if np.any(np.asarray(uncond.target)[:, 1] != block_len):
      raise ValueError("cond and uncond blocks must have the same length")
  if np.any(tgt[:, 1] != block_len):
    raise ValueError(f"all generated blocks must have the same length, got {tgt[:, 1].tolist()}")
  p = model.cfg.patch_size
  n_tokens = int(np.prod(noise.shape[1:-1])) // (p * p)
  if n_tokens + 1 != block_len:
    raise ValueError(f"latents {tuple(noise.shape[1:])} give {n_tokens} tokens + 1 time token, but the generated "
                     f"blocks hold {block_len} positions")
  max_off = int(np.concatenate(offsets).max())
  lengths = [np.asarray(cond.tokens).shape[1]] + ([np.asarray(uncond.tokens).shape[1]] if guided else [])
  fill = min(-(-max_off // bucket) * bucket, min(lengths)) if prefix_reuse else 0
  fill = max(fill, max_off)
  if fill > min(lengths):
    raise ValueError(f"block offsets up to {max_off} do not fit rows of length {min(lengths)}")
  cspec, carr = _branch_arrays(cond)
  uspec = uarr = None
  if guided:
    uspec, uarr = _branch_arrays(uncond)
  groups, fill_arrays, inverse = _fill_plan([cond, uncond] if guided else [cond], fill)
  if prefix_reuse:
    carr = dict(carr, fill=fill_arrays, inverse=jnp.asarray(inverse))
  grid = transport.ode_grid(num_steps, shift)
  spec = _Spec(num_points=num_steps, cond=cspec, uncond=uspec, block_len=block_len, fill_len=fill,
               fill_groups=groups if prefix_reuse else (),
               prefix_reuse=bool(prefix_reuse), first_frame_as_cond=bool(first_frame_as_cond),
               trajectory=bool(return_trajectory), progress=progress is not None)
  graphdef, state = nnx.split(model)
  _PROGRESS[0] = progress
  try:
    x, traj = _sample_jit(graphdef, state, noise, jnp.asarray(grid), jnp.asarray(guidance_scale, jnp.float32),
                          carr, uarr, spec=spec)
    if progress is not None:
      jax.block_until_ready(x)
      jax.effects_barrier()
  finally:
    _PROGRESS[0] = None
  return SampleOutput(latents=x, trajectory=traj, time_grid=grid)


def guided_velocity(v_cond: Float[Array, "b *s"], v_uncond: Float[Array, "b *s"],
                    guidance_scale: float | Float[Array, ""]) -> Float[Array, "b *s"]:
  """``v_u + g·(v_c − v_u)`` in the dtype of the model outputs (``t2i_generate``)."""
  g = jnp.asarray(guidance_scale).astype(v_cond.dtype)
  return v_uncond + g * (v_cond - v_uncond)


# ----------------------------------------------------------------------------------------------- jitted core
_PROGRESS: list = [None]    # the current progress callback (kept out of the jit cache key)


def _tick(step):
  fn = _PROGRESS[0]
  if fn is not None:
    fn(int(step))


def _slots(arr: dict, bs: _BranchSpec, x: jax.Array, t: jax.Array):
  """Full-sequence latents/t/positions of a branch: context slots then the target slot, row-major."""
  b = x.shape[0]
  tgt = arr["target"][:, None, :]
  if bs.num_context == 0:
    return x, jnp.full((b,), t, jnp.float32), tgt
  ctx = arr["ctx_lat"].astype(x.dtype)                               # [b, m, *s, c]
  lat = jnp.concatenate([ctx, x[:, None]], axis=1)
  lat = lat.reshape((-1,) + x.shape[1:])
  ts = jnp.concatenate([jnp.full((b, bs.num_context), bs.context_t, jnp.float32),
                        jnp.full((b, 1), t, jnp.float32)], axis=1).reshape(-1)
  return lat, ts, jnp.concatenate([arr["ctx_pos"], tgt], axis=1)


def _target_velocity(v_pred, b, m):
  """The target slot's velocity out of the per-slot ``v_pred [b·(m+1), ...]``."""
  return v_pred.reshape((b, m + 1) + v_pred.shape[1:])[:, -1]


def _v_uncached(model, arr, bs: _BranchSpec, x, t, ffc):
  lat, ts, mp = _slots(arr, bs, x, t)
  out = model(arr["tokens"], lat, ts, mp, compute_logits=False, first_frame_as_cond=ffc)
  return _target_velocity(out.v_pred, x.shape[0], bs.num_context)


def _v_joint_uncached(model, carr, uarr, bs: _BranchSpec, x, t, ffc):
  """Cond and null rows in one batched call (the reference's ``cat([cond, uncond])``)."""
  b = x.shape[0]
  lat_c, ts_c, mp_c = _slots(carr, bs, x, t)
  lat_u, ts_u, mp_u = _slots(uarr, bs, x, t)
  tokens = jnp.concatenate([carr["tokens"], uarr["tokens"]])
  out = model(tokens, jnp.concatenate([lat_c, lat_u]), jnp.concatenate([ts_c, ts_u]),
              jnp.concatenate([mp_c, mp_u]), compute_logits=False, first_frame_as_cond=ffc)
  v = _target_velocity(out.v_pred, 2 * b, bs.num_context)
  return v[:b], v[b:]


def _fill_prefixes(model, groups: tuple, arrays: list, inverse, fill: int, max_len: int) -> Showo2Cache:
  """Caches of positions ``[0, fill)`` of every distinct prefix (causal text, plus the context blocks of
  rows that have them), one call per group, gathered back to one cache row per row (``inverse``).

  Positions at or after a row's own block offset are causal junk here: the steps overwrite them (the block)
  or never read them (after the block)."""
  parts = []
  for g, a in zip(groups, arrays):
    cache = Showo2Cache.init(model.cfg, g.num_unique, max_len)
    if fill > 0:
      if g.num_context:
        lat = a["ctx_lat"].reshape((-1,) + a["ctx_lat"].shape[2:])
        ts = jnp.full((lat.shape[0],), g.context_t, jnp.float32)
        cache = model(a["tokens"], lat, ts, a["ctx_pos"], cache=cache, compute_logits=False).cache
      else:
        cache = model(a["tokens"], None, cache=cache, compute_logits=False, compute_flow=True).cache
    parts.append(cache)
  cat = lambda part, name: jnp.take(jnp.concatenate([getattr(getattr(c, part), name) for c in parts], axis=1),
                                    inverse, axis=1)
  return Showo2Cache(*(dataclasses.replace(getattr(parts[0], part), k=cat(part, "k"), v=cat(part, "v"))
                       for part in ("llm", "flow")))


def _v_blocks(model, tokens, offsets, caches: Showo2Cache, x, t, block_len: int, ffc: bool):
  """Velocity of every row from its block positions only: ``vmap`` over rows, each row at its own cache index
  (its block offset), keys/values of its prefix read from ``caches`` (``[layers, rows, S, k, e]``)."""
  def one(tok, off, k, v, fk, fv, xr):
    llm = dataclasses.replace(caches.llm, k=k[:, None], v=v[:, None], index=off)
    flow = dataclasses.replace(caches.flow, k=fk[:, None], v=fv[:, None], index=off)
    window = jax.lax.dynamic_slice_in_dim(tok, off, block_len)[None]
    mp = jnp.stack([off, jnp.int32(block_len)])[None, None]
    out = model(window, xr[None], jnp.full((1,), t, jnp.float32), mp, cache=Showo2Cache(llm, flow),
                compute_logits=False, first_frame_as_cond=ffc)
    return out.v_pred[0]

  return jax.vmap(one, in_axes=(0, 0, 1, 1, 1, 1, 0))(tokens, offsets, caches.llm.k, caches.llm.v,
                                                      caches.flow.k, caches.flow.v, x)


@functools.partial(jax.jit, static_argnames=("graphdef", "spec"))
def _sample_jit(graphdef, state, x0, grid, guidance, carr, uarr, *, spec: _Spec):
  model = nnx.merge(graphdef, state)
  ffc = spec.first_frame_as_cond
  guided = spec.uncond is not None
  joint = (guided and not spec.prefix_reuse and spec.cond.num_context == spec.uncond.num_context
           and spec.cond.length == spec.uncond.length)
  b = x0.shape[0]
  if spec.prefix_reuse:
    max_len = spec.fill_len + spec.block_len
    cache = _fill_prefixes(model, spec.fill_groups, carr["fill"], carr["inverse"], spec.fill_len, max_len)
    rows = [carr["tokens"]] + ([uarr["tokens"]] if guided else [])
    # One call for all rows (a row's window [o, o + l) lies inside its own tokens; padding is never read).
    width = max(tk.shape[1] for tk in rows)
    tokens = jnp.concatenate([jnp.pad(tk, ((0, 0), (0, width - tk.shape[1]))) for tk in rows])
    offsets = jnp.concatenate([carr["target"][:, 0]] + ([uarr["target"][:, 0]] if guided else []))

  def velocity(x, t):
    if spec.prefix_reuse:
      xs = jnp.concatenate([x, x]) if guided else x
      v = _v_blocks(model, tokens, offsets, cache, xs, t, spec.block_len, ffc)
      if not guided:
        return v
      v_c, v_u = v[:b], v[b:]
    elif joint:
      v_c, v_u = _v_joint_uncached(model, carr, uarr, spec.cond, x, t, ffc)
    else:
      v_c = _v_uncached(model, carr, spec.cond, x, t, ffc)
      if not guided:
        return v_c
      v_u = _v_uncached(model, uarr, spec.uncond, x, t, ffc)
    return guided_velocity(v_c, v_u, guidance)

  def step(x, ts):
    k, t0, t1 = ts
    v = velocity(x, t0).astype(jnp.float32)        # the ODE wrapper's `.float()`
    x = x + (t1 - t0) * v
    if spec.progress:
      jax.debug.callback(_tick, k, ordered=True)
    return x, (x if spec.trajectory else None)

  steps = jnp.arange(spec.num_points - 1, dtype=jnp.int32)
  x, ys = jax.lax.scan(step, x0, (steps, grid[:-1], grid[1:]))
  traj = jnp.concatenate([x0[None], ys], axis=0) if spec.trajectory else None
  return x, traj
