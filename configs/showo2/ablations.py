"""Show-o2 ablations as named config diffs (paper Tab.10-14, plus three extras).

Every arm is a small function ``fn(cfg) -> cfg`` applied to its *study's* base config; it changes only
the keys it declares (``ARMS[name].keys``; ``tests/configs/test_ablations.py`` checks this). A study
groups the arms that are compared with each other (one paper table) and names the stage config they
start from::

  python -m launch.ablate tab10_fusion --scale tiny             # train + evaluate every arm → results/
  python -m launch.train --config configs/showo2/ablations.py:semantic_only,scale=tiny --workdir /tmp/a
  get_config("semantic_only,scale=full,size=7b")                # the arm on the real stage-1 recipe

Arguments (after the arm name): ``scale=full|small|tiny`` (default ``full``: the real stage config;
``tiny``/``small``: the CPU toy scale of :func:`toy`), ``size=1.5b|7b`` (``full`` only).

Blocks that every ablation config adds to its stage config (also to the base, so they never show up in
a diff): ``eval`` (what ``launch/eval.py`` and ``launch/ablate.py`` measure: suite, sampling settings,
sample counts), ``followup`` (an optional second training stage started from this run's final
checkpoint: Tab.12), ``pretrain`` (an optional text-only warm-up of the LLM used to initialise the run:
Tab.13), ``ablation`` (metadata: study, arm, scale; excluded from diffs).

**Toy scale** (``tiny``: ~3-5 CPU minutes per arm; ``small``: ~10x). There are no pretrained weights
offline, so every toy run starts from scratch; the toy scale therefore trains every parameter (the
stage configs freeze the pretrained LLM and SigLIP path, which would freeze random weights here) unless
the study is *about* freezing (Tab.13, which first pretrains the tiny LLM on procedural text). Data are
the procedural scenes of DATA.md §3.2 at 32 px (``small``: 64 px) through the fixed linear "patch"
latent space (``transforms.PatchLatents``) instead of the Wan VAE, with a 464-token BPE over the
procedural grammar (``tiny:512``). The patch latents keep all 48 values of each 4x4 patch (48 channels
instead of the VAE's 16), so decoding is exact and the checker scores what the model generated, and the
model uses patch size 1 (:func:`set_toy_grid` says why: upstream's raster un-patchify stalls toy training).
Paper numbers are not reproduced at this scale; see ABLATIONS.md for what the toy trends do and do not show.

Paper table rows (arXiv 2506.15564; the numbers are not in ``/work/shared/spec``): Tab.10 fusion of the
dual-path visual features; Tab.11 CFG guidance x sampling steps; Tab.12 stage 1 only vs stage 1 + 2;
Tab.13 language retention; Tab.14 number of image tokens (resolution) for understanding.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

import ml_collections as mlc

from configs import common
from configs.showo2 import stage1

SCALES = ("full", "small", "tiny")
TOY_VOCAB = 512                       # embedding rows of the toy model: the tiny:512 BPE has 464 tokens
TOY_LATENT_CHANNELS = 48              # = 4 * 4 * 3: the toy patch latents are lossless


@dataclasses.dataclass(frozen=True)
class Arm:
  """One arm: the paper row it reproduces, the config keys it may change, and the change."""
  name: str
  study: str
  row: str
  keys: tuple[str, ...]
  fn: Callable[[common.ConfigDict], common.ConfigDict]


@dataclasses.dataclass(frozen=True)
class Study:
  """Arms compared with each other; ``stage`` = the ``configs/showo2/<stage>.py`` recipe they start from.

  ``needs`` names a missing model/data feature; such studies build configs but cannot run yet.
  ``shared_training``: the arms differ only in ``eval.*`` (one training run serves every arm).
  """
  name: str
  table: str
  question: str
  stage: str
  arms: tuple[str, ...]
  metrics: tuple[str, ...]
  needs: str = ""
  shared_training: bool = False
  base_fn: Callable[[common.ConfigDict], common.ConfigDict] | None = None
  suite: str = "toy"                 # eval suite of every arm (showo_jax/eval/suites.py)


ARMS: dict[str, Arm] = {}
STUDIES: dict[str, Study] = {}


def arm(study: str, row: str, keys: tuple[str, ...] = ()):
  """Register ``fn`` as an arm of ``study`` changing only ``keys`` (dotted config paths)."""
  def wrap(fn):
    name = fn.__name__
    if name in ARMS:
      raise ValueError(f"duplicate arm {name!r}")
    ARMS[name] = Arm(name, study, row, tuple(keys), fn)
    return fn
  return wrap


def _set_override(c: common.ConfigDict, key: str, value) -> None:
  """``config.model.overrides[key] = value`` (dotted keys reach nested model sub-configs)."""
  ov = c.model.overrides
  items = dict(ov.items()) if ov is not None else {}
  items[key] = value
  # ConfigDict refuses dotted field names unless asked; the Trainer reads overrides with dict(...).
  c.model.overrides = mlc.ConfigDict(items, allow_dotted_keys=True)


# ------------------------------------------------------------------------------------------ toy scale
def set_toy_grid(c: common.ConfigDict, res: int) -> None:
  """Toy latent/token geometry at ``res`` px: 4x4-pixel patch latents (48 channels), **patch size 1** (one
  latent pixel per token: 32 px → 8x8 = 64 image tokens), the position tables sized to that grid, and a
  sequence length that holds the longest row of the stage's formats.

  Why patch size 1: upstream un-patchifies the flow head's output by a raw reshape (token ``k`` = the raster
  pixels ``[4k, 4k+4)``, spec §8.3) while the input patch embedding takes 2x2 patches, so with patch 2 even
  an identity-like denoiser must route every output token from two other input tokens. At toy scale this
  stalls training: held-out flow MSE stays at 1.22-1.23 ≈ 1 + Var(x1) (the value of a predictor that ignores
  x_t) for 1,000+ steps, at LR 1e-3 and 3e-4 and with 4x wider networks, and every sample is noise. With
  patch 1 input and output layouts coincide and the same recipe reaches 0.52 in 300 steps (ABLATIONS.md).
  """
  tokens = (res // int(c.data.latents.patch)) ** 2
  grid = res // int(c.data.latents.patch)
  _set_override(c, "patch_size", 1)
  _set_override(c, "flow_head.patch_size", 1)
  _set_override(c, "image_latent_height", grid)
  _set_override(c, "image_latent_width", grid)
  _set_override(c, "semantic.num_positions", tokens)
  c.loss.transport_seq_len = tokens + 1
  # T2I / captions: <= 18 caption tokens + 4 specials; LLaVA "tuning" rows: <= 37 text tokens + 2.
  extra = 64 if c.data.mmu.get("format", "caption") == "llava" and int(c.data.mmu.batch_size) > 0 else 32
  c.data.max_seq_length = -(-(tokens + extra) // 32) * 32


def toy(c: common.ConfigDict, scale: str) -> common.ConfigDict:
  """Shrink a stage config to the CPU toy scale, keeping its recipe (mixture, loss weights, schedule kind,
  LR ratios between groups). See the module docstring for what changes and why."""
  small = scale == "small"
  steps = 3000 if small else 600
  c = common.runlocal(c)
  c.total_steps = steps
  c.trainable.frozen = []
  c.trainable.frozen_regex = []
  d = c.data
  d.tokenizer = f"tiny:{TOY_VOCAB}"
  _set_override(c, "llm.vocab_size", TOY_VOCAB)
  # Lossless toy latents: a 4x4x3 pixel patch has 48 values and the patch codec keeps all of them (an
  # orthonormal change of basis). With the default 16 channels its least-squares decoder turns the black
  # background into patch noise, and generated images could not be scored by the checker.
  _set_override(c, "image_latent_dim", TOY_LATENT_CHANNELS)
  _set_override(c, "flow_head.out_channels", TOY_LATENT_CHANNELS)
  d.num_records = 200_000                # never repeats within a toy run (DATA.md: pure function of index)
  d.shuffle = True
  res = 64 if small else 32
  d.procedural_size = d.resolution = res
  c.model.resolution = res
  set_toy_grid(c, res)
  for kind in ("t2i", "mmu", "lm", "video", "interleaved"):
    if d[kind].batch_size > 0:
      d[kind].batch_size = 8
  # LR: toy models from scratch want ~10x the fine-tuning LRs; group ratios are kept.
  toy_lr = 1e-3
  group_lrs = [float(g.lr) for g in c.optim.groups.values()] if c.optim.groups else []
  ref = max(group_lrs + [float(c.optim.lr)])
  c.optim.lr = float(c.optim.lr) * toy_lr / ref
  for g in c.optim.groups.values():
    g.lr = float(g.lr) * toy_lr / ref
  if c.optim.schedule.name == "constant_with_warmup":
    c.optim.schedule.warmup_steps = 50
  c.ckpt = common.ckpt_block(every=200 if not small else 500, keep=2, async_save=False)
  c.log.every = 10
  c.log.tensorboard = False
  c.eval.num_steps = 25
  c.eval.prompts_per_category = 16 if not small else 50
  c.eval.num_vqa = 128 if not small else 300
  c.eval.num_captions = 128 if not small else 200
  c.eval.num_heldout = 128 if not small else 256
  c.eval.batch_size = 48 if not small else 64
  return c


def _eval_block() -> common.ConfigDict:
  """What the evaluation measures (``showo_jax/eval/suites.py``); real-scale defaults = the paper's
  inference settings (config defaults ``guidance_scale 5.0``, ``num_inference_steps 50``, spec §10)."""
  return common.ConfigDict(dict(
      suite="toy", seed=20_250, guidance_scale=5.0, num_steps=50, shift=3.0, prompts_per_category=50,
      num_vqa=500, num_captions=200, num_heldout=512, batch_size=16, max_new_tokens=24))


def base_config(study: str, scale: str = "full", size: str = "1.5b") -> common.ConfigDict:
  """The (unlocked) base config of ``study`` at ``scale``: the arms are diffs of exactly this."""
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  st = STUDIES[study]
  arg = common.parse_arg(f"size={size}", size="1.5b", runlocal=False)
  c = importlib.import_module(f"configs.showo2.{st.stage}").build(arg)
  c.data.seed = c.seed
  c.eval = _eval_block()
  c.followup = common.ConfigDict(dict(stage="", total_steps=0))
  c.pretrain = common.ConfigDict(dict(lm_steps=0))
  c.ablation = common.ConfigDict(dict(study=study, arm="", scale=scale, size=size))
  if scale != "full":
    c = toy(c, scale)
  if st.base_fn is not None:
    c = st.base_fn(c)
  return c


def apply(name: str, c: common.ConfigDict) -> common.ConfigDict:
  """Apply arm ``name`` to an (unlocked) config of its study."""
  a = ARMS[name]
  c = a.fn(c)
  c.ablation.arm = name
  return c


def get_config(arg: str | None = None) -> common.ConfigDict:
  """``"<arm>,scale=tiny,size=1.5b"`` → the locked config of that arm."""
  head, _, rest = (arg or "").partition(",")
  if not head or "=" in head:
    raise ValueError(f"first argument must be an arm name; known: {sorted(ARMS)}")
  if head not in ARMS:
    raise ValueError(f"unknown ablation arm {head!r}; known: {sorted(ARMS)}")
  opts = common.parse_arg(rest, scale="full", size="1.5b")
  c = base_config(ARMS[head].study, opts.scale, opts.size)
  return common.lock(apply(head, c))


# ------------------------------------------------------------------------------------------ derived runs
def followup_config(c: common.ConfigDict) -> common.ConfigDict:
  """The second-stage run of an arm with ``followup.stage`` (Tab.12): that stage's recipe at the arm's scale,
  the arm's model block and eval block, ``followup.total_steps`` steps, initialised from the first stage's
  final parameters (``launch/ablate.py`` sets ``init.path``)."""
  st = c.ablation
  arg = common.parse_arg(f"size={st.size}", size="1.5b", runlocal=False)
  f = importlib.import_module(f"configs.showo2.{c.followup.stage}").build(arg)
  f.data.seed = f.seed
  f.eval = _eval_block()
  f.followup = common.ConfigDict(dict(stage="", total_steps=0))
  f.pretrain = common.ConfigDict(dict(lm_steps=0))
  f.ablation = common.ConfigDict(dict(study=st.study, arm=f"{st.arm}/{c.followup.stage}", scale=st.scale,
                                      size=st.size))
  if st.scale != "full":
    f = toy(f, st.scale)
  f.model = c.model
  f.eval = c.eval
  if int(c.followup.total_steps) > 0:
    f.total_steps = int(c.followup.total_steps)
  return f


def pretrain_config(c: common.ConfigDict) -> common.ConfigDict:
  """Text-only warm-up of the arm's LLM (Tab.13 toy scale): ``configs/lm.py`` with the same tiny Qwen2
  (vocabulary included), tokenizer, sequence length and seed, ``pretrain.lm_steps`` steps."""
  from configs import lm
  arg = common.parse_arg("size=1.5b", size="1.5b", runlocal=False)
  p = lm.build(arg)
  p.data.seed = p.seed = c.seed
  p = common.runlocal(p)
  p.model.preset = "tiny"
  p.model.overrides = mlc.ConfigDict({"vocab_size": TOY_VOCAB})
  p.data.tokenizer = c.data.tokenizer
  p.data.max_seq_length = c.data.max_seq_length
  p.data.lm.batch_size = 16
  p.data.num_records = c.data.num_records
  p.optim = common.optim_block(1e-3, schedule="constant_with_warmup", warmup_steps=50)
  p.total_steps = int(c.pretrain.lm_steps)
  p.ckpt = common.ckpt_block(every=200, keep=2, async_save=False)
  p.log.every = 10
  p.log.tensorboard = False
  return p


# LLM parameters of Show-o2 live under ``showo.``; everything else keeps its fresh init when the pretrained LM
# initialises a Show-o2 run.
NON_LLM_PARAMS = ("image_embedder_und", "image_embedder_gen", "position_embedding", "und_trans", "fusion_proj",
                  "time_embed", "diff_proj", "diffusion_head")


# ------------------------------------------------------------------------------------------ Tab.10
STUDIES["tab10_fusion"] = Study(
    "tab10_fusion", "Tab.10", "Which visual path feeds the LLM: projector (low-level) only, semantic layers "
    "only, or both fused (Show-o2's dual path)?", "stage1", ("fused", "projector_only", "semantic_only"),
    ("geneval_overall", "geneval_control_overall", "geneval_exact", "geneval_extra_objects", "caption_exact",
     "caption_object_f1", "heldout_flow", "heldout_caption_nll"))


@arm("tab10_fusion", "Tab.10, fused row: spatial(-temporal) fusion of both paths (the released models)")
def fused(c):
  return c


@arm("tab10_fusion", "Tab.10, projector-only row: no semantic layers (SigLIP path) before fusion",
     ("model.overrides.use_semantic",))
def projector_only(c):
  _set_override(c, "use_semantic", False)
  return c


@arm("tab10_fusion", "Tab.10, semantic-only row: no low-level projector (image_embedder_gen) before fusion",
     ("model.overrides.use_projector",))
def semantic_only(c):
  _set_override(c, "use_projector", False)
  return c


# ------------------------------------------------------------------------------------------ Tab.11
_CFG_GRID = (1.0, 2.5, 5.0, 7.5)
_STEP_GRID = (10, 25, 50)


def _cfg_arm(g: float, s: int):
  def fn(c):
    c.eval.guidance_scale = float(g)
    c.eval.num_steps = int(s)
    return c
  fn.__name__ = f"cfg{g:g}_steps{s}".replace(".", "p")
  return arm("tab11_cfg_steps", f"Tab.11, guidance {g:g} with {s} sampling steps",
             ("eval.guidance_scale", "eval.num_steps"))(fn)


STUDIES["tab11_cfg_steps"] = Study(
    "tab11_cfg_steps", "Tab.11", "How do the CFG guidance scale and the number of ODE steps trade off "
    "(inference only: one trained model, a grid of sampler settings)?", "stage1",
    tuple(_cfg_arm(g, s).__name__ for g in _CFG_GRID for s in _STEP_GRID),
    ("geneval_overall", "geneval_control_overall", "geneval_exact", "geneval_extra_objects",
     "geneval_single_object", "geneval_colors"), shared_training=True,
    suite="t2i")


# ------------------------------------------------------------------------------------------ Tab.12
STUDIES["tab12_stages"] = Study(
    "tab12_stages", "Tab.12", "Does stage 2 (LLaVA-style understanding data + T2I, everything trainable) "
    "add to a stage-1 model?", "stage1", ("stage1_only", "stage1_plus_stage2"),
    ("geneval_overall", "geneval_control_overall", "geneval_exact", "vqa_accuracy", "vqa_blind_prior",
     "caption_exact", "heldout_flow", "heldout_vqa_nll", "heldout_caption_nll"), suite="toy_all")


@arm("tab12_stages", "Tab.12, stage-1-only row")
def stage1_only(c):
  return c


@arm("tab12_stages", "Tab.12, stage 1 + stage 2 row (stage 2 = configs/showo2/stage2c.py, started from "
     "the stage-1 checkpoint)", ("followup.stage", "followup.total_steps"))
def stage1_plus_stage2(c):
  c.followup.stage = "stage2c"
  c.followup.total_steps = max(1, int(c.total_steps) * 2 // 3) if c.ablation.scale != "full" else 0
  return c


# ------------------------------------------------------------------------------------------ Tab.13
def _tab13_base(c):
  # The toy LLM is first trained on procedural text (as the real stage 1 starts from a pretrained Qwen2.5),
  # so that "retention" has something to retain. At full scale the converted Qwen2.5 weights play that role.
  if c.ablation.scale != "full":
    c.pretrain.lm_steps = c.total_steps
  return c


STUDIES["tab13_language"] = Study(
    "tab13_language", "Tab.13", "How is language ability retained: train the LLM in one stage with a "
    "text corpus mixed in, or freeze it in a first stage (Show-o2's two-stage recipe)?", "stage1",
    ("llm_trainable_no_text", "llm_trainable_with_text", "llm_frozen_first"),
    ("heldout_text_ppl", "geneval_overall", "caption_exact"), base_fn=_tab13_base)


@arm("tab13_language", "Tab.13, LLM trained on multimodal data only (reference point: forgetting)")
def llm_trainable_no_text(c):
  return c


@arm("tab13_language", "Tab.13, one-stage row: LLM trained with a text-only corpus mixed in",
     ("data.lm.batch_size",))
def llm_trainable_with_text(c):
  c.data.lm.batch_size = 4 if c.ablation.scale != "full" else 2
  return c


@arm("tab13_language", "Tab.13, two-stage row: stage 1 with the LLM and semantic path frozen",
     ("trainable.frozen",))
def llm_frozen_first(c):
  c.trainable.frozen = list(stage1.STAGE1_FROZEN)
  return c


# ------------------------------------------------------------------------------------------ Tab.14
STUDIES["tab14_und_tokens"] = Study(
    "tab14_und_tokens", "Tab.14", "How many image tokens does understanding need (input resolution)?",
    "stage2c", ("und_tokens_base", "und_tokens_x4"), ("vqa_accuracy", "heldout_vqa_nll"))


@arm("tab14_und_tokens", "Tab.14, base resolution row (432 px: 27x27 = 729 tokens; toy 32 px: 16 tokens)")
def und_tokens_base(c):
  return c


@arm("tab14_und_tokens", "Tab.14, 4x image tokens (2x resolution: 864 px / 2916 tokens; toy 64 px / 256 tokens)",
     ("model.resolution", "data.resolution", "data.procedural_size", "data.max_seq_length",
      "loss.transport_seq_len", "model.overrides.image_latent_height", "model.overrides.image_latent_width",
      "model.overrides.semantic.num_positions"))
def und_tokens_x4(c):
  res = int(c.data.resolution) * 2
  c.model.resolution = res
  c.data.resolution = res
  if c.ablation.scale != "full":
    c.data.procedural_size = res
    set_toy_grid(c, res)
  else:
    tokens = (res // 8 // 2) ** 2
    c.loss.transport_seq_len = tokens + 1
    c.data.max_seq_length = max(int(c.data.max_seq_length), 1 << (tokens + 63).bit_length())
  return c


# ------------------------------------------------------------------------------------------ extras
STUDIES["flow_weight"] = Study(
    "flow_weight", "extra", "Weight alpha of the flow-matching loss against the NTP loss (paper: alpha = 1 with "
    "NTP 0.2 in stage 1).", "stage1", ("flow_alpha_1", "flow_alpha_0p5", "flow_alpha_2"),
    ("geneval_overall", "heldout_flow", "caption_exact", "heldout_caption_nll"))


@arm("flow_weight", "extra: flow-loss weight alpha = 1.0 (reference)")
def flow_alpha_1(c):
  return c


@arm("flow_weight", "extra: flow-loss weight alpha = 0.5", ("loss.flow_coeff",))
def flow_alpha_0p5(c):
  c.loss.flow_coeff = 0.5
  return c


@arm("flow_weight", "extra: flow-loss weight alpha = 2.0", ("loss.flow_coeff",))
def flow_alpha_2(c):
  c.loss.flow_coeff = 2.0
  return c


def _latent_caching_base(c):
  """Both arms read Wan VAE latents (16 channels, 8x spatial); at toy scale the tiny-width Wan VAE (random
  init: the study measures speed, and both arms see the same encoder) at 32 px → a 4x4 latent grid, patch 1
  (16 image tokens). ``num_records`` = exactly the records the run consumes, so the cache holds the whole
  stream and both arms draw the same records in the same shuffled order (the cache is written in source
  order; ``launch/ablate.py`` builds it before training the cached arm)."""
  c.data.latents.source = "vae"
  if c.ablation.scale == "full":
    return c
  c.data.latents.vae_preset = "tiny"
  res = int(c.data.resolution)
  grid = res // 8                       # Wan2.1 spatial factor (pipeline.VAE_FACTOR)
  for key, value in (("image_latent_dim", 16), ("flow_head.out_channels", 16), ("patch_size", 1),
                     ("flow_head.patch_size", 1), ("image_latent_height", grid), ("image_latent_width", grid),
                     ("semantic.num_positions", grid * grid)):
    _set_override(c, key, value)
  c.loss.transport_seq_len = grid * grid + 1
  c.data.max_seq_length = -(-(grid * grid + 32) // 32) * 32
  c.data.num_records = int(c.total_steps) * max(int(c.data.t2i.batch_size), int(c.data.mmu.batch_size))
  c.log.every = 5
  return c


STUDIES["latent_caching"] = Study(
    "latent_caching", "extra", "Training speed with VAE latents computed on the fly vs read from a cache "
    "(same model and data; the metric is steps/s).", "stage1", ("latents_on_the_fly", "latents_cached"),
    ("steps_per_s", "s_per_step", "input_s_per_step", "encode_s_per_step", "cache_build_s", "final_loss"),
    base_fn=_latent_caching_base, suite="speed")


def _vae_latents(c):
  c.data.latents.source = "vae"
  if c.ablation.scale != "full":
    c.data.latents.vae_preset = "tiny"
  return c


@arm("latent_caching", "extra: Wan VAE encoding on the fly (data.latents.source = 'vae'; = the study base)")
def latents_on_the_fly(c):
  return _vae_latents(c)            # the base already encodes on the fly: no diff


@arm("latent_caching", "extra: cached Wan posteriors (data.latents.source = 'cached')",
     ("data.latents.source", "data.latents.vae_preset", "data.t2i.source", "data.mmu.source"))
def latents_cached(c):
  _vae_latents(c)
  c.data.latents.source = "cached"
  c.data.t2i.source = c.data.mmu.source = "arrayrecord"
  return c


STUDIES["attention_mask"] = Study(
    "attention_mask", "extra", "Omni attention (bidirectional inside each visual block) vs plain causal "
    "attention over the whole sequence.", "stage1", ("omni_attention", "causal_attention"),
    ("geneval_overall", "heldout_flow", "caption_exact"))


@arm("attention_mask", "extra: omni attention (reference)")
def omni_attention(c):
  return c


@arm("attention_mask", "extra: causal attention everywhere", ("model.overrides.visual_attention",))
def causal_attention(c):
  _set_override(c, "visual_attention", "causal")
  return c


ABLATIONS: dict[str, Callable[[common.ConfigDict], common.ConfigDict]] = {n: a.fn for n, a in ARMS.items()}


# ------------------------------------------------------------------------------------------ diffs
IGNORED_IN_DIFF = ("ablation",)


def flatten(c, prefix: str = "") -> dict:
  """``{dotted key: value}`` of a ConfigDict / dict (lists become tuples; metadata blocks skipped)."""
  out = {}
  items = c.items() if hasattr(c, "items") else []
  for k, v in items:
    key = f"{prefix}{k}"
    if not prefix and k in IGNORED_IN_DIFF:
      continue
    if isinstance(v, (mlc.ConfigDict, dict)):
      out.update(flatten(v, key + "."))     # an empty block contributes nothing
    else:
      out[key] = tuple(v) if isinstance(v, list) else v
  return out


def config_diff(a, b) -> dict[str, tuple]:
  """Keys whose values differ between two configs (missing keys count): ``{key: (a value, b value)}``."""
  fa, fb = flatten(a), flatten(b)
  missing = object()
  out = {}
  for k in sorted(set(fa) | set(fb)):
    va, vb = fa.get(k, missing), fb.get(k, missing)
    if va is missing or vb is missing or va != vb:
      out[k] = (None if va is missing else va, None if vb is missing else vb)
  return out


def declared_ok(diff_keys, declared) -> bool:
  """Each changed key is a declared key or lies under one (``model.overrides.use_semantic``)."""
  return all(any(k == d or k.startswith(d + ".") for d in declared) for k in diff_keys)
