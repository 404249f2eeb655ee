"""Deterministic procedural checker (DATA.md §3.2): clean renders score ~1, bad samples score low."""
import numpy as np
import pytest
from scipy import ndimage

from showo_jax.data import procedural as P
from showo_jax.eval import checker as C

CFG, TINY = P.SceneConfig(), P.SceneConfig.tiny()


@pytest.fixture(scope="module")
def good():
  s = [P.t2i_sample(7, i, CFG) for i in range(200)]
  return [x["image"] for x in s], [x["caption"] for x in s]


def test_parse_scene_recovers_ground_truth():
  for cfg in (CFG, TINY):
    for i in range(60):
      s = P.t2i_sample(11, i, cfg)
      objs = P.objects_from_array(s["objects"])
      dets = C.parse_scene(s["image"])
      assert len(dets) == len(objs)
      for o in objs:
        cy = o.y + (o.r / 3 if P.SHAPES[o.shape] == "triangle" else 0)  # a triangle's centroid is low
        d = min(dets, key=lambda d: abs(d.x - o.x) + abs(d.y - cy))
        assert (d.color, d.shape) == (o.color, o.shape) and abs(d.x - o.x) < 1.0 and abs(d.y - cy) < 1.0
  assert C.parse_scene(np.zeros((64, 64, 3), np.uint8)) == []


def test_clean_renders_score_near_one(good):
  r = C.evaluate_t2i(*good)
  assert r["exact"] >= 0.99 and r["overall"] >= 0.99
  assert all(r[k] >= 0.99 for k in C.CATEGORIES if k in r)
  assert all(r[f"n_{k}"] > 0 for k in C.CATEGORIES)  # every GenEval category is exercised
  tiny = [P.t2i_sample(7, i, TINY) for i in range(100)]
  assert C.evaluate_t2i([x["image"] for x in tiny], [x["caption"] for x in tiny])["exact"] >= 0.99


def test_known_bad_samples_score_low(good):
  images, captions = good
  shuffled = C.evaluate_t2i(images, captions[1:] + captions[:1])
  assert shuffled["exact"] <= 0.05 and shuffled["overall"] <= 0.3
  # Colour-corrupted images (channels rotated): shapes/counts survive, colour categories collapse.
  rot = C.evaluate_t2i([im[..., [1, 2, 0]] for im in images], captions)
  assert rot["colors"] <= 0.3 and rot["color_attr"] <= 0.3 and rot["counting"] >= 0.95
  blank = C.evaluate_t2i([np.zeros_like(im) for im in images], captions)
  assert blank["overall"] == 0.0 and blank["exact"] == 0.0


def test_degraded_renders(good):
  rng = np.random.default_rng(0)
  images, captions = good
  noisy = [np.clip(ndimage.gaussian_filter(im.astype(np.float32), (0.7, 0.7, 0)) + rng.normal(0, 10, im.shape), 0, 255)
           for im in images]
  assert C.evaluate_t2i(noisy, captions)["exact"] >= 0.95


def test_category_semantics():
  red_circle = P.Obj(P.SHAPES.index("circle"), P.COLORS.index("red"), 20, 20, 9)
  blue_square = P.Obj(P.SHAPES.index("square"), P.COLORS.index("blue"), 48, 24, 8)
  img1 = P.render([red_circle], CFG)
  assert C.score_t2i(img1, "a photo of a red circle") == dict(
      single_object=True, two_object=None, counting=None, colors=True, position=None, color_attr=None, exact=True)
  r = C.score_t2i(img1, "a photo of a blue circle")
  assert r["single_object"] and not r["colors"] and not r["exact"]
  assert C.score_t2i(img1, "a photo of two red circles")["counting"] is False
  img2 = P.render([red_circle, blue_square], CFG)
  r = C.score_t2i(img2, "a photo of a red circle to the left of a blue square")
  assert r["position"] and r["exact"] and r["two_object"] and r["color_attr"]
  r = C.score_t2i(img2, "a photo of a red circle to the right of a blue square")
  assert r["position"] is False and r["exact"] is False and r["color_attr"]
  r = C.score_t2i(img2, "a photo of a blue circle and a red square")
  assert r["two_object"] and not r["color_attr"] and not r["exact"]


def test_video_motion():
  clips = [P.video_sample(5, i, CFG) for i in range(60)]
  good = C.evaluate_video([c["video"] for c in clips], [c["caption"] for c in clips])
  assert good["motion"] >= 0.99 and good["exact"] >= 0.99
  rev = C.evaluate_video([c["video"][::-1] for c in clips], [c["caption"] for c in clips])
  assert rev["motion"] <= 0.05
  still = C.evaluate_video([np.repeat(c["video"][:1], 8, 0) for c in clips], [c["caption"] for c in clips])
  assert still["motion"] == 0.0
  # Interleaved edits are motions too: image k vs k+1.
  s = P.interleaved_sample(5, 0)
  idx, d, _ = s["edits"][1]
  o = P.objects_from_array(s["objects"][0])[idx]
  assert C.motion_of(s["images"][0], s["images"][1], o.color, o.shape) == d


def test_vqa_match():
  assert C.vqa_match("Two.", "two") and C.vqa_match("2", "two") and C.vqa_match(" Yes, it is.", "yes")
  assert C.vqa_match("the red", "red") and not C.vqa_match("no", "yes") and not C.vqa_match("three", "two")
  preds = [P.vqa_sample(0, i)["answer"] for i in range(20)]
  assert C.evaluate_vqa(preds, preds)["accuracy"] == 1.0
  assert C.evaluate_vqa(["yes"] * 20, preds)["accuracy"] < 0.5
