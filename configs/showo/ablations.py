"""Show-o (v1) ablations as named config diffs: visual representation for understanding, dataset size and
resolution, MaskGIT steps and guidance (Show-o paper; README images ``docs/show-o-512x512-mmu.png`` and
``docs/show-o-ablation.png``, numbers in spec ``showo.md`` §10).

Same pattern as ``configs/showo2/ablations.py`` (``ARMS``, ``STUDIES``, ``ABLATIONS = {name: fn(cfg)}``,
``get_config("<arm>,scale=tiny")``). ``v1_maskgit`` starts from the v1 T2I pre-training recipe
(:func:`build_t2i_base`); the other studies share the **understanding** base, ``model_family = "showo_v1_und"``:
Show-o's Phi LM answers procedural VQA questions about an image given as

* ``discrete_magvit``: MAGVIT-v2 LFQ codes as tokens of the unified vocabulary (Show-o),
* ``continuous_magvit``: the same encoder's continuous (pre-quantisation) features through ``mm_projector``,
* ``clip_vit``: ViT features through ``mm_projector`` (Show-o‡ uses CLIP-ViT-L/14-336).

Rows: ``<|mmu|> <|soi|> [N visual positions] <|eoi|> <|sot|> question answer <|eot|> [PAD]…`` with the loss
on ``answer <|eot|>`` and the v1 MMU mask (causal, plus everything up to ``<|eoi|>``); the visual positions
hold code tokens (discrete) or the projected features (continuous / ViT). Training, data and evaluation:
``showo_jax/eval/v1_toy.py`` (the shared ``Trainer`` with a v1 data iterator).

**Toy scale.** No pretrained MAGVIT-v2, CLIP or Phi-1.5 weights exist offline, so the encoders are fixed
*random-initialised* networks (a 4-level MAGVIT-v2 with a 6-bit LFQ at 32 px → 16 codes from 64; a 2-layer
SigLIP-style ViT, patch 8 → 16 tokens) and the LM is trained from scratch. The arms therefore compare
"quantised vs continuous features of one encoder" and "a second, ViT-shaped encoder"; they cannot test what
CLIP's pretraining adds (the paper's point). Full scale (``scale=full``) names the real sizes; running it
needs converted MAGVIT-v2 / Phi-1.5 weights and a CLIP-ViT port (not in this repository).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from configs import common
from configs.showo2.ablations import Arm, config_diff, declared_ok, flatten  # noqa: F401 (shared helpers)

SCALES = ("full", "small", "tiny")
REPRESENTATIONS = ("discrete_magvit", "continuous_magvit", "clip_vit")


@dataclasses.dataclass(frozen=True)
class Study:
  name: str
  table: str
  question: str
  arms: tuple[str, ...]
  metrics: tuple[str, ...]
  paper: str = ""
  needs: str = ""
  shared_training: bool = False
  suite: str = "toy"


ARMS: dict[str, Arm] = {}
STUDIES: dict[str, Study] = {}


def arm(study: str, row: str, keys: tuple[str, ...] = ()):
  def wrap(fn):
    if fn.__name__ in ARMS:
      raise ValueError(f"duplicate arm {fn.__name__!r}")
    ARMS[fn.__name__] = Arm(fn.__name__, study, row, tuple(keys), fn)
    return fn
  return wrap


def build_base(scale: str) -> common.ConfigDict:
  """The v1 understanding base at ``scale`` (see the module docstring)."""
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  toy = scale != "full"
  small = scale == "small"
  c = common.ConfigDict()
  c.model_family = "showo_v1_und"
  c.seed = 10086
  c.total_steps = (5000 if small else 1500) if toy else 20_000
  c.model = common.ConfigDict(dict(
      preset="tiny" if toy else "show_o", visual="discrete_magvit", dtype="float32" if toy else "bfloat16",
      param_dtype="float32", attention_impl="xla", llm_vocab_size=512 if toy else 50295))
  c.init = common.init_block()
  c.resume = ""
  c.trainable = common.ConfigDict(dict(frozen=[], frozen_regex=[]))
  c.loss = common.ConfigDict(dict(mmu_coeff=1.0))
  c.optim = common.optim_block(1e-3 if toy else 5e-5, schedule="constant_with_warmup", warmup_steps=50 if toy else 1000)
  c.optim.weight_decay = 0.01 if not toy else 0.0
  c.data = common.ConfigDict(dict(
      seed=c.seed, tokenizer="tiny:512" if toy else "gpt2", resolution=(64 if small else 32) if toy else 256,
      procedural_size=(64 if small else 32) if toy else 256, num_records=200_000, batch_size=16 if toy else 8,
      max_text_len=32 if toy else 128, prefetch=1, shuffle=True,
      magvit=common.ConfigDict(dict(preset="toy" if toy else "magvitv2", path="", seed=7)),
      vit=common.ConfigDict(dict(preset="toy" if toy else "clip_vit_l14_336", path="", seed=11, patch=8))))
  c.mesh = common.mesh_block(1, -1, 1, "fsdp", num_devices=1 if toy else 0)
  c.ckpt = common.ckpt_block(every=200 if toy else 2000, keep=2, async_save=not toy)
  c.log = common.log_block(every=10 if toy else 50, sample_every=0, tensorboard=not toy, progress=False)
  c.eval = common.ConfigDict(dict(suite="toy", seed=20_250, num_vqa=256 if not small else 500,
                                  num_heldout=256 if not small else 512, batch_size=32, max_new_tokens=6,
                                  timesteps=18, guidance_scale=1.75))
  c.followup = common.ConfigDict(dict(stage="", total_steps=0))
  c.pretrain = common.ConfigDict(dict(lm_steps=0))
  c.ablation = common.ConfigDict(dict(study="", arm="", scale=scale, size="1.3b"))
  return c


def build_t2i_base(scale: str) -> common.ConfigDict:
  """The v1 **T2I** base (``v1_maskgit``): the real pre-training stage-1 recipe (``configs/showo/stage1.py``:
  ``model_family = "showo"``, MTP on t2i rows + lm + captioning mmu, ``data/pipeline_v1.py``, the shared
  ``Trainer``). Toy scale = ``configs/showo/base.py:runlocal`` (tiny Phi, ``tiny:320`` BPE, 32 px through the
  random-init toy MAGVIT-v2 → 16 codes of 64) trained from scratch, with the recipe's mixture ratio kept
  (15 / 4 / 10 → 8 / 2 / 5 rows), its cosine schedule (warmup 50) at the toy LR 1e-3, and a text budget
  that holds the procedural captions (the caption prompt would not fit: runlocal drops it)."""
  from configs.showo import base as v1_base
  from configs.showo import stage1
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  c = stage1.build(common.parse_arg("", runlocal=False))
  c.data.seed = c.seed
  toy = scale != "full"
  small = scale == "small"
  if toy:
    c = v1_base.runlocal(c)
    c.total_steps = 3000 if small else 1500
    c.data.t2i.batch_size, c.data.lm.batch_size, c.data.mmu.batch_size = 8, 2, 5
    c.data.num_records = 200_000          # never repeats within a toy run
    c.data.max_seq_length = 32
    c.data.prefetch = 1
    c.optim = common.optim_block(1e-3, schedule="cosine", warmup_steps=50)
    c.optim.weight_decay, c.optim.grad_clip = 0.01, 0.0
    c.optim.no_decay = ["bias"]
    c.ckpt = common.ckpt_block(every=200, keep=2, async_save=False)
    c.log = common.log_block(every=10, sample_every=0, tensorboard=False, progress=False)
  # MaskGIT settings of the README demo (18 steps, g = 1.75) as the base; the arms change only these.
  c.eval = common.ConfigDict(dict(suite="t2i", seed=20_250, timesteps=18, guidance_scale=1.75,
                                  prompts_per_category=16 if not small else 50, batch_size=32))
  c.followup = common.ConfigDict(dict(stage="", total_steps=0))
  c.pretrain = common.ConfigDict(dict(lm_steps=0))
  c.ablation = common.ConfigDict(dict(study="", arm="", scale=scale, size="1.3b"))
  return c


def base_config(study: str, scale: str = "tiny", size: str = "1.3b") -> common.ConfigDict:
  del size
  c = build_t2i_base(scale) if study == "v1_maskgit" else build_base(scale)
  c.ablation.study = study
  return c


def apply(name: str, c: common.ConfigDict) -> common.ConfigDict:
  c = ARMS[name].fn(c)
  c.ablation.arm = name
  return c


def get_config(arg: str | None = None) -> common.ConfigDict:
  """``"<arm>,scale=tiny"`` → the locked config of that arm (``"base,scale=tiny"``: the base)."""
  head, _, rest = (arg or "").partition(",")
  opts = common.parse_arg(rest, scale="tiny", size="1.3b")
  if head == "base":
    return common.lock(base_config("", opts.scale))
  if head not in ARMS:
    raise ValueError(f"unknown Show-o ablation arm {head!r}; known: {sorted(ARMS)}")
  return common.lock(apply(head, base_config(ARMS[head].study, opts.scale)))


def followup_config(c):
  raise NotImplementedError("Show-o v1 studies have no follow-up stage")


# ------------------------------------------------------------------------------------------ representation
_PAPER_REPR = """| model (1.3B, spec showo.md §10) | POPE | MME | Flickr30k | VQAv2 (test) | GQA | MMMU |
|---|---|---|---|---|---|---|
| Show-o, discrete MAGVIT tokens, 512 px | 80.0 | 1097.2 | 62.5 | 69.4 | 58.0 | 26.7 |
| Show-o‡, CLIP-ViT input | 84.5 | 1232.9 | 67.6 | 74.7 | 61.0 | 27.4 |

Continuous MAGVIT-v2 features: not in the spec (see the Show-o paper's understanding ablation table)."""

STUDIES["v1_representation"] = Study(
    "v1_representation", "Show-o MMU table (Show-o vs Show-o‡)", "Which visual input serves understanding "
    "best: discrete MAGVIT-v2 tokens, continuous MAGVIT-v2 features or (CLIP-)ViT features?", REPRESENTATIONS,
    ("vqa_accuracy", "vqa_blind_prior", "heldout_vqa_nll", "vqa_kind_count_shape", "vqa_kind_color_of",
     "vqa_kind_shape_of"), paper=_PAPER_REPR)


@arm("v1_representation", "Show-o row: discrete MAGVIT-v2 tokens in the unified vocabulary")
def discrete_magvit(c):
  return c


@arm("v1_representation", "continuous MAGVIT-v2 features (pre-quantisation) through mm_projector",
     ("model.visual",))
def continuous_magvit(c):
  c.model.visual = "continuous_magvit"
  return c


@arm("v1_representation", "Show-o‡ row: ViT features through mm_projector (toy: random-init ViT stand-in)",
     ("model.visual",))
def clip_vit(c):
  c.model.visual = "clip_vit"
  return c


# ------------------------------------------------------------------------------------------ data size / resolution
_PAPER_DATA = """| image-text pairs | resolution | tokens | POPE | MME | Flickr30k | VQAv2 | GQA | MMMU |
|---|---|---|---|---|---|---|---|---|
| 35M | 256² | 256 | 73.8 | 948.4 | 36.2 | 59.3 | 48.7 | 25.1 |
| 2.0B | 256² | 256 | 76.2 | 1014.9 | 48.9 | 64.7 | 54.2 | 25.0 |
| 2.0B | 512² | 1024 | 80.0 | 1097.2 | 62.5 | 69.4 | 58.0 | 26.7 |

(spec showo.md §10, from docs/show-o-ablation.png, discrete tokens)"""

STUDIES["v1_data_resolution"] = Study(
    "v1_data_resolution", "Show-o ablation table (pairs x resolution)", "How do the amount of pre-training "
    "pairs and the image resolution (number of tokens) affect understanding with discrete tokens?",
    ("pairs_few_res_base", "pairs_many_res_base", "pairs_many_res_x2"),
    ("vqa_accuracy", "vqa_blind_prior", "heldout_vqa_nll"),
    paper=_PAPER_DATA)


@arm("v1_data_resolution", "35M-pairs row: few distinct training pairs (toy: 2,000 records, repeated)",
     ("data.num_records",))
def pairs_few_res_base(c):
  c.data.num_records = 2_000 if c.ablation.scale != "full" else 35_000_000
  return c


@arm("v1_data_resolution", "2.0B-pairs row at the base resolution (toy: records never repeat)")
def pairs_many_res_base(c):
  return c


@arm("v1_data_resolution", "2.0B pairs at 2x resolution (512² / 1024 tokens; toy: 64 px / 64 tokens)",
     ("data.resolution", "data.procedural_size"))
def pairs_many_res_x2(c):
  c.data.resolution = int(c.data.resolution) * 2
  c.data.procedural_size = max(int(c.data.procedural_size), int(c.data.resolution))
  return c


# ------------------------------------------------------------------------------------------ MaskGIT
STUDIES["v1_maskgit"] = Study(
    "v1_maskgit", "Show-o T2I settings", "MaskGIT sampling: number of steps and CFG guidance scale "
    "(README: 50 steps, g = 5 at 512 px; training validation: 12 steps, g = 1.5).",
    tuple(f"maskgit_t{t}_g{str(g).replace('.', 'p')}" for t in (8, 18, 50) for g in (0.0, 1.75, 5.0)),
    ("geneval_overall", "geneval_control_overall", "geneval_tokenizer_ceiling_overall", "geneval_code_hist_match",
     "geneval_control_code_hist_match"),
    shared_training=True, suite="t2i",
    paper="Show-o README / spec showo.md: 18 steps with g = 1.75 (demo), 50 steps with g = 5 (512 px); the "
          "paper's GenEval numbers for these settings are not in the spec.")


def _maskgit_arm(t: int, g: float):
  def fn(c):
    c.eval.timesteps = int(t)
    c.eval.guidance_scale = float(g)
    return c
  fn.__name__ = f"maskgit_t{t}_g{str(g).replace('.', 'p')}"
  return arm("v1_maskgit", f"MaskGIT {t} steps, guidance {g:g}", ("eval.timesteps", "eval.guidance_scale"))(fn)


for _t in (8, 18, 50):
  for _g in (0.0, 1.75, 5.0):
    _maskgit_arm(_t, _g)


ABLATIONS: dict[str, Callable[[common.ConfigDict], common.ConfigDict]] = {n: a.fn for n, a in ARMS.items()}
