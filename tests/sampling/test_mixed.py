"""Mixed-modality generation: round mechanics, per-image guidance, history times, prefix reuse == uncached."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from showo_jax.models.showo2 import Showo2, Showo2Config
from showo_jax.sampling import mixed, ode, text
from showo_jax.text import build_tiny_tokenizer

N_BLOCK = 17   # tiny model: 16 image tokens + time token
REAL_GENERATE, REAL_SAMPLE = text.generate, ode.sample   # before any monkeypatching


@pytest.fixture(scope="module")
def model():
  return Showo2(Showo2Config.tiny(), rngs=nnx.Rngs(11))


@pytest.fixture(scope="module")
def tok():
  return build_tiny_tokenizer(310)


class ScriptedText:
  """Stands in for the sampled text of each round (a random tiny model would emit arbitrary tokens);
  records the prompts so the history layout can be checked."""

  def __init__(self, responses):
    self.responses = list(responses)
    self.prompts = []
    self.real = REAL_GENERATE

  def __call__(self, model, prompt, **kw):
    self.prompts.append(prompt)
    real = self.real(model, prompt, **kw)        # the real decoder still runs (shapes, stops, cache)
    resp = self.responses.pop(0)
    toks = np.full((1, kw["max_new_tokens"]), kw["pad_id"], np.int32)
    toks[0, :len(resp)] = resp
    real.tokens, real.lengths = toks, np.asarray([len(resp)])
    return real


def run(model, tok, monkeypatch, responses, **cfg_kw):
  scripted = ScriptedText(responses)
  monkeypatch.setattr(mixed.text, "generate", scripted)
  calls = []
  real_sample = REAL_SAMPLE

  def spy(*a, **kw):
    calls.append((a, kw))
    return real_sample(*a, **kw)

  monkeypatch.setattr(mixed.ode, "sample", spy)
  cfg_kw = {"rounds": 3, **cfg_kw}
  cfg = mixed.MixedConfig(max_new_tokens=4, num_steps=3, pad_multiple=16, length_bucket=32, **cfg_kw)
  res = mixed.generate_mixed(model, tok, "Mixed-modality generation (VIST). a red circle", key=jax.random.key(0),
                             cfg=cfg)
  return res, scripted, calls


def test_rounds_history_and_guidance(model, tok, monkeypatch):
  sp = tok.special
  # round 0: text then <|vision_start|> -> image 1; round 1: text then boi -> image 2; round 2: text + eos.
  res, scripted, calls = run(model, tok, monkeypatch, [[40, 41, sp.boi], [42, sp.boi], [43, sp.eos]],
                             guidance_scale=7.5)
  assert len(res.latents) == 2 and res.latents[0].shape == (8, 8, 16)
  assert [s[0] for s in res.segments] == ["text", "image", "text", "image", "text"]
  assert [kw["guidance_scale"] for _, kw in calls] == [7.5, 5.0]          # reference: 5.0 after round 0
  prompt_ids = tok.encode("Mixed-modality generation (VIST). a red circle")
  hist0 = [sp.bos] + prompt_ids + [40, 41, sp.boi]
  assert res.positions[0] == (len(hist0), N_BLOCK)
  assert res.tokens[:len(hist0)] == hist0
  blk = res.tokens[len(hist0):len(hist0) + N_BLOCK + 1]
  assert blk == [sp.img_pad] * N_BLOCK + [sp.eoi]
  assert res.positions[1] == (len(hist0) + N_BLOCK + 1 + 2, N_BLOCK)       # [eoi] 42 [boi] then the block
  assert res.tokens[res.positions[1][0] + N_BLOCK] == sp.eoi and res.tokens[-2:] == [43, sp.eos]
  # 2nd image: the first one is a clean context block at t = 1, the null row is [bos][boi] block
  (a, kw) = calls[1]
  cond, uncond = a[2], a[3]
  assert cond.num_context == 1 and cond.context_t == 1.0
  assert np.asarray(cond.context_positions).tolist() == [[list(res.positions[0])]]
  np.testing.assert_array_equal(np.asarray(cond.context_latents[0, 0]), np.asarray(res.latents[0]))
  assert np.asarray(uncond.target).tolist() == [[2, N_BLOCK]]
  assert list(np.asarray(uncond.tokens)[0, :2]) == [sp.bos, sp.boi]
  # round 2's text prompt holds both images (time t = 0 by default, the reference's mm_generate)
  assert len(scripted.prompts) == 3
  p2 = scripted.prompts[2]
  assert int(p2.embeds.shape[1] - p2.pad[0]) == len(res.tokens) - 2     # before "43 eos" were appended


def test_later_guidance_option_and_history_time(model, tok, monkeypatch):
  sp = tok.special
  assert mixed.MixedConfig(guidance_scale=2.0).guidance_for(1) == 5.0
  assert mixed.MixedConfig(guidance_scale=2.0, later_guidance_scale=None).guidance_for(3) == 2.0
  kw = dict(guidance_scale=2.0, rounds=2)
  _, scripted0, _ = run(model, tok, monkeypatch, [[sp.boi], [sp.eos]], **kw)
  _, scripted1, _ = run(model, tok, monkeypatch, [[sp.boi], [sp.eos]], und_history_t=1.0, **kw)
  # the understanding prompt after the image differs only at the history's time token (t = 0 vs t = 1)
  p0, p1 = scripted0.prompts[1], scripted1.prompts[1]
  diff = np.abs(np.asarray(p0.embeds) - np.asarray(p1.embeds)).max(axis=-1)[0]
  end = p0.embeds.shape[1]                # history = [bos] prompt [boi] <time> image×16 [eoi] (left-padded)
  assert np.flatnonzero(diff > 0).tolist() == [end - N_BLOCK - 1]


def test_mixed_prefix_reuse_equals_uncached(model, tok, monkeypatch):
  sp = tok.special
  a, _, _ = run(model, tok, monkeypatch, [[40, sp.boi], [41, sp.boi], [sp.eos]], prefix_reuse=True)
  b, _, _ = run(model, tok, monkeypatch, [[40, sp.boi], [41, sp.boi], [sp.eos]], prefix_reuse=False)
  for x, y in zip(a.latents, b.latents):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=3e-5, rtol=1e-5)
  assert float(jnp.abs(a.latents[0] - a.latents[1]).max()) > 1e-3


def test_real_sampled_text_round(model, tok):
  # No scripting: the random model samples text; every round stops at eos/boi or the token budget.
  cfg = mixed.MixedConfig(rounds=2, max_new_tokens=4, num_steps=3, pad_multiple=16, length_bucket=32)
  res = mixed.generate_mixed(model, tok, "a red circle", key=jax.random.key(3), cfg=cfg)
  assert len(res.responses) == 2
  res2 = mixed.generate_mixed(model, tok, "a red circle", key=jax.random.key(3), cfg=cfg)
  assert res.tokens == res2.tokens     # seeded -> reproducible
