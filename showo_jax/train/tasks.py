"""Model families the trainer knows, in one explicit dict (:data:`TASKS`; STYLE.md §10 #12).

A :class:`Task` says how to build the typed model config from ``config.model``, how to build the model,
and how to compute the loss of one batch. Everything else (optimizer, sharding, data, checkpoints) is
shared by all families.

* ``"showo2"`` — Show-o2 NTP + flow matching (spec ``showo2.md`` §9.1-9.2, §9.5): per latent slot a flow time
  from the logit-normal + μ-shift distribution (``transport.sample_t``; understanding rows use
  ``und_max_t0``, i.e. ``t = 1``: clean latents), ``x_t = t·x1 + (1−t)·x0``, target ``u = x1 − x0``;
  ``loss = ntp_coeff·CE(shifted) + flow_coeff·MSE``. The flow MSE is the reference's: targets patchified and
  placed at ``[o+1, o+l)`` in the model dtype, per-element mean over the placeholder-token mask minus time
  positions, understanding rows and clean-prefix spans. ``t`` is rounded to the compute dtype before the
  model, as upstream casts it to bf16. Given the batch's static row layout (``row_types``: concat mixture and
  ``loss.row_split = "on"``), the flow head runs only on generation rows and the LM head only
  on rows with text labels (``showo_jax/rows.py``; same loss and gradients).
* ``"lm"`` — the Qwen2 LM alone on text (the ``lm`` stream; also the text-only family used by tests).
* ``"showo"`` — Show-o v1 (MTP): the v1 helper's ``maskgit.showo_loss`` wired in (see :func:`_showo_v1_task`;
  its batches come from a v1 input pipeline).

Batch keys (``data/pipeline.py``): ``text_tokens``/``text_labels`` int32 ``[b, l]`` (labels −100 = ignored),
``modality_positions`` int32 ``[b, m, 2]``, ``latents`` float32 ``[b·m, (t,) h, w, c]`` (slot ``i·m + j``),
``image_masks`` bool ``[b, l]`` (visual placeholder tokens), ``data_type`` int32 ``[b]`` (codes in
:data:`DATA_TYPES`).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from showo_jax import rows as rows_lib

# Row kinds in a batch (the reference's ``data_type`` strings).
DATA_TYPES = {"t2i": 0, "mmu": 1, "lm": 2, "t2v": 3, "mmu_vid": 4, "interleaved": 5}
UND_TYPES = tuple(DATA_TYPES[t] for t in rows_lib.UND_TYPES)   # codes of the understanding row kinds


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  model_config: Callable[[Any], Any]                       # config.model (ConfigDict) -> typed config
  build: Callable[[Any, nnx.Rngs], nnx.Module]
  loss: Callable[..., tuple[jax.Array, dict]]              # (model, batch, key, loss_cfg) -> (loss, metrics)
  uses_latents: bool = True
  sampler: Callable | None = None    # optional: (model, mcfg, config, data_info, step) -> (uint8 images, captions)
  # loss(..., row_types=...) accepts the static per-row data types of a concat batch (showo_jax/rows.py)
  row_layout: bool = False


# ----------------------------------------------------------------------------------------- helpers
def apply_overrides(cfg, overrides: Any):
  """``dataclasses.replace`` with dotted keys into nested frozen dataclasses (``"llm.vocab_size": 320``);
  ``overrides`` is a mapping or ConfigDict (nested dicts are flattened to dotted keys)."""
  flat: dict[str, Any] = {}

  def walk(prefix, node):
    for k, v in node.items():
      if hasattr(v, "items"):
        walk(f"{prefix}{k}.", v)
      else:
        flat[f"{prefix}{k}"] = v

  walk("", overrides or {})
  for key, value in flat.items():
    head, _, rest = key.partition(".")
    if not hasattr(cfg, head):
      raise ValueError(f"{type(cfg).__name__} has no field {head!r} (override {key!r})")
    if rest:
      value = apply_overrides(getattr(cfg, head), {rest: value})
    cfg = dataclasses.replace(cfg, **{head: value})
  return cfg


def _policy(mcfg) -> dict:
  return dict(dtype=mcfg.dtype, param_dtype=mcfg.param_dtype, scan_layers=mcfg.scan_layers,
              remat_policy=mcfg.remat_policy, attention_impl=mcfg.attention_impl)


def _ntp(logits, labels):
  from showo_jax import losses
  return losses.ntp_loss(logits, labels)


# ----------------------------------------------------------------------------------------- lm
def _lm_config(mcfg):
  from showo_jax.models import qwen2
  if mcfg.preset not in qwen2.PRESETS:
    raise ValueError(f"unknown Qwen2 preset {mcfg.preset!r}; known: {sorted(qwen2.PRESETS)}")
  return apply_overrides(qwen2.PRESETS[mcfg.preset](**_policy(mcfg)), mcfg.get("overrides", None))


def _lm_build(cfg, rngs):
  from showo_jax.models import qwen2
  return qwen2.Qwen2ForCausalLM(cfg, rngs=rngs)


def _lm_loss(model, batch, key, loss_cfg):
  del key
  out = model(batch["text_tokens"])
  loss, m = _ntp(out.logits, batch["text_labels"])
  return loss, {"loss_ntp": loss, **{f"ntp/{k}": v for k, v in m.items()}}


# ----------------------------------------------------------------------------------------- showo2
def _showo2_config(mcfg):
  from showo_jax.models import showo2
  presets = {"showo2_1_5b": showo2.Showo2Config.showo2_1_5b, "showo2_7b": showo2.Showo2Config.showo2_7b,
             "tiny": showo2.Showo2Config.tiny}
  if mcfg.preset not in presets:
    raise ValueError(f"unknown Show-o2 preset {mcfg.preset!r}; known: {sorted(presets)}")
  kw = {"resolution": mcfg.resolution} if mcfg.preset != "tiny" else {}
  return apply_overrides(presets[mcfg.preset](**kw, **_policy(mcfg)), mcfg.get("overrides", None))


def _showo2_build(cfg, rngs):
  from showo_jax.models import showo2
  return showo2.Showo2(cfg, rngs=rngs)


def flow_times(key, data_type, modality_positions, loss_cfg):
  """Per-slot flow times ``[b·m]``: generation slots from the shifted logit-normal, understanding slots
  from the same draw with ``max_t0 = und_max_t0`` (1.0 → exactly ``t = 1``)."""
  from showo_jax import transport
  b, m = modality_positions.shape[:2]
  n = b * m
  slot_type = jnp.repeat(data_type, m)
  und = jnp.isin(slot_type, jnp.asarray(UND_TYPES))
  max_t0 = jnp.where(und, jnp.float32(loss_cfg.und_max_t0), jnp.float32(0.0))
  return transport.sample_t(key, n, loss_cfg.transport_seq_len, max_t0=max_t0), und


def clean_prefix(key, data_type, modality_positions, prob: float):
  """Interleaved rows (§9.5): with probability ``prob`` the first ``idx ∈ [1, last valid slot]`` images are
  clean (``x_t = x1``, ``t = 1``) and leave the flow loss. Returns a per-slot bool ``[b·m]``."""
  b, m = modality_positions.shape[:2]
  valid = modality_positions[..., 1] > 0                               # [b, m]
  last = jnp.max(jnp.where(valid, jnp.arange(m)[None], 0), axis=1)     # largest valid slot index
  k1, k2 = jax.random.split(key)
  coin = jax.random.uniform(k1, (b,)) < prob
  # randint(1, last) inclusive; last == 0 -> idx = 0 (nothing clean)
  u = jax.random.uniform(k2, (b,))
  idx = jnp.where(last > 0, 1 + jnp.floor(u * last).astype(jnp.int32), 0)
  idx = jnp.where(coin & (data_type == DATA_TYPES["interleaved"]), idx, 0)
  return (jnp.arange(m)[None] < idx[:, None]).reshape(-1)


def _showo2_loss(model, batch, key, loss_cfg, row_types=None):
  from showo_jax import losses, transport
  x1 = batch["latents"].astype(jnp.float32)
  mp = batch["modality_positions"]
  data_type = batch["data_type"]
  tokens = batch["text_tokens"]
  b, l = tokens.shape
  m = mp.shape[1]
  dt = model.cfg.dtype
  k_t, k_noise, k_clean = jax.random.split(key, 3)
  t, und = flow_times(k_t, data_type, mp, loss_cfg)
  x0 = jax.random.normal(k_noise, x1.shape, jnp.float32)
  t, xt, ut = transport.plan(t, x0, x1)
  clean = clean_prefix(k_clean, data_type, mp, loss_cfg.clean_prefix_prob)     # [b·m]
  bshape = (-1,) + (1,) * (x1.ndim - 1)
  xt = jnp.where(clean.reshape(bshape), x1, xt)
  t = jnp.where(clean, 1.0, t)
  t_in = t.astype(dt).astype(jnp.float32)          # upstream: t.to(bf16) before the time embedding
  # Static row layout (concat mixture): each head runs only on the rows its loss reads (showo_jax/rows.py).
  split = row_types is not None
  all_rows = tuple(range(b))
  flow_rows = rows_lib.flow_rows(row_types, loss_cfg.und_max_t0) if split else all_rows
  ntp_rows = rows_lib.ntp_rows(row_types) if split else all_rows
  # batch["llm_pack"] (data.pack_len > 0): the LLM runs on pad-free packed rows (showo_jax/packing.py).
  out = model(tokens, xt, t_in, mp, logit_rows=ntp_rows if split else None, flow_rows=flow_rows if split else None,
              llm_pack=batch.get("llm_pack"))
  if ntp_rows:
    loss_ntp, ntp_m = losses.ntp_loss(out.logits, rows_lib.take(batch["text_labels"], ntp_rows))
  else:
    loss_ntp, ntp_m = losses.ntp_loss(jnp.zeros((1, 2, 1)), jnp.full((1, 2), losses.IGNORE, jnp.int32))
  # Reference flow labels: u_t patchified, scattered at [o+1, o+l) of a zero tensor in the model dtype;
  # mask = image-placeholder tokens minus every time position, minus understanding rows (und_max_t0 == 1)
  # and minus the spans of clean-prefix images.
  if not flow_rows:
    return _showo2_total(loss_cfg, loss_ntp, ntp_m, *losses.flow_loss(jnp.zeros((1, 1, 1)), jnp.zeros((1, 1, 1)),
                                                                     jnp.zeros((1, 1), bool)))
  mp, image_masks, data_type, clean = rows_lib.take((mp, batch["image_masks"], data_type, clean.reshape(b, m)),
                                                    flow_rows)
  ut = rows_lib.take(ut, rows_lib.slots_of(flow_rows, m))
  targets = losses.place_targets(losses.patchify_targets(ut, model.cfg.patch_size), mp, l).astype(dt)
  mask = losses.flow_token_mask(image_masks, mp)
  if loss_cfg.und_max_t0 == 1.0:
    mask = mask & ~jnp.isin(data_type, jnp.asarray(UND_TYPES))[:, None]
  pos = jnp.arange(l)[None, None, :]
  o, ln = mp[..., 0:1], mp[..., 1:2]
  in_clean = (pos >= o) & (pos < o + ln) & clean[..., None]   # [b, m, l]
  mask = mask & ~jnp.any(in_clean, axis=1)
  loss_flow, flow_m = losses.flow_loss(out.v_tokens, targets, mask)
  return _showo2_total(loss_cfg, loss_ntp, ntp_m, loss_flow, flow_m)


def _showo2_total(loss_cfg, loss_ntp, ntp_m, loss_flow, flow_m):
  loss = loss_cfg.ntp_coeff * loss_ntp + loss_cfg.flow_coeff * loss_flow
  metrics = {"loss_ntp": loss_ntp, "loss_flow": loss_flow,
             **{f"ntp/{k}": v for k, v in ntp_m.items() if k != "ntp_loss"},
             **{f"flow/{k}": v for k, v in flow_m.items() if k != "flow_loss"}}
  return loss, metrics


def _showo2_sample_grid(model, mcfg, config, info, step: int):
  """Periodic T2I samples: held-out procedural prompts (``eval/t2i.geneval_prompts``) through the flow sampler
  (``sampling/ode.sample``: CFG with null prompts, Euler ODE with the time shift, prefix reuse), decoded by
  the run's latent codec (``eval/runs.LatentCodec``). Image runs only (None for video runs)."""
  if info.video:
    return None
  from showo_jax.data import sequence
  from showo_jax.eval import runs, t2i
  from showo_jax.sampling import ode
  codec = runs.LatentCodec.from_config(config, channels=mcfg.image_latent_dim)
  n = int(config.log.num_samples)
  prompts = [p.caption for p in t2i.geneval_prompts(max(1, -(-n // len(t2i.PROMPT_KINDS))))][:n]
  cond, null = sequence.build_t2i_inference(info.tokenizer, prompts, info.geometry.image_tokens, info.seq_len)
  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), step), len(prompts))
  noise = jnp.stack([ode.initial_noise(k, codec.latent_shape()) for k in keys])
  g = float(config.log.guidance_scale)
  res = ode.sample(model, noise, ode.Branch.from_batch(cond), ode.Branch.from_batch(null) if g else None,
                   num_steps=int(config.log.sample_steps), guidance_scale=g)
  return codec.decode(res.latents), prompts


# ----------------------------------------------------------------------------------------- showo (v1) hook
_V1_LOSS_MODULES = ("showo_jax.maskgit", "showo_jax.losses_v1")


def _showo_v1_task() -> Task:
  """Show-o v1 (MTP): the v1 helper's ``showo_loss(model, batch: ShowoBatch, t2i_coeff, lm_coeff, mmu_coeff)``
  (``showo_jax.maskgit``) wired into the shared loop. The batch is a ``maskgit.ShowoBatch`` (rows
  ``[t2i | lm | mmu]``, MAGVIT-v2 codes in the unified vocabulary), bare or as ``{"showo": batch}`` (what
  ``data/pipeline_v1.py`` sends, since the shared step takes dicts), passed as ``Trainer(data_iter=...)``.
  Loss weights come from ``config.loss.{t2i,lm,mmu}_coeff`` (1.0 / 0.1 / 1.0 upstream)."""
  loss_fn = None
  for mod in _V1_LOSS_MODULES:
    try:
      loss_fn = getattr(importlib.import_module(mod), "showo_loss")
      break
    except (ImportError, AttributeError):
      continue
  if loss_fn is None:
    raise NotImplementedError(f"model_family 'showo' needs showo_loss(model, batch) in one of {_V1_LOSS_MODULES}")
  from showo_jax.models import showo

  def cfg_fn(mcfg):
    # Real sizes: show_o (256 tokens), show_o_512x512 (1024), show_o_w_clip_vit (Show-o‡); tiny = the fixture
    # backbone. ``llm_vocab_size`` / ``bos_token_id`` / ``eos_token_id`` / ``codebook_size`` / ``num_vq_tokens``
    # (0 or -1 = the preset's) re-lay the unified vocabulary in one replace (``vocab_size`` follows), e.g.
    # for a tiny run on a tiny BPE (configs/showo/base.py:runlocal).
    if mcfg.preset not in showo.PRESETS:
      raise ValueError(f"unknown Show-o preset {mcfg.preset!r}; known: {sorted(showo.PRESETS)} (or from_hf)")
    policy = {k: mcfg[k] for k in ("dtype", "param_dtype", "scan_layers", "remat_policy", "attention_impl")
              if k in mcfg}
    cfg = showo.PRESETS[mcfg.preset](**policy)
    layout = {k: int(mcfg.get(k, 0)) for k in ("llm_vocab_size", "codebook_size", "num_vq_tokens")}
    layout.update({k: int(mcfg.get(k, -1)) for k in ("bos_token_id", "eos_token_id")})
    layout = {k: v for k, v in layout.items() if v > 0 or (k.endswith("token_id") and v >= 0)}
    if layout:
      get = lambda k: layout.get(k, getattr(cfg, k))
      vocab = get("llm_vocab_size") + cfg.num_new_special_tokens + get("codebook_size") + 1
      cfg = dataclasses.replace(cfg, phi=dataclasses.replace(cfg.phi, vocab_size=vocab), **layout)
    return apply_overrides(cfg, mcfg.get("overrides", None))

  def loss(model, batch, key, loss_cfg):
    del key
    if isinstance(batch, dict):        # the shared step's batch is a dict: data/pipeline_v1.py sends {"showo": …}
      batch = batch["showo"]
    get = (lambda k, d: loss_cfg.get(k, d)) if loss_cfg is not None else (lambda k, d: d)
    from showo_jax import packing
    fn = packing.packed_loss if isinstance(batch, packing.PackedBatch) else loss_fn   # data.pack_len > 0
    return fn(model, batch, t2i_coeff=get("t2i_coeff", 1.0), lm_coeff=get("lm_coeff", 0.1),
              mmu_coeff=get("mmu_coeff", 1.0))

  return Task("showo", cfg_fn, lambda c, r: showo.Showo(c, rngs=r), loss, uses_latents=False)


TASKS: dict[str, Task | Callable[[], Task]] = {
    "showo2": Task("showo2", _showo2_config, _showo2_build, _showo2_loss, uses_latents=True,
                   sampler=_showo2_sample_grid, row_layout=True),
    "lm": Task("lm", _lm_config, _lm_build, _lm_loss, uses_latents=False),
    "showo": _showo_v1_task,     # resolved lazily: the v1 loss lives in the v1 helper's module
}


def get(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f"unknown model_family {name!r}; known: {sorted(TASKS)}")
  task = TASKS[name]
  return task() if callable(task) and not isinstance(task, Task) else task
