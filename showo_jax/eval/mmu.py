"""Multimodal-understanding evaluation: procedural VQA exact match and caption accuracy (no upstream counterpart).

* :func:`vqa_set` — held-out image questions of the procedural grammar (counts, colours, shapes, existence,
  relations; ``procedural.vqa_pair``) with their answers and kinds; :func:`video_qa_set` — "Which direction
  does the red circle move?" on procedural clips.
* :func:`answer_showo2` — greedy answers from a Show-o2 run, with the prompt in the format the run was
  trained on: ``llava`` (stage-2 ``tuning`` layout: system prompt, roles, ``<image>`` block, question; the
  row stops where the training target starts) or ``mmu_inference`` (the official ``inference_mmu.py``
  layout, ``sequence.build_mmu_inference``). Images go through the run's latent codec at ``t = 1``.
* :func:`caption_showo2` — captions from the stage-1 captioning layout ``[bos] [boi] image [eoi]``.
* Scoring: :func:`score_vqa` (``checker.vqa_match`` exact match, overall and per kind);
  :func:`caption_accuracy` parses each generated caption with the grammar (``procedural.parse_caption``) and
  compares its (count, colour, shape) groups with the checker's parse of the image (``checker.parse_scene``):
  ``exact`` (same multiset of objects), ``object_f1`` (per-object F1) and ``parse_rate`` (captions inside the
  grammar).
* Real benchmarks without downloads: :func:`load_llava_eval` reads a user's LLaVA-style JSON
  (``[{"image": path, "conversations": [{"from": "human", "value": "<image>\\nQ"}, {"from": "gpt", "value": A}]}]``)
  for exact-match scoring with the same code path.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from showo_jax.data import procedural as P
from showo_jax.eval import checker

EVAL_SEED = 20_250


@dataclasses.dataclass(frozen=True)
class VQAItem:
  image: np.ndarray             # uint8 [h, w, 3] (or [t, h, w, 3] for clips)
  question: str
  answer: str
  kind: str


def vqa_set(n: int, seed: int = EVAL_SEED, size: int = 64) -> list[VQAItem]:
  """``n`` held-out procedural questions (``procedural.vqa_sample`` with the eval seed)."""
  cfg = P.SceneConfig(size=size)
  out = []
  for i in range(n):
    s = P.vqa_sample(seed, i, cfg)
    out.append(VQAItem(s["image"], s["question"], s["answer"], s["kind"]))
  return out


def caption_set(n: int, seed: int = EVAL_SEED, size: int = 64) -> list[tuple[np.ndarray, str]]:
  """``n`` held-out (image, ground-truth caption) pairs (non-relational captions)."""
  cfg = P.SceneConfig(size=size)
  return [(s["image"], s["caption"]) for s in (P.t2i_sample(seed + 1, i, cfg, 0.0) for i in range(n))]


def video_qa_set(n: int, seed: int = EVAL_SEED, size: int = 64, num_frames: int = 8) -> list[VQAItem]:
  """Motion questions on procedural clips: "Which direction does the red circle move?" → "up"."""
  cfg = P.SceneConfig(size=size, num_frames=num_frames)
  out = []
  for i in range(n):
    s = P.video_sample(seed + 2, i, cfg)
    objs = P.objects_from_array(s["objects"])
    k = i % len(objs)
    o, d = objs[k], int(s["motions"][k, 0])
    out.append(VQAItem(s["video"], f"Which direction does the {o.name} move?", P.DIRECTIONS[d], "motion"))
  return out


def _template(question: str) -> str:
  """The question with its colour/shape words masked: what a blind model can condition on."""
  words = [("<c>" if w in P.COLORS else "<s>" if w.rstrip("s?") in P.SHAPES else w) for w in question.split()]
  return " ".join(words)


@functools.lru_cache(maxsize=4)
def _answer_table(n_train: int, seed: int, size: int) -> tuple[dict, dict]:
  by_q: dict[str, Counter] = defaultdict(Counter)
  by_t: dict[str, Counter] = defaultdict(Counter)
  cfg = P.SceneConfig(size=size)
  for i in range(n_train):
    rng = P.rng_for(seed, "vqa", i)
    q, a, _ = P.vqa_pair(P.sample_scene(rng, cfg), rng)
    by_q[q][a] += 1
    by_t[_template(q)][a] += 1
  return dict(by_q), dict(by_t)


def blind_prior(items: Sequence[VQAItem], *, n_train: int = 20_000, seed: int = 0, size: int = 32,
                min_count: int = 20) -> dict:
  """Accuracy of an image-blind answerer: the most frequent training answer of the exact question when it was
  seen at least ``min_count`` times, else of its template (colours and shapes masked), over ``n_train``
  questions of the training distribution.

  A reference row for VQA numbers: the procedural answers are skewed ("zero" for most shape counts), so a
  model that ignores the image already scores this much."""
  by_q, by_t = _answer_table(n_train, seed, size)
  preds = []
  for it in items:
    c = by_q.get(it.question)
    if c is None or sum(c.values()) < min_count:
      c = by_t.get(_template(it.question))
    preds.append(c.most_common(1)[0][0] if c else "")
  return score_vqa(preds, items)


# ------------------------------------------------------------------------------------------ scoring
def score_vqa(predictions: Sequence[str], items: Sequence[VQAItem]) -> dict:
  """``accuracy`` (exact match after normalisation), ``kind/<k>`` accuracies and ``n``."""
  hits = [checker.vqa_match(p, it.answer) for p, it in zip(predictions, items, strict=True)]
  out = {"accuracy": float(np.mean(hits)) if hits else float("nan"), "n": len(hits)}
  for kind in sorted({it.kind for it in items}):
    sel = [h for h, it in zip(hits, items) if it.kind == kind]
    out[f"kind/{kind}"] = float(np.mean(sel))
  return out


def _objects_of_caption(caption: str) -> Counter | None:
  try:
    spec = P.parse_caption(caption)
  except (ValueError, KeyError):
    return None
  return Counter({(c, s): n for n, c, s in spec.groups})


def caption_accuracy(captions: Sequence[str], images: Sequence[np.ndarray]) -> dict:
  """Generated captions vs the checker's parse of each image (see the module docstring)."""
  exact, f1s, parsed = [], [], 0
  for cap, img in zip(captions, images, strict=True):
    truth = Counter((d.color, d.shape) for d in checker.parse_scene(img))
    got = _objects_of_caption(cap)
    if got is None:
      exact.append(False)
      f1s.append(0.0)
      continue
    parsed += 1
    exact.append(got == truth)
    tp = sum((got & truth).values())
    prec = tp / max(1, sum(got.values()))
    rec = tp / max(1, sum(truth.values()))
    f1s.append(0.0 if tp == 0 else 2 * prec * rec / (prec + rec))
  n = len(exact)
  if not n:
    return {"exact": float("nan"), "object_f1": float("nan"), "parse_rate": float("nan"), "n": 0}
  return {"exact": float(np.mean(exact)), "object_f1": float(np.mean(f1s)), "parse_rate": parsed / n, "n": n}


# ------------------------------------------------------------------------------------------ Show-o2
def _llava_row(tok, question: str, num_image_tokens: int, system_prompt: str):
  """The stage-2 ``tuning`` training row up to (and including) the assistant role: the generation prompt."""
  from showo_jax.data import sequence
  src = tok.encode("<image>\n" + question, max_length=512)
  return sequence.format_llava(tok.special, [src], [[]], num_image_tokens, None, stage="tuning",
                               system_ids=tok.encode(system_prompt, max_length=100),
                               role_user_ids=tok.encode(sequence.ROLE_USER),
                               role_assistant_ids=tok.encode(sequence.ROLE_ASSISTANT))


def _caption_row(tok, num_image_tokens: int):
  """``[bos] [boi] [img_pad]*(n+1) [eoi]``: the stage-1 captioning row before the caption."""
  from showo_jax.data import sequence
  sp = tok.special
  block = num_image_tokens + 1
  tokens = np.asarray([sp.bos, sp.boi] + [sp.img_pad] * block + [sp.eoi], np.int32)
  pos = np.asarray([[2, block]], np.int32)
  return sequence.SeqSample(tokens, np.full_like(tokens, sequence.IGNORE), pos, pos.copy(),
                            ((tokens != sp.img_pad) & (tokens != sp.pad)).astype(np.int32),
                            (tokens == sp.img_pad).astype(np.int32))


def _generate_rows(run, rows, latents: np.ndarray, *, max_new_tokens: int, batch_size: int) -> list[str]:
  """Embed the visual slot of each row (t = 1), left-pad, greedy-decode to eos; decoded strings."""
  import jax.numpy as jnp
  from showo_jax.sampling import text
  tok = run.tokenizer
  sp = tok.special
  out = []
  for a in range(0, len(rows), batch_size):
    b = min(len(rows), a + batch_size)
    pad = batch_size - (b - a)
    chunk = list(rows[a:b]) + [rows[b - 1]] * pad
    lat = np.concatenate([latents[a:b]] + [latents[b - 1:b]] * pad, axis=0)
    emb, tp = _visual(run.model, jnp.asarray(lat))
    prompt = text.build_prompt(run.model, chunk, sp.pad, emb[:, None], tp[:, None])
    gen = text.generate(run.model, prompt, max_new_tokens=max_new_tokens, stop_tokens=(sp.eos,), pad_id=sp.pad)
    out += [tok.decode(gen.row(i), skip_special_tokens=True).strip() for i in range(b - a)]
  return out


def _visual(model, latents):
  from showo_jax.sampling import text
  return text._visual_jit(model, latents)


def trained_on_llava_tuning(run) -> bool:
  mmu = run.config.data.get("mmu", None)
  return mmu is not None and mmu.get("format", "caption") == "llava" and mmu.get("stage", "") == "tuning"


def answer_showo2(run, images: Sequence[np.ndarray], questions: Sequence[str], *, prompt_format: str | None = None,
                  max_new_tokens: int = 24, batch_size: int = 16) -> list[str]:
  """Greedy answers of a Show-o2 run (``prompt_format``: ``llava`` | ``mmu_inference``; default from the run)."""
  from showo_jax.data import sequence, transforms
  # Toy runs trained on LLaVA "tuning" rows are asked in exactly that layout; otherwise the official
  # inference layout (with the consistent mask block: these models were trained with it).
  fmt = prompt_format or ("llava" if trained_on_llava_tuning(run) else "mmu_inference")
  tok, n = run.tokenizer, run.num_image_tokens
  system = run.config.data.mmu.get("system_prompt", "") or sequence.DEFAULT_SYSTEM_PROMPT
  if fmt == "llava":
    rows = [_llava_row(tok, q, n, system) for q in questions]
  elif fmt == "mmu_inference":
    rows = [sequence.build_mmu_inference(tok, q, n, system_prompt=system, reference_offset=False) for q in questions]
  else:
    raise ValueError(f"unknown prompt format {fmt!r}: llava | mmu_inference")
  # LLaVA rows are trained on resized-and-padded images (pipeline.StreamTransform), as the MMU scripts do.
  imgs = np.stack([transforms.resize_and_pad(transforms.decode_image(im), run.codec.resolution) for im in images])
  return _generate_rows(run, rows, run.codec.encode(imgs), max_new_tokens=max_new_tokens, batch_size=batch_size)


def caption_showo2(run, images: Sequence[np.ndarray], *, max_new_tokens: int = 24, batch_size: int = 16) -> list[str]:
  """Greedy captions from the stage-1 captioning layout."""
  from showo_jax.data import transforms
  rows = [_caption_row(run.tokenizer, run.num_image_tokens)] * len(images)
  imgs = np.stack([transforms.resize_center_crop(transforms.decode_image(im), run.codec.resolution) for im in images])
  return _generate_rows(run, rows, run.codec.encode(imgs), max_new_tokens=max_new_tokens, batch_size=batch_size)


def vqa_showo2(run, *, n: int = 64, seed: int = EVAL_SEED, max_new_tokens: int = 8, batch_size: int = 16,
               prompt_format: str | None = None) -> dict:
  items = vqa_set(n, seed, size=run.codec.resolution)
  preds = answer_showo2(run, [it.image for it in items], [it.question for it in items], prompt_format=prompt_format,
                        max_new_tokens=max_new_tokens, batch_size=batch_size)
  return {"metrics": score_vqa(preds, items), "predictions": preds, "items": items}


def captions_showo2(run, *, n: int = 48, seed: int = EVAL_SEED, max_new_tokens: int = 24,
                    batch_size: int = 16) -> dict:
  pairs = caption_set(n, seed, size=run.codec.resolution)
  caps = caption_showo2(run, [p[0] for p in pairs], max_new_tokens=max_new_tokens, batch_size=batch_size)
  return {"metrics": caption_accuracy(caps, [p[0] for p in pairs]), "captions": caps,
          "references": [p[1] for p in pairs]}


# ------------------------------------------------------------------------------------------ real benchmarks
def load_llava_eval(path: str, image_root: str = "") -> list[VQAItem]:
  """A LLaVA-style JSON (first human turn = question, first gpt turn = answer) → items (images decoded)."""
  from showo_jax.data import transforms
  rows = json.load(open(path))
  out = []
  for r in rows:
    conv = r["conversations"]
    q = next(c["value"] for c in conv if c["from"] == "human").replace("<image>", "").strip()
    a = next(c["value"] for c in conv if c["from"] == "gpt")
    with open(os.path.join(image_root, r["image"]), "rb") as f:
      img = transforms.decode_image(f.read())
    out.append(VQAItem(img, q, a, r.get("category", r.get("kind", "all"))))
  return out
