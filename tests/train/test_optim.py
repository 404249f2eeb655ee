"""Optimizer pieces against the reference formulas (lr_schedulers.py, train_stage_two.py param groups)."""
import math

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest

from showo_jax.train import optim


def _torch_constant_with_warmup(step, warmup):
  return step / max(1.0, warmup) if step < warmup else 1.0


def _torch_cosine(step, warmup, total, cycles=0.5):
  if step < warmup:
    return step / max(1, warmup)
  progress = (step - warmup) / max(1, total - warmup)
  return max(0.0, 0.5 * (1.0 + math.cos(math.pi * cycles * 2.0 * progress)))


@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_constant_with_warmup_matches_reference(warmup):
  f = optim.schedule_fn("constant_with_warmup", 1e-4, warmup_steps=warmup)
  for s in range(12):
    np.testing.assert_allclose(float(f(s)), 1e-4 * _torch_constant_with_warmup(s, warmup), rtol=1e-6)


@pytest.mark.parametrize("warmup,total", [(0, 10), (3, 100), (30, 1000)])
def test_cosine_matches_reference(warmup, total):
  f = optim.schedule_fn("cosine", 5e-5, warmup_steps=warmup, total_steps=total)
  for s in list(range(0, 40)) + [total - 1, total, total + 5]:
    np.testing.assert_allclose(float(f(s)), 5e-5 * _torch_cosine(s, warmup, total), rtol=1e-5, atol=1e-12)


def test_warmup_ratio():
  sc = mlc.ConfigDict(dict(name="cosine", warmup_steps=None, warmup_ratio=0.03))
  assert optim.warmup_steps_of(sc, 1000) == 30
  sc.warmup_steps = 5
  assert optim.warmup_steps_of(sc, 1000) == 5


STAGE2_GROUPS = {"ve": ["und_trans", "image_embedder", "position_embedding"], "proj": ["fusion_proj"],
                 "showo": ["showo", "diffusion", "diff_proj", "time_embed_proj"]}


def test_group_labels_time_embed_in_no_group():
  names = ["showo.model.embed_tokens.embedding", "und_trans.layers.0.fc1.kernel", "image_embedder_gen.proj.kernel",
           "position_embedding.embedding", "fusion_proj.1.kernel", "time_embed.mlp.0.kernel",
           "time_embed_proj.kernel", "diff_proj.0.kernel", "diffusion_head_b.linear.kernel"]
  labels = optim.group_labels(names, STAGE2_GROUPS)
  assert labels == {names[0]: "showo", names[1]: "ve", names[2]: "ve", names[3]: "ve", names[4]: "proj",
                    names[5]: optim.NO_GROUP, names[6]: "showo", names[7]: "showo", names[8]: "showo"}
  with pytest.raises(ValueError, match="several optimizer groups"):
    optim.group_labels(["showo.fusion_proj.x"], STAGE2_GROUPS)


def test_frozen_filter_substrings_and_regex():
  f = optim.ParamFilter(("diffusion",), (r"^showo\.model\.layers\.0\.",))
  assert f("diffusion_head_a.0.attn.q_proj.kernel") and f("diffusion_head_b.linear.kernel")
  assert f("showo.model.layers.0.mlp.up_proj.kernel") and not f("showo.model.layers.1.mlp.up_proj.kernel")
  tr, fr = optim.split_names(["a.diffusion.x", "b.y"], f)
  assert tr == ["b.y"] and fr == ["a.diffusion.x"]


def _adamw_torch(p, grads, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
  """torch.optim.AdamW, written out (decoupled decay, bias-corrected, eps outside the sqrt)."""
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  for t, g in enumerate(grads, start=1):
    p = p * (1 - lr[t - 1] * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    p = p - lr[t - 1] * mhat / (np.sqrt(vhat) + eps)
  return p


def test_build_groups_clip_and_no_group_updates():
  cfg = mlc.ConfigDict(dict(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, grad_clip=1.0,
                            ema_decay=0.0,
                            groups={"a": {"params": ["w"], "lr": 1e-2}, "b": {"params": ["v"], "lr": 1e-3}},
                            schedule=dict(name="constant_with_warmup", warmup_steps=2, warmup_ratio=0.0)))
  params = {"w": jnp.ones((3,)), "v": jnp.full((2,), 2.0), "time_embed": jnp.ones((2,))}
  opt = optim.build(cfg, list(params), total_steps=10)
  assert opt.labels == {"w": "a", "v": "b", "time_embed": optim.NO_GROUP}
  st = opt.tx.init(params)
  rng = np.random.default_rng(0)
  grads_seq = [{k: jnp.asarray(rng.normal(size=v.shape) * 3, jnp.float32) for k, v in params.items()} for _ in range(4)]
  p = params
  clipped = []
  for g in grads_seq:
    norm = float(optax.global_norm(g))   # the norm includes time_embed's gradient (requires_grad)
    clipped.append({k: np.asarray(v) * min(1.0, 1.0 / (norm + 1e-6)) for k, v in g.items()})
    u, st = opt.tx.update(g, st, p)
    p = optax.apply_updates(p, u)
  np.testing.assert_array_equal(np.asarray(p["time_embed"]), np.ones(2))
  lr_a = [1e-2 * min(1, s / 2) for s in range(4)]
  lr_b = [1e-3 * min(1, s / 2) for s in range(4)]
  np.testing.assert_allclose(np.asarray(p["w"]), _adamw_torch(np.ones(3), [c["w"] for c in clipped], lr_a, wd=0.01),
                             rtol=2e-5)
  np.testing.assert_allclose(np.asarray(p["v"]), _adamw_torch(np.full(2, 2.0), [c["v"] for c in clipped], lr_b,
                                                              wd=0.01), rtol=2e-5)


@pytest.mark.parametrize("groups", [{}, {"a": {"params": ["layer"], "lr": 1e-3}}])
def test_no_decay_exempts_matching_names(groups):
  """``optim.no_decay`` = the reference's second AdamW group (Show-o v1: biases get weight_decay 0)."""
  cfg = mlc.ConfigDict(dict(name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.5, grad_clip=0.0,
                            ema_decay=0.0, groups=groups, no_decay=["bias"],
                            schedule=dict(name="constant", warmup_steps=0, warmup_ratio=0.0)))
  params = {"layer.kernel": jnp.full((3,), 2.0), "layer.bias": jnp.full((3,), 2.0)}
  opt = optim.build(cfg, list(params), total_steps=10)
  grads = {k: jnp.zeros_like(v) for k, v in params.items()}     # zero grads: only decay moves a parameter
  u, _ = opt.tx.update(grads, opt.tx.init(params), params)
  p = optax.apply_updates(params, u)
  np.testing.assert_array_equal(np.asarray(p["layer.bias"]), np.full(3, 2.0))
  np.testing.assert_allclose(np.asarray(p["layer.kernel"]), np.full(3, 2.0 * (1 - 1e-3 * 0.5)), rtol=1e-6)
