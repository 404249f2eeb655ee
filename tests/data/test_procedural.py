"""Procedural mini-GenEval/CLEVR data (DATA.md §3.2): determinism, geometry, grammar, ground truth, grain."""
import pickle
from collections import Counter

import numpy as np
import pytest

from showo_jax.data import procedural as P

CFG = P.SceneConfig()
TINY = P.SceneConfig.tiny()


def _gap_ok(objs, cfg):
  return all(P.boxes_apart(a, b, cfg.gap) for i, a in enumerate(objs) for b in objs[i + 1:])


def test_deterministic_pure_function():
  a, b = P.t2i_sample(3, 17), P.t2i_sample(3, 17)
  assert a["caption"] == b["caption"] and np.array_equal(a["image"], b["image"])
  assert not np.array_equal(P.t2i_sample(3, 18)["image"], a["image"]) or P.t2i_sample(3, 18)["caption"] != a["caption"]
  assert not np.array_equal(P.t2i_sample(4, 17)["image"], a["image"])
  assert P.video_sample(1, 2)["caption"] == P.video_sample(1, 2)["caption"]
  assert P.interleaved_sample(1, 2)["texts"] == P.interleaved_sample(1, 2)["texts"]
  assert P.text_sample(0, 5) == P.text_sample(0, 5)


@pytest.mark.parametrize("cfg", [CFG, TINY], ids=["64px", "32px"])
def test_scenes_geometry_and_captions(cfg):
  lo, hi = cfg.radius_range
  counts, relational = Counter(), 0
  for i in range(300):
    s = P.t2i_sample(0, i, cfg)
    img, objs = s["image"], P.objects_from_array(s["objects"])
    assert img.dtype == np.uint8 and img.shape == (cfg.size, cfg.size, 3)
    assert 1 <= len(objs) == s["num_objects"] <= 4
    counts[len(objs)] += 1
    assert all(lo <= o.r <= hi and P.in_frame(o, cfg) for o in objs) and _gap_ok(objs, cfg)
    spec = P.parse_caption(s["caption"])
    assert P.caption_of(spec) == s["caption"]
    if spec.relation is None:
      assert Counter({(c, sh): n for n, c, sh in spec.groups}) == Counter((o.color, o.shape) for o in objs)
    else:
      relational += 1
      (_, ca, sa), (_, cb, sb) = spec.groups
      a = next(o for o in objs if (o.color, o.shape) == (ca, sa))
      b = next(o for o in objs if (o.color, o.shape) == (cb, sb))
      assert len(objs) == 2 and P.relation_of(a, b) == spec.relation
      assert max(abs(a.x - b.x), abs(a.y - b.y)) >= a.r + b.r + cfg.gap
  assert relational > 15 and set(counts) == {1, 2, 3, 4}


def test_grammar_examples():
  spec = P.PromptSpec(((2, P.COLORS.index("red"), P.SHAPES.index("circle")), (1, P.COLORS.index("blue"), P.SHAPES.index("square"))))
  assert P.caption_of(spec) == "a photo of two red circles and a blue square"
  assert P.parse_caption("a photo of two red circles and a blue square") == spec
  assert P.caption_of(P.PromptSpec(((1, 5, 0), (1, 1, 2), (3, 7, 3)))) == \
      "a photo of an orange circle, a green triangle and three white diamonds"
  rel = P.parse_caption("a photo of a green triangle to the left of a yellow circle")
  assert rel.relation == "to the left of" and rel.groups == ((1, 1, 2), (1, 3, 0))
  with pytest.raises(ValueError):
    P.parse_caption("a photo of a red car")
  assert P.parse_video_caption("a purple square moves down and a cyan diamond moves up") == [(4, 1, 1), (6, 3, 0)]


def test_render_geometry_exact():
  o = P.Obj(P.SHAPES.index("square"), 0, 20, 30, 8)
  img = P.render([o], CFG)
  fg = img.any(-1)
  # Centres are pixel corners: an axis-aligned square covers exactly (2r)^2 whole pixels of its colour.
  assert fg.sum() == 256 and (img[22:38, 12:28] == P.PALETTE[0]).all()
  circ = P.render([P.Obj(0, 7, 32, 32, 10)], CFG).astype(float)[..., 0] / 255
  assert abs(circ.sum() - np.pi * 100) < 1.0  # anti-aliased coverage integrates to the disc area
  assert abs(P.render([P.Obj(2, 7, 32, 32, 10)], CFG).astype(float)[..., 0].sum() / 255 - 200) < 1.0  # triangle


def test_vqa_answers_are_true():
  kinds = Counter()
  for i in range(300):
    s = P.vqa_sample(0, i)
    objs, q, a, kind = P.objects_from_array(s["objects"]), s["question"], s["answer"], s["kind"]
    kinds[kind] += 1
    shapes, colors = [o.shape for o in objs], [o.color for o in objs]
    if kind == "count_shape":
      shape = P.SHAPES.index(q.split()[2][:-1])
      assert a == P.NUMBER_WORDS[shapes.count(shape)]
    elif kind == "count_objects":
      assert q == "How many objects are there?" and a == P.NUMBER_WORDS[len(objs)]
    elif kind == "exists":
      c, sh = q.rstrip("?").split()[3:5]  # "Is there a|an <color> <shape>?"
      present = (P.COLORS.index(c), P.SHAPES.index(sh)) in set(zip(colors, shapes))
      assert a == ("yes" if present else "no")
    elif kind == "color_of":
      shape = P.SHAPES.index(q.rstrip("?").split()[-1])
      assert shapes.count(shape) == 1 and a == P.COLORS[colors[shapes.index(shape)]]
    elif kind == "shape_of":
      color = P.COLORS.index(q.split()[4])
      assert colors.count(color) == 1 and a == P.SHAPES[shapes[colors.index(color)]]
    else:
      body = q[len("Is the "):-1]
      rel = next(r for r in P.RELATIONS if f" {r} the " in body)
      na, nb = body.split(f" {rel} the ")
      a_obj = next(o for o in objs if o.name == na)
      b_obj = next(o for o in objs if o.name == nb)
      assert a == ("yes" if P.relation_of(a_obj, b_obj) == rel else "no")
  assert set(kinds) == {"count_shape", "count_objects", "exists", "color_of", "shape_of", "relation"}
  answers = Counter(P.vqa_sample(0, i)["answer"] for i in range(300))
  assert answers["yes"] > 10 and answers["no"] > 10 and answers["zero"] > 5


@pytest.mark.parametrize("cfg", [CFG, TINY], ids=["64px", "32px"])
def test_video_clips(cfg):
  lo, hi = cfg.speed_range
  for i in range(60):
    s = P.video_sample(0, i, cfg)
    v, objs = s["video"], P.objects_from_array(s["objects"])
    assert v.shape == (8, cfg.size, cfg.size, 3) and v.dtype == np.uint8
    n = int(s["num_objects"])
    assert len(objs) == n and len({(o.color, o.shape) for o in objs}) == n
    parsed = P.parse_video_caption(s["caption"])
    tracks = []
    for o, (d, speed), (c, sh, dd) in zip(objs, s["motions"][:n], parsed):
      assert (c, sh, dd) == (o.color, o.shape, d) and lo <= speed <= hi
      vx, vy = P.DIRECTION_VECTORS[P.DIRECTIONS[d]]
      tracks.append([o.moved(vx * speed * k, vy * speed * k) for k in range(8)])
    for k in range(8):
      frame_objs = [tr[k] for tr in tracks]
      assert all(P.in_frame(o, cfg) for o in frame_objs) and _gap_ok(frame_objs, cfg)
      assert np.array_equal(v[k], P.render(frame_objs, cfg))


def test_interleaved_edits():
  for i in range(60):
    s = P.interleaved_sample(0, i)
    n = int(s["num_images"])
    assert 2 <= n <= 4 and len(s["texts"]) == n and s["images"].shape == (4, 64, 64, 3)
    assert not s["images"][n:].any()
    scenes = [P.objects_from_array(s["objects"][k]) for k in range(n)]
    assert P.parse_caption(s["texts"][0]).groups == P.group_objects(scenes[0])
    for k in range(1, n):
      idx, d, dist = s["edits"][k]
      prev, cur = scenes[k - 1], scenes[k]
      vx, vy = P.DIRECTION_VECTORS[P.DIRECTIONS[d]]
      assert cur[idx] == prev[idx].moved(vx * dist, vy * dist)
      assert all(cur[j] == prev[j] for j in range(len(prev)) if j != idx)
      assert s["texts"][k] == f"move the {prev[idx].name} {P.DIRECTIONS[d]}"
      assert np.array_equal(s["images"][k], P.render(cur, CFG)) and _gap_ok(cur, CFG)


def test_text_corpus():
  docs = P.text_corpus(0, 20)
  assert len(docs) == 20 + 2 * 5 and all(isinstance(d, str) and d for d in docs)
  assert P.text_sample(0, 0)["text"].startswith("a photo of ")


def test_sources_and_grain():
  grain = pytest.importorskip("grain")
  src = P.T2ISource(seed=0, length=10, cfg=TINY)
  assert len(src) == 10 and src[3]["caption"] == P.t2i_sample(0, 3, TINY)["caption"]
  with pytest.raises(IndexError):
    src[10]
  src2 = pickle.loads(pickle.dumps(src))
  assert np.array_equal(src2[np.int64(2)]["image"], src[2]["image"])
  ds = grain.MapDataset.source(src).map(lambda x: x["image"]).batch(4)
  first = ds[0]
  assert first.shape == (4, 32, 32, 3) and np.array_equal(first[1], src[1]["image"])
  for cls, key in ((P.VQASource, "answer"), (P.VideoSource, "video"), (P.InterleavedSource, "texts"), (P.TextSource, "text")):
    s = cls(seed=1, length=3, cfg=TINY)
    assert len(s) == 3 and key in s[2]
  vids = grain.MapDataset.source(P.VideoSource(seed=0, length=4, cfg=TINY)).map(lambda x: x["video"]).batch(2)
  assert vids[1].shape == (2, 8, 32, 32, 3)
