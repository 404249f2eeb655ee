"""Named evaluation suites over a :class:`~showo_jax.eval.runs.Run` (``launch/eval.py``, ``launch/ablate.py``).

A suite maps a run and its settings to a JSON-able dict ``{"metrics": {flat name: number}, "details": {...}}``.
Settings come from the run's own ``config.eval`` block (ablation configs carry one, see
``configs/showo2/ablations.py``), else :data:`DEFAULTS`, then explicit overrides.

=================  ==========================================================================================
suite              what it measures
=================  ==========================================================================================
``toy``            everything that applies to the run's family and training data: ``t2i`` + ``mmu`` + ``heldout``
                   (Show-o2), ``heldout`` (``lm``), the v1 understanding suite (toy Show-o v1 runs)
``toy_all``        ``toy`` with both VQA and captioning metrics whatever the training data (Tab.12)
``t2i``            GenEval-style checker scores of generated procedural prompts (``geneval_*``)
``mmu``            VQA exact match (``vqa_*``; runs trained on LLaVA-``tuning`` rows) and caption accuracy
                   (``caption_*``; runs trained on captioning rows)
``heldout``        held-out flow MSE, caption/VQA NLL, text NTP/perplexity (``heldout_*``)
``recon``          PSNR of the run's latent codec on procedural and real images (``recon_*``)
``video``          T2V motion accuracy (``t2v_*``) for video runs
``geneval_files``  the user's GenEval / DPG / text prompts → images in the official scorers' folder layouts
``llava_json``     the user's LLaVA-style QA JSON → exact match (``llava_accuracy``)
=================  ==========================================================================================

Metric names are flat (``geneval_overall``, ``vqa_accuracy``, ``heldout_text_ppl`` ...) so that the ablation
tables and plots can address them directly.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable

import numpy as np

DEFAULTS = dict(seed=20_250, guidance_scale=5.0, num_steps=25, shift=3.0, prompts_per_category=8, num_vqa=32,
                num_captions=32, num_heldout=32, batch_size=16, max_new_tokens=24, timesteps=18)


def settings(run, overrides: dict | None = None) -> dict:
  """Eval settings: :data:`DEFAULTS` < ``run.config.eval`` < ``overrides``."""
  out = dict(DEFAULTS)
  ev = run.config.get("eval", None)
  if ev is not None:
    out.update({k: ev[k] for k in ev.keys() if k in DEFAULTS})
  out.update(overrides or {})
  return out


def _num(v):
  if isinstance(v, (bool, np.bool_)):
    return bool(v)
  if isinstance(v, (int, np.integer)):
    return int(v)
  if isinstance(v, (float, np.floating)):
    return None if math.isnan(float(v)) else float(v)
  return v


def _prefixed(prefix: str, metrics: dict) -> dict:
  return {f"{prefix}_{k.replace('/', '_')}": _num(v) for k, v in metrics.items() if not isinstance(v, (list, dict))}


def image_grid(images: np.ndarray, cols: int = 8, pad: int = 2, fill: int = 96) -> np.ndarray:
  """``[n, h, w, 3]`` uint8 → one grid image with grey separators (the samples have black backgrounds)."""
  images = np.asarray(images, np.uint8)
  n, h, w, c = images.shape
  cols = min(cols, n)
  rows = -(-n // cols)
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
  return grid


def save_grid(path: str, images: np.ndarray, cols: int = 8, scale: int = 2) -> str:
  from PIL import Image
  g = image_grid(images, cols)
  im = Image.fromarray(g)
  if scale > 1:
    im = im.resize((g.shape[1] * scale, g.shape[0] * scale), Image.NEAREST)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  im.save(path)
  return path


# ------------------------------------------------------------------------------------------ suites
def suite_t2i(run, s: dict, out_dir: str = "") -> dict:
  from showo_jax.eval import t2i
  if run.family == "showo":            # Show-o v1: MaskGIT (``timesteps``; ``guidance_scale`` 0 = no CFG)
    res = t2i.t2i_showo_v1(run, per_kind=int(s["prompts_per_category"]), guidance_scale=float(s["guidance_scale"]),
                           timesteps=int(s["timesteps"]), seed=int(s["seed"]), batch_size=int(s["batch_size"]))
  elif run.family != "showo2":
    return {"metrics": {}, "details": {"skipped": f"no T2I sampler for family {run.family!r}"}}
  else:
    res = t2i.t2i_showo2(run, per_kind=int(s["prompts_per_category"]), guidance_scale=float(s["guidance_scale"]),
                         num_steps=int(s["num_steps"]), shift=float(s["shift"]), seed=int(s["seed"]),
                         batch_size=int(s["batch_size"]))
  details = {"prompts": [p.caption for p in res["prompts"]]}
  if out_dir:
    k = len(t2i.PROMPT_KINDS)
    per = int(s["prompts_per_category"])
    pick = [i * per + j for i in range(k) for j in range(min(4, per))]   # 4 prompts of each kind
    details["grid"] = save_grid(os.path.join(out_dir, "t2i_samples.png"), res["images"][pick], cols=4)
    details["grid_prompts"] = [res["prompts"][i].caption for i in pick]
  return {"metrics": _prefixed("geneval", res["metrics"]), "details": details}


def _mmu_kind(run) -> str:
  mmu = run.config.data.get("mmu", None)
  if mmu is None or int(mmu.get("batch_size", 0) or 0) == 0:
    return "none"
  if mmu.get("format", "caption") == "llava":
    return "llava" if mmu.get("stage", "") == "tuning" else "llava_pretraining"
  return "caption"


def suite_mmu(run, s: dict, out_dir: str = "", *, vqa: bool | None = None, captions: bool | None = None) -> dict:
  """VQA for runs trained on ``tuning`` rows, captions for runs trained on captioning rows (or both when
  asked explicitly)."""
  from showo_jax.eval import mmu
  if run.family.startswith("showo_v1"):
    from showo_jax.eval import v1_toy
    return v1_toy.suite_mmu(run, s)
  if run.family != "showo2":
    return {"metrics": {}, "details": {"skipped": f"no understanding path for family {run.family!r}"}}
  kind = _mmu_kind(run)
  vqa = (kind == "llava") if vqa is None else vqa
  captions = (kind in ("caption", "llava_pretraining")) if captions is None else captions
  metrics, details = {}, {}
  if vqa:
    r = mmu.vqa_showo2(run, n=int(s["num_vqa"]), seed=int(s["seed"]), batch_size=int(s["batch_size"]),
                       max_new_tokens=min(8, int(s["max_new_tokens"])))
    metrics.update(_prefixed("vqa", r["metrics"]))
    metrics["vqa_blind_prior"] = mmu.blind_prior(r["items"], size=run.codec.resolution)["accuracy"]
    details["vqa_examples"] = [{"q": it.question, "a": it.answer, "pred": p}
                               for it, p in list(zip(r["items"], r["predictions"]))[:12]]
  if captions:
    r = mmu.captions_showo2(run, n=int(s["num_captions"]), seed=int(s["seed"]), batch_size=int(s["batch_size"]),
                            max_new_tokens=int(s["max_new_tokens"]))
    metrics.update(_prefixed("caption", r["metrics"]))
    details["caption_examples"] = [{"ref": a, "pred": b} for a, b in list(zip(r["references"], r["captions"]))[:12]]
  return {"metrics": metrics, "details": details}


def suite_heldout(run, s: dict, out_dir: str = "", *, all_und: bool = False) -> dict:
  from showo_jax.eval import heldout
  if run.family.startswith("showo_v1"):
    from showo_jax.eval import v1_toy
    return v1_toy.suite_heldout(run, s)
  n, bs, seed = int(s["num_heldout"]), int(s["batch_size"]), int(s["seed"])
  m = {}
  t = heldout.text_nll(run, n=n, seed=seed, batch_size=bs)
  m.update({"heldout_text_loss": t["loss"], "heldout_text_ppl": t["perplexity"], "heldout_text_acc": t["accuracy"]})
  if run.family == "showo2":
    m["heldout_flow"] = heldout.flow_heldout(run, n=n, seed=seed, batch_size=bs)["loss"]
    kind = _mmu_kind(run)
    if all_und or kind in ("caption", "llava_pretraining", "none"):
      m["heldout_caption_nll"] = heldout.caption_nll(run, n=n, seed=seed, batch_size=bs)["loss"]
    if all_und or kind == "llava":
      m["heldout_vqa_nll"] = heldout.vqa_nll(run, n=n, seed=seed, batch_size=bs)["loss"]
  return {"metrics": m, "details": {}}


def suite_recon(run, s: dict, out_dir: str = "") -> dict:
  from showo_jax.eval import recon
  if run.codec is None:
    return {"metrics": {}, "details": {"skipped": "the run has no latent codec"}}
  r = recon.evaluate(recon.codec_roundtrip(run.codec), run.codec.resolution, seed=int(s["seed"]))
  return {"metrics": _prefixed("recon", {k: v for k, v in r.items() if k != "real_images"}),
          "details": {"real_images": r["real_images"]}}


def suite_video(run, s: dict, out_dir: str = "") -> dict:
  from showo_jax.eval import t2i
  if run.family != "showo2" or int(run.config.data.video.get("batch_size", 0) or 0) == 0:
    return {"metrics": {}, "details": {"skipped": "not a video-trained Show-o2 run"}}
  r = t2i.t2v_showo2(run, num_prompts=int(s["prompts_per_category"]), guidance_scale=float(s["guidance_scale"]),
                     num_steps=int(s["num_steps"]), shift=float(s["shift"]), seed=int(s["seed"]),
                     batch_size=int(s["batch_size"]))
  return {"metrics": _prefixed("t2v", r["metrics"]), "details": {"captions": r["captions"]}}


def suite_toy(run, s: dict, out_dir: str = "") -> dict:
  metrics, details = {}, {}
  parts = [suite_heldout] if run.family == "lm" else [suite_t2i, suite_mmu, suite_heldout]
  for fn in parts:
    r = fn(run, s, out_dir)
    metrics.update(r["metrics"])
    details[fn.__name__.removeprefix("suite_")] = r["details"]
  return {"metrics": metrics, "details": details}


def suite_geneval_files(run, s: dict, out_dir: str = "", *, prompts: str = "", layout: str = "geneval",
                        per_prompt: int = 1) -> dict:
  """Generate images for a user's benchmark prompts (``--prompts``) into ``out_dir`` (no scoring: run the
  benchmark's own scorer on that folder)."""
  from showo_jax.eval import t2i
  if not prompts or not out_dir:
    raise ValueError("suite geneval_files needs --prompts FILE_OR_DIR and --out_dir DIR")
  items = t2i.load_prompts(prompts)
  caps = [it["prompt"] for it in items for _ in range(per_prompt)]
  images = t2i.generate_showo2(run.model, run.tokenizer, run.codec, caps, num_image_tokens=run.num_image_tokens,
                               max_seq_len=run.max_seq_len, guidance_scale=float(s["guidance_scale"]),
                               num_steps=int(s["num_steps"]), shift=float(s["shift"]), seed=int(s["seed"]),
                               batch_size=int(s["batch_size"]))
  if layout == "geneval":
    t2i.write_geneval_layout(out_dir, items, images, per_prompt)
  else:
    t2i.write_images_by_name(out_dir, items, images[::per_prompt])
  return {"metrics": {"num_images": int(len(images))}, "details": {"out_dir": out_dir, "layout": layout}}


def suite_llava_json(run, s: dict, out_dir: str = "", *, llava_json: str = "", image_root: str = "") -> dict:
  from showo_jax.eval import mmu
  if not llava_json:
    raise ValueError("suite llava_json needs --llava_json FILE (and --image_root DIR)")
  items = mmu.load_llava_eval(llava_json, image_root)
  preds = mmu.answer_showo2(run, [it.image for it in items], [it.question for it in items],
                            batch_size=int(s["batch_size"]), max_new_tokens=int(s["max_new_tokens"]))
  return {"metrics": _prefixed("llava", mmu.score_vqa(preds, items)),
          "details": {"predictions": preds[:50]}}


def suite_toy_all(run, s: dict, out_dir: str = "") -> dict:
  """``toy`` with every understanding metric (VQA and captions, both NLLs) whatever the run was trained on:
  for comparisons across training stages (Tab.12)."""
  if run.family != "showo2":
    return suite_toy(run, s, out_dir)
  metrics, details = {}, {}
  for name, r in (("t2i", suite_t2i(run, s, out_dir)), ("mmu", suite_mmu(run, s, out_dir, vqa=True, captions=True)),
                  ("heldout", suite_heldout(run, s, out_dir, all_und=True))):
    metrics.update(r["metrics"])
    details[name] = r["details"]
  return {"metrics": metrics, "details": details}


SUITES: dict[str, Callable] = {
    "toy": suite_toy, "toy_all": suite_toy_all, "t2i": suite_t2i, "mmu": suite_mmu, "heldout": suite_heldout,
    "recon": suite_recon,
    "video": suite_video, "geneval_files": suite_geneval_files, "llava_json": suite_llava_json,
}


def calibration(size: int = 32, *, per_kind: int = 16, num_vqa: int = 128, seed: int = 20_250) -> dict:
  """Model-free reference numbers for the toy metrics: the checker on oracle renders of the held-out prompts
  (upper bound), on uniform noise and on blank images (lower bounds); the image-blind VQA prior; the toy
  patch codec's PSNR with 16 (the VAE's channel count) and 48 (lossless) channels."""
  from showo_jax.eval import mmu, recon, t2i
  prompts = t2i.geneval_prompts(per_kind, seed)
  oracle = [t2i.render_prompt(p.spec, size, seed=i) for i, p in enumerate(prompts)]
  noise = list(np.random.default_rng(seed).integers(0, 256, (len(prompts), size, size, 3)).astype(np.uint8))
  blank = [np.zeros((size, size, 3), np.uint8)] * len(prompts)
  out = {"size": size}
  for name, imgs in (("oracle", oracle), ("noise", noise), ("blank", blank)):
    out.update(_prefixed(f"geneval_{name}", {k: v for k, v in t2i.evaluate_t2i(imgs, prompts).items()
                                             if not k.startswith("n_")}))
  items = mmu.vqa_set(num_vqa, seed, size=size)
  out.update(_prefixed("vqa_blind_prior", mmu.blind_prior(items, size=size)))
  for ch in (16, 48):
    r = recon.evaluate(recon.default_codecs(("patch",), resolution=size, channels=ch)["patch"], size, seed=seed)
    out[f"recon_patch{ch}_psnr_procedural"] = r["psnr_procedural"]
    out[f"recon_patch{ch}_psnr_real"] = r["psnr_real"]
  return out


def run_suite(name: str, run, *, overrides: dict | None = None, out_dir: str = "", **kw) -> dict:
  """Evaluate ``run`` with suite ``name`` → the JSON document ``launch/eval.py`` writes."""
  if name not in SUITES:
    raise ValueError(f"unknown suite {name!r}; known: {sorted(SUITES)}")
  s = settings(run, overrides)
  t0 = time.perf_counter()
  r = SUITES[name](run, s, out_dir, **kw)
  return {"suite": name, "checkpoint": run.workdir, "step": int(run.step), "family": run.family,
          "settings": {k: _num(v) for k, v in s.items()}, "metrics": r["metrics"], "details": r["details"],
          "seconds": round(time.perf_counter() - t0, 2)}


def dumps(doc: dict) -> str:
  """Strict JSON (NaN/inf → null)."""
  def clean(x):
    if isinstance(x, dict):
      return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
      return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
      return int(x)
    if isinstance(x, np.bool_):
      return bool(x)
    return x
  return json.dumps(clean(doc), indent=1, allow_nan=False)
