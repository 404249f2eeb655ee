"""Held-out losses: the cheap, low-variance ablation metrics (no upstream counterpart).

* :func:`text_nll` — next-token loss and perplexity of a fixed text set through the LLM alone (Show-o2's
  text-only path, or the ``lm`` family): **text retention** (Tab.13). Default set: procedural text documents
  (``procedural.text_sample``, held-out seed), or the user's own lines (:func:`load_text_lines`).
* :func:`caption_nll` / :func:`vqa_nll` — NTP loss of the answer tokens of captioning rows (stage-1 layout) and
  LLaVA ``tuning`` rows, with clean latents (``t = 1``).
* :func:`flow_heldout` — flow-matching MSE on held-out T2I rows at **fixed** times ``t_i = (i + ½)/n`` and fixed
  noise (seeded per sample), so two models see exactly the same ``(x_t, t, target)`` triples and the number
  is comparable across arms and steps (the training loss draws ``t`` at random).

Rows are built with the training builders (``data/sequence.py``) at the run's ``max_seq_length`` and image
geometry, so they match what the model was trained on.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax.data import procedural as P

EVAL_SEED = 20_250


def load_text_lines(path: str, limit: int | None = None) -> list[str]:
  lines = [line.strip() for line in open(path) if line.strip()]
  return lines[:limit] if limit else lines


def heldout_texts(n: int, seed: int = EVAL_SEED) -> list[str]:
  return [P.text_sample(seed + 3, i)["text"] for i in range(n)]


def _sum_nll(logits, labels):
  """(sum of shifted NLL, number of targets, number correct)."""
  lg = logits[:, :-1].astype(jnp.float32)
  lb = labels[:, 1:]
  valid = lb != -100
  logz = jax.nn.logsumexp(lg, axis=-1)
  picked = jnp.take_along_axis(lg, jnp.where(valid, lb, 0)[..., None], axis=-1)[..., 0]
  nll = jnp.where(valid, logz - picked, 0.0)
  correct = jnp.where(valid, jnp.argmax(lg, axis=-1) == lb, False)
  return nll.sum(), valid.sum(), correct.sum()


@nnx.jit
def _text_stats(llm, tokens, labels):
  return _sum_nll(llm(tokens).logits, labels)


@nnx.jit
def _mm_stats(model, tokens, labels, latents, t, mp):
  out = model(tokens, latents, t, mp, compute_flow=False)
  return _sum_nll(out.logits, labels)


@nnx.jit
def _flow_stats(model, tokens, latents, t, mp, image_masks, x0):
  from showo_jax import losses, transport
  t, xt, ut = transport.plan(t, x0, latents)
  out = model(tokens, xt, t, mp, compute_logits=False)
  targets = losses.place_targets(losses.patchify_targets(ut, model.cfg.patch_size), mp, tokens.shape[1])
  mask = losses.flow_token_mask(image_masks, mp)
  m = jnp.broadcast_to(mask[..., None], out.v_tokens.shape)
  err = jnp.square(out.v_tokens.astype(jnp.float32) - targets.astype(jnp.float32))
  return jnp.sum(jnp.where(m, err, 0.0)), jnp.sum(m)


def _finish(total, count, correct) -> dict:
  loss = float(total) / max(1, int(count))
  return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0))), "accuracy": float(correct) / max(1, int(count)),
          "tokens": int(count)}


def _chunks(items: Sequence, bs: int):
  for a in range(0, len(items), bs):
    chunk = list(items[a:a + bs])
    yield chunk + [chunk[-1]] * (bs - len(chunk)), len(chunk)


def _llm(run):
  return run.model if run.family == "lm" else run.model.showo


def text_nll(run, texts: Sequence[str] | None = None, *, n: int = 64, seed: int = EVAL_SEED,
             batch_size: int = 16) -> dict:
  """NTP loss/perplexity/accuracy of ``texts`` (default: ``n`` held-out procedural documents) via the LLM."""
  from showo_jax.data import sequence
  texts = heldout_texts(n, seed) if texts is None else list(texts)
  L = run.max_seq_len
  rows = [sequence.build_text_only(run.tokenizer, t, L) for t in texts]
  total = count = correct = 0
  llm = _llm(run)
  for chunk, k in _chunks(rows, batch_size):
    toks = jnp.asarray(np.stack([r.tokens for r in chunk]))
    labs = np.stack([r.labels for r in chunk])
    labs[k:] = -100                                   # padded rows do not count
    s, c, a = _text_stats(llm, toks, jnp.asarray(labs))
    total, count, correct = total + float(s), count + int(c), correct + int(a)
  return _finish(total, count, correct)


def _mm_rows(run, rows, images):
  from showo_jax.data import sequence
  batch = sequence.collate(rows, num_slots=1)
  lat = run.codec.encode(np.stack(images))
  return batch, lat


def _mm_nll(run, rows, images, batch_size: int) -> dict:
  total = count = correct = 0
  idx = list(range(len(rows)))
  for chunk, k in _chunks(idx, batch_size):
    batch, lat = _mm_rows(run, [rows[i] for i in chunk], [images[i] for i in chunk])
    labs = batch["labels"].copy()
    labs[k:] = -100
    t = jnp.ones((len(chunk),), jnp.float32)
    s, c, a = _mm_stats(run.model, jnp.asarray(batch["tokens"]), jnp.asarray(labs), jnp.asarray(lat), t,
                        jnp.asarray(batch["modality_positions"]))
    total, count, correct = total + float(s), count + int(c), correct + int(a)
  return _finish(total, count, correct)


def caption_nll(run, *, n: int = 64, seed: int = EVAL_SEED, batch_size: int = 16) -> dict:
  """NTP of the caption tokens of stage-1 captioning rows (``sequence.build_und_caption``)."""
  from showo_jax.data import sequence
  cfg = P.SceneConfig(size=run.codec.resolution)
  samples = [P.t2i_sample(seed + 4, i, cfg) for i in range(n)]
  rows = [sequence.build_und_caption(run.tokenizer, s["caption"], run.num_image_tokens, run.max_seq_len)
          for s in samples]
  return _mm_nll(run, rows, [s["image"] for s in samples], batch_size)


def vqa_nll(run, *, n: int = 64, seed: int = EVAL_SEED, batch_size: int = 16) -> dict:
  """NTP of the answers of LLaVA ``tuning`` rows (``sequence.build_llava``) on held-out procedural VQA."""
  from showo_jax.data import sequence
  cfg = P.SceneConfig(size=run.codec.resolution)
  samples = [P.vqa_sample(seed + 5, i, cfg) for i in range(n)]
  system = run.config.data.mmu.get("system_prompt", "") or sequence.DEFAULT_SYSTEM_PROMPT
  rows = [sequence.build_llava(run.tokenizer, [{"from": "human", "value": "<image>\n" + s["question"]},
                                               {"from": "gpt", "value": s["answer"]}],
                               run.num_image_tokens, run.max_seq_len, stage="tuning", system_prompt=system)
          for s in samples]
  return _mm_nll(run, rows, [s["image"] for s in samples], batch_size)


def flow_heldout(run, *, n: int = 64, seed: int = EVAL_SEED, batch_size: int = 16) -> dict:
  """Flow MSE on held-out T2I rows at fixed times and fixed noise (see the module docstring)."""
  from showo_jax.data import sequence
  cfg = P.SceneConfig(size=run.codec.resolution)
  samples = [P.t2i_sample(seed + 6, i, cfg) for i in range(n)]
  rows = [sequence.build_t2i(run.tokenizer, s["caption"], run.num_image_tokens, run.max_seq_len) for s in samples]
  # Stratified fixed times, shuffled so batches mix them.
  ts = (np.random.default_rng([seed, 9]).permutation(n) + 0.5) / n
  total = count = 0.0
  for a in range(0, n, batch_size):
    idx = list(range(a, min(n, a + batch_size)))
    k = len(idx)
    idx = idx + [idx[-1]] * (batch_size - k)
    batch, lat = _mm_rows(run, [rows[i] for i in idx], [samples[i]["image"] for i in idx])
    x0 = np.stack([np.random.default_rng([seed, 10, i]).standard_normal(lat.shape[1:]).astype(np.float32)
                   for i in idx])
    masks = batch["image_mask"].astype(bool)
    masks[k:] = False
    s, c = _flow_stats(run.model, jnp.asarray(batch["tokens"]), jnp.asarray(lat), jnp.asarray(ts[idx], jnp.float32),
                       jnp.asarray(batch["modality_positions"]), jnp.asarray(masks), jnp.asarray(x0))
    total += float(s)
    count += float(c)
  return {"loss": total / max(1.0, count), "entries": int(count)}
