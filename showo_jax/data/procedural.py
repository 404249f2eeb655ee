"""Procedural "mini-GenEval / CLEVR" data: scenes, captions, VQA, moving-shape clips, interleaved samples.

No upstream counterpart: this is the toy-scale training/eval data of DATA.md §3.2, so that every Show-o2
task (T2I, MMU/VQA, video, mixed modality, text-only) has data and an automatic metric
(:mod:`showo_jax.eval.checker`) without downloads. Every sample is a pure function of ``(seed, index)``
(``numpy.random.default_rng(SeedSequence([seed, task, index]))``), so nothing is shipped and any
worker can produce any index.

Scene (DATA.md §3.2): square canvas (64 px; 32 px for the fastest tests), black background, 1-4
objects, shape in {circle, square, triangle, diamond}, colour in an 8-entry palette, "radius" 7-11 px
(scaled by ``size / 64``), at least 2 px Chebyshev gap between object bounding boxes and 1 px from the
border. Geometry (continuous coordinates, pixel ``i`` covers ``[i, i+1)``; centres are integers, i.e. pixel
corners, so squares cover whole pixels): every shape fills the box ``[x-r, x+r) x [y-r, y+r)``: circle =
inscribed disc, square = the box, diamond = vertices at the edge midpoints, triangle = apex at the top
middle, base on the bottom edge. Rendering is analytic with ``supersample**2`` samples per pixel (box
anti-aliasing), which is what makes the checker score clean renders at 100 %.

Grammar (all lower case):
  caption     "a photo of " + groups joined by ", " / " and "; group = "a red circle" | "an orange square" |
              "two blue triangles" (groups in order of first appearance; counts up to "four").
  relational  2 objects with different descriptors, probability ``relational_prob``:
              "a photo of a green triangle to the left of a yellow circle"; the relation ("to the left of",
              "to the right of", "above", "below") is the dominant axis of the centre offset, always
              >= r_a + r_b + 2 px.
  VQA         "How many circles are there?" -> "two"; "How many objects are there?" -> "three";
              "What color is the square?" -> "red" (only when exactly one square); "What shape is the red
              object?" -> "circle" (only when unique); "Is there a red circle?" -> "yes"/"no";
              "Is the red circle to the left of the blue square?" -> "yes"/"no".
  video       T = 8 frames, 1-2 objects with distinct descriptors, each moving up/down/left/right at 2-3 px
              per frame (scaled), in frame and never touching: "a purple square moves down and a cyan
              diamond moves up".
  interleaved caption of scene A, image A, then 1-3 steps "move the red circle right" + the edited image.
  text-only   a caption followed by question/answer sentences about the same scene.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")
# Well separated in RGB (min pairwise distance ~100) and all bright, so every colour clears the checker's
# foreground threshold (60) against black by a wide margin.
PALETTE = np.array([
    (230, 30, 30),    # red
    (30, 200, 40),    # green
    (40, 80, 255),    # blue
    (250, 230, 30),   # yellow
    (160, 50, 220),   # purple
    (255, 140, 0),    # orange
    (0, 220, 230),    # cyan
    (255, 255, 255),  # white
], dtype=np.uint8)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
DIRECTIONS = ("up", "down", "left", "right")
DIRECTION_VECTORS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
RELATIONS = ("to the left of", "to the right of", "above", "below")
OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below",
            "below": "above", "up": "down", "down": "up", "left": "right", "right": "left"}

# Task codes folded into the seed sequence so tasks draw independent streams.
_TASK = dict(scene=1, vqa=2, video=3, interleaved=4, text=5, corpus=6)


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """Canvas and object-size settings (DATA.md §3.2)."""
  size: int = 64
  min_objects: int = 1
  max_objects: int = 4
  gap: int = 2            # min Chebyshev gap between object boxes (px)
  margin: int = 1         # min gap to the border (px)
  supersample: int = 4    # samples per pixel side (anti-aliasing)
  num_frames: int = 8     # video clips

  @classmethod
  def tiny(cls, **kw) -> "SceneConfig":
    """32 px canvas for the fastest tests (the smallest size the checker scores exactly: at 16-24 px the
    shapes are 4-8 px wide and no longer distinguishable)."""
    return cls(**{"size": 32, **kw})

  @property
  def radius_range(self) -> tuple[int, int]:
    """Inclusive integer radius range: 7-11 px at 64 px, scaled with the canvas."""
    lo = max(2, round(7 * self.size / 64))
    return lo, max(lo, round(11 * self.size / 64))

  @property
  def speed_range(self) -> tuple[int, int]:
    """Inclusive per-frame speed range: 2-3 px at 64 px, scaled."""
    lo = max(1, round(2 * self.size / 64))
    return lo, max(lo, round(3 * self.size / 64))

  @property
  def move_range(self) -> tuple[int, int]:
    """Inclusive displacement of an interleaved "move" edit: 8-16 px at 64 px, scaled."""
    lo = max(3, round(8 * self.size / 64))
    return lo, max(lo, round(16 * self.size / 64))


@dataclasses.dataclass(frozen=True)
class Obj:
  """One object: palette/shape indices, integer centre (a pixel corner) and radius, in pixels."""
  shape: int
  color: int
  x: int
  y: int
  r: int

  @property
  def name(self) -> str:
    return f"{COLORS[self.color]} {SHAPES[self.shape]}"

  def moved(self, dx: int | np.integer, dy: int | np.integer) -> "Obj":
    return dataclasses.replace(self, x=self.x + int(dx), y=self.y + int(dy))


@dataclasses.dataclass(frozen=True)
class PromptSpec:
  """Structured meaning of a caption: groups ``(count, color, shape)``; optional relation between the
  single objects of group 0 and group 1 (``relation`` in :data:`RELATIONS`)."""
  groups: tuple[tuple[int, int, int], ...]
  relation: str | None = None

  @property
  def num_objects(self) -> int:
    return sum(g[0] for g in self.groups)


# ----------------------------------------------------------------------------------------------------------
# Randomness and scene sampling.


def rng_for(seed: int, task: str, index: int) -> np.random.Generator:
  """The generator behind sample ``index`` of ``task`` (a pure function of its arguments)."""
  return np.random.default_rng(np.random.SeedSequence([int(seed), _TASK[task], int(index)]))


def boxes_apart(a: Obj, b: Obj, gap: int) -> bool:
  """True when the objects' boxes are at least ``gap`` px apart (Chebyshev)."""
  reach = a.r + b.r + gap
  return abs(a.x - b.x) >= reach or abs(a.y - b.y) >= reach


def in_frame(o: Obj, cfg: SceneConfig) -> bool:
  return o.x - o.r >= cfg.margin and o.y - o.r >= cfg.margin and \
      o.x + o.r <= cfg.size - cfg.margin and o.y + o.r <= cfg.size - cfg.margin


def _place(rng: np.random.Generator, cfg: SceneConfig, placed: Sequence[Obj], shape: int, color: int,
           tries: int = 64) -> Obj | None:
  lo, hi = cfg.radius_range
  for _ in range(tries):
    r = int(rng.integers(lo, hi + 1))
    x = int(rng.integers(r + cfg.margin, cfg.size - r - cfg.margin + 1))
    y = int(rng.integers(r + cfg.margin, cfg.size - r - cfg.margin + 1))
    o = Obj(shape, color, x, y, r)
    if all(boxes_apart(o, p, cfg.gap) for p in placed):
      return o
  return None


def sample_scene(rng: np.random.Generator, cfg: SceneConfig, num_objects: int | None = None,
                 distinct: bool = False) -> list[Obj]:
  """Sample non-overlapping objects by rejection; ``distinct`` forbids repeated (colour, shape) pairs.

  If the canvas cannot take ``num_objects`` (tiny canvases), the scene is re-drawn and, after repeated
  failures, one object fewer is used: still a pure function of the generator state.
  """
  n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1)) if num_objects is None else num_objects
  while n >= 1:
    for _ in range(20):
      objs: list[Obj] = []
      # Repeats of one descriptor are made likely (not only by chance) so counting captions occur.
      for _ in range(n):
        if objs and not distinct and rng.random() < 0.35:
          ref = objs[int(rng.integers(len(objs)))]
          shape, color = ref.shape, ref.color
        else:
          while True:
            shape, color = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLORS)))
            if not distinct or all((o.shape, o.color) != (shape, color) for o in objs):
              break
        o = _place(rng, cfg, objs, shape, color)
        if o is None:
          break
        objs.append(o)
      if len(objs) == n:
        return objs
    n -= 1
  raise RuntimeError(f"cannot place a single object on a {cfg.size}px canvas")


# ----------------------------------------------------------------------------------------------------------
# Rendering.


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Inside-test of the ideal shape in box coordinates ``u, v in [0, 1]`` (also the checker's templates)."""
  du, dv = np.abs(u - 0.5), np.abs(v - 0.5)
  name = SHAPES[shape]
  if name == "circle":
    return du * du + dv * dv <= 0.25
  if name == "square":
    return (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
  if name == "diamond":
    return du + dv <= 0.5
  if name == "triangle":  # apex at the top middle, base on the bottom edge
    return (v <= 1) & (du <= v / 2)
  raise ValueError(shape)


def render(objs: Sequence[Obj], cfg: SceneConfig) -> np.ndarray:
  """Anti-aliased uint8 ``[size, size, 3]`` render on black (analytic coverage, ``supersample**2`` samples)."""
  s = cfg.supersample
  img = np.zeros((cfg.size, cfg.size, 3), np.float32)
  sub = (np.arange(s, dtype=np.float32) + 0.5) / s  # sample offsets inside a pixel
  for o in objs:
    x0, x1 = max(o.x - o.r, 0), min(o.x + o.r, cfg.size)
    y0, y1 = max(o.y - o.r, 0), min(o.y + o.r, cfg.size)
    xs = (np.arange(x0, x1, dtype=np.float32)[:, None] + sub[None, :]).reshape(-1)  # [(x1-x0)*s]
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + sub[None, :]).reshape(-1)
    u = (xs[None, :] - (o.x - o.r)) / (2 * o.r)
    v = (ys[:, None] - (o.y - o.r)) / (2 * o.r)
    inside = shape_mask(o.shape, u, v).astype(np.float32)  # [(y1-y0)*s, (x1-x0)*s]
    cover = inside.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
    # Boxes never overlap, so "over" compositing on black is a plain add.
    img[y0:y1, x0:x1] += cover[..., None] * PALETTE[o.color].astype(np.float32)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def objects_array(objs: Sequence[Obj], max_objects: int = 4) -> np.ndarray:
  """Ground truth as int32 ``[max_objects, 5]`` rows ``(shape, color, x, y, r)``, padded with -1."""
  out = np.full((max_objects, 5), -1, np.int32)
  for i, o in enumerate(objs[:max_objects]):
    out[i] = (o.shape, o.color, o.x, o.y, o.r)
  return out


def objects_from_array(arr: np.ndarray) -> list[Obj]:
  return [Obj(*map(int, row)) for row in np.asarray(arr) if row[0] >= 0]


# ----------------------------------------------------------------------------------------------------------
# Language.


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def object_phrase(count: int, color: int, shape: int) -> str:
  """``a red circle`` / ``an orange square`` / ``two blue triangles``."""
  c = COLORS[color]
  if count == 1:
    return f"{_article(c)} {c} {SHAPES[shape]}"
  return f"{NUMBER_WORDS[count]} {c} {SHAPES[shape]}s"


def join_phrases(parts: Sequence[str]) -> str:
  return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def group_objects(objs: Sequence[Obj]) -> tuple[tuple[int, int, int], ...]:
  """``(count, color, shape)`` groups in order of first appearance."""
  order: list[tuple[int, int]] = []
  counts: dict[tuple[int, int], int] = {}
  for o in objs:
    key = (o.color, o.shape)
    if key not in counts:
      order.append(key)
      counts[key] = 0
    counts[key] += 1
  return tuple((counts[k], k[0], k[1]) for k in order)


def relation_of(a: Obj, b: Obj) -> str:
  """Where ``a`` is relative to ``b``: dominant axis of the centre offset (ties go to left/right)."""
  dx, dy = a.x - b.x, a.y - b.y
  if abs(dx) >= abs(dy):
    return "to the left of" if dx < 0 else "to the right of"
  return "above" if dy < 0 else "below"


def caption_of(spec: PromptSpec) -> str:
  """The caption string of a :class:`PromptSpec`."""
  if spec.relation is not None:
    a, b = spec.groups
    return f"a photo of {object_phrase(*a)} {spec.relation} {object_phrase(*b)}"
  return "a photo of " + join_phrases([object_phrase(*g) for g in spec.groups])


def describe(objs: Sequence[Obj], rng: np.random.Generator, relational_prob: float = 0.5) -> PromptSpec:
  """Caption meaning for a scene; 2-object scenes with distinct descriptors may get a relation."""
  if len(objs) == 2 and (objs[0].color, objs[0].shape) != (objs[1].color, objs[1].shape) \
      and rng.random() < relational_prob:
    a, b = (objs[0], objs[1]) if rng.random() < 0.5 else (objs[1], objs[0])
    return PromptSpec(((1, a.color, a.shape), (1, b.color, b.shape)), relation_of(a, b))
  return PromptSpec(group_objects(objs))


_WORD_TO_NUM = {w: i for i, w in enumerate(NUMBER_WORDS)}
_PHRASE_RE = re.compile(r"^(a|an|zero|one|two|three|four|five|six|seven|eight) (\w+) (\w+?)(s?)$")


def _parse_phrase(text: str) -> tuple[int, int, int]:
  m = _PHRASE_RE.match(text.strip())
  if not m or m.group(2) not in COLORS or m.group(3) not in SHAPES:
    raise ValueError(f"not an object phrase of the procedural grammar: {text!r}")
  count = 1 if m.group(1) in ("a", "an") else _WORD_TO_NUM[m.group(1)]
  return count, COLORS.index(m.group(2)), SHAPES.index(m.group(3))


def parse_caption(caption: str) -> PromptSpec:
  """Inverse of :func:`caption_of` (raises ``ValueError`` outside the grammar)."""
  text = caption.strip().rstrip(".")
  if not text.startswith("a photo of "):
    raise ValueError(f"caption outside the procedural grammar: {caption!r}")
  text = text[len("a photo of "):]
  for rel in RELATIONS:
    if f" {rel} " in text:
      a, b = text.split(f" {rel} ")
      return PromptSpec((_parse_phrase(a), _parse_phrase(b)), rel)
  head, _, last = text.rpartition(" and ")
  parts = ([p for p in head.split(", ")] + [last]) if head else [last]
  return PromptSpec(tuple(_parse_phrase(p) for p in parts))


def vqa_pair(objs: Sequence[Obj], rng: np.random.Generator) -> tuple[str, str, str]:
  """One ``(question, answer, kind)`` about the scene, the kind drawn uniformly among applicable kinds."""
  shapes = [o.shape for o in objs]
  colors = [o.color for o in objs]
  kinds = ["count_shape", "count_objects", "exists"]
  if any(shapes.count(s) == 1 for s in set(shapes)):
    kinds.append("color_of")
  if any(colors.count(c) == 1 for c in set(colors)):
    kinds.append("shape_of")
  unique = [o for o in objs if sum((p.color, p.shape) == (o.color, o.shape) for p in objs) == 1]
  if len(unique) >= 2:
    kinds.append("relation")
  kind = kinds[int(rng.integers(len(kinds)))]
  if kind == "count_shape":
    s = int(rng.integers(len(SHAPES)))
    return f"How many {SHAPES[s]}s are there?", NUMBER_WORDS[shapes.count(s)], kind
  if kind == "count_objects":
    return "How many objects are there?", NUMBER_WORDS[len(objs)], kind
  if kind == "exists":
    present = rng.random() < 0.5
    if present:
      o = objs[int(rng.integers(len(objs)))]
      c, s = o.color, o.shape
    else:
      absent = [(c, s) for c in range(len(COLORS)) for s in range(len(SHAPES)) if (c, s) not in
                set(zip(colors, shapes))]
      c, s = absent[int(rng.integers(len(absent)))]
    return f"Is there {object_phrase(1, c, s)}?", "yes" if present else "no", kind
  if kind == "color_of":
    cand = sorted(s for s in set(shapes) if shapes.count(s) == 1)
    s = cand[int(rng.integers(len(cand)))]
    return f"What color is the {SHAPES[s]}?", COLORS[colors[shapes.index(s)]], kind
  if kind == "shape_of":
    cand = sorted(c for c in set(colors) if colors.count(c) == 1)
    c = cand[int(rng.integers(len(cand)))]
    return f"What shape is the {COLORS[c]} object?", SHAPES[shapes[colors.index(c)]], kind
  i, j = rng.choice(len(unique), size=2, replace=False)
  a, b = unique[int(i)], unique[int(j)]
  rel, truth = relation_of(a, b), rng.random() < 0.5
  asked = rel if truth else OPPOSITE[rel]
  return f"Is the {a.name} {asked} the {b.name}?", "yes" if truth else "no", kind


# ----------------------------------------------------------------------------------------------------------
# Samples (pure functions of seed and index).


def t2i_sample(seed: int, index: int, cfg: SceneConfig = SceneConfig(), relational_prob: float = 0.5) -> dict:
  """Image + caption: ``image`` uint8 [h, w, 3], ``caption`` str, ``objects`` int32 [4, 5], ``num_objects``."""
  rng = rng_for(seed, "scene", index)
  objs = sample_scene(rng, cfg)
  spec = describe(objs, rng, relational_prob)
  return dict(image=render(objs, cfg), caption=caption_of(spec), objects=objects_array(objs, cfg.max_objects),
              num_objects=np.int32(len(objs)))


def vqa_sample(seed: int, index: int, cfg: SceneConfig = SceneConfig()) -> dict:
  """Image + one question/answer (+ the scene caption): keys of :func:`t2i_sample` plus ``question``,
  ``answer``, ``kind``."""
  rng = rng_for(seed, "vqa", index)
  objs = sample_scene(rng, cfg)
  question, answer, kind = vqa_pair(objs, rng)
  return dict(image=render(objs, cfg), question=question, answer=answer, kind=kind,
              caption=caption_of(PromptSpec(group_objects(objs))),
              objects=objects_array(objs, cfg.max_objects), num_objects=np.int32(len(objs)))


def video_caption(objs: Sequence[Obj], directions: Sequence[int]) -> str:
  return " and ".join(f"{_article(COLORS[o.color])} {o.name} moves {DIRECTIONS[d]}" for o, d in zip(objs, directions))


def parse_video_caption(caption: str) -> list[tuple[int, int, int]]:
  """``[(color, shape, direction)]`` of a clip caption."""
  out = []
  for part in caption.strip().rstrip(".").split(" and "):
    m = re.match(r"^(?:a|an) (\w+) (\w+) moves (\w+)$", part.strip())
    if not m or m.group(1) not in COLORS or m.group(2) not in SHAPES or m.group(3) not in DIRECTIONS:
      raise ValueError(f"not a clip caption of the procedural grammar: {caption!r}")
    out.append((COLORS.index(m.group(1)), SHAPES.index(m.group(2)), DIRECTIONS.index(m.group(3))))
  return out


def video_sample(seed: int, index: int, cfg: SceneConfig = SceneConfig()) -> dict:
  """Moving-shapes clip: ``video`` uint8 [t, h, w, 3], ``caption``, ``objects`` (frame 0) int32 [2, 5],
  ``motions`` int32 [2, 2] rows ``(direction, speed)`` (-1 padded), ``num_objects``."""
  rng = rng_for(seed, "video", index)
  t = cfg.num_frames
  n = int(rng.integers(1, 3))
  lo, hi = cfg.speed_range
  for attempt in range(400):
    if attempt == 200:
      n = 1  # small canvases rarely fit two moving objects: fall back to one (still a pure function)
    objs = sample_scene(rng, cfg, num_objects=n, distinct=True)
    n = len(objs)  # a tiny canvas may not take two objects
    dirs = [int(rng.integers(len(DIRECTIONS))) for _ in objs]
    speeds = [int(rng.integers(lo, hi + 1)) for _ in objs]
    tracks = [[o.moved(DIRECTION_VECTORS[DIRECTIONS[d]][0] * v * k, DIRECTION_VECTORS[DIRECTIONS[d]][1] * v * k)
               for k in range(t)] for o, d, v in zip(objs, dirs, speeds)]
    ok = all(in_frame(tr[k], cfg) for tr in tracks for k in range(t))
    if ok and n == 2:
      ok = all(boxes_apart(tracks[0][k], tracks[1][k], cfg.gap) for k in range(t))
    if ok:
      break
  else:
    raise RuntimeError(f"video rejection sampling failed on a {cfg.size}px canvas")
  frames = np.stack([render([tr[k] for tr in tracks], cfg) for k in range(t)])
  motions = np.full((2, 2), -1, np.int32)
  motions[:n] = np.array(list(zip(dirs, speeds)), np.int32)
  return dict(video=frames, caption=video_caption(objs, dirs), objects=objects_array(objs, 2), motions=motions,
              num_objects=np.int32(n))


def interleaved_sample(seed: int, index: int, cfg: SceneConfig = SceneConfig(), max_images: int = 4) -> dict:
  """Caption + image, then "move the X <dir>" + edited image steps (1 to ``max_images - 1`` steps).

  Keys: ``texts`` list[str] (one per image), ``images`` uint8 [max_images, h, w, 3] (zero padded),
  ``num_images``, ``objects`` int32 [max_images, 4, 5] (scene of each image), ``edits`` int32
  [max_images, 3] rows ``(object index, direction, distance)`` (row 0 and padding = -1).
  """
  rng = rng_for(seed, "interleaved", index)
  steps = int(rng.integers(1, max_images))
  # Distinct descriptors so that "the red circle" is unambiguous; at most 3 objects leaves room to move.
  objs = sample_scene(rng, dataclasses.replace(cfg, max_objects=min(cfg.max_objects, 3)), distinct=True)
  scenes = [objs]
  texts = [caption_of(PromptSpec(group_objects(objs)))]
  edits = np.full((max_images, 3), -1, np.int32)
  lo, hi = cfg.move_range
  for k in range(steps):
    cur = scenes[-1]
    for _ in range(100):
      i, d, dist = int(rng.integers(len(cur))), int(rng.integers(len(DIRECTIONS))), int(rng.integers(lo, hi + 1))
      vx, vy = DIRECTION_VECTORS[DIRECTIONS[d]]
      o = cur[i].moved(vx * dist, vy * dist)
      if in_frame(o, cfg) and all(boxes_apart(o, p, cfg.gap) for j, p in enumerate(cur) if j != i):
        break
    else:
      break  # nothing can move: stop early (rare, tiny canvases)
    scenes.append([o if j == i else p for j, p in enumerate(cur)])
    texts.append(f"move the {cur[i].name} {DIRECTIONS[d]}")
    edits[k + 1] = (i, d, dist)
  images = np.zeros((max_images, cfg.size, cfg.size, 3), np.uint8)
  objects = np.full((max_images, cfg.max_objects, 5), -1, np.int32)
  for k, sc in enumerate(scenes):
    images[k] = render(sc, cfg)
    objects[k] = objects_array(sc, cfg.max_objects)
  return dict(texts=texts, images=images, num_images=np.int32(len(scenes)), objects=objects, edits=edits)


def text_sample(seed: int, index: int, cfg: SceneConfig = SceneConfig(), num_questions: int = 2) -> dict:
  """Text-only document about a random scene: caption, then ``question answer.`` sentences."""
  rng = rng_for(seed, "text", index)
  objs = sample_scene(rng, cfg)
  parts = [caption_of(describe(objs, rng)) + "."]
  for _ in range(num_questions):
    q, a, _ = vqa_pair(objs, rng)
    parts.append(f"{q} {a}.")
  return dict(text=" ".join(parts))


def text_corpus(seed: int, count: int, cfg: SceneConfig = SceneConfig()) -> list[str]:
  """``count`` text documents mixing captions, VQA, clip captions and edit instructions (tokenizer training)."""
  out = []
  for i in range(count):
    out.append(text_sample(seed, i, cfg)["text"])
    if i % 4 == 0:
      rng = rng_for(seed, "corpus", i)
      objs = sample_scene(rng, cfg, num_objects=int(rng.integers(1, 3)), distinct=True)
      out.append(video_caption(objs, [int(rng.integers(4)) for _ in objs]))
      o = objs[0]
      out.append(f"move the {o.name} {DIRECTIONS[int(rng.integers(4))]}")
  return out


# ----------------------------------------------------------------------------------------------------------
# grain-compatible random-access sources (``grain.MapDataset.source(src)``).


class _Source:
  """Random-access source: ``len`` and ``__getitem__`` of a pure sample function."""

  def __init__(self, seed: int = 0, length: int = 10_000, cfg: SceneConfig = SceneConfig()):
    self.seed, self.length, self.cfg = int(seed), int(length), cfg

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index) -> dict:
    index = int(index)
    if not 0 <= index < self.length:
      raise IndexError(index)
    return self._sample(index)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(seed={self.seed}, length={self.length}, size={self.cfg.size})"

  def _sample(self, index: int) -> dict:
    raise NotImplementedError


class T2ISource(_Source):
  """Text-to-image / captioning pairs (:func:`t2i_sample`)."""

  def __init__(self, seed: int = 0, length: int = 10_000, cfg: SceneConfig = SceneConfig(),
               relational_prob: float = 0.5):
    super().__init__(seed, length, cfg)
    self.relational_prob = relational_prob

  def _sample(self, index: int) -> dict:
    return t2i_sample(self.seed, index, self.cfg, self.relational_prob)


class VQASource(_Source):
  """Image question answering (:func:`vqa_sample`)."""

  def _sample(self, index: int) -> dict:
    return vqa_sample(self.seed, index, self.cfg)


class VideoSource(_Source):
  """Moving-shape clips with motion captions (:func:`video_sample`)."""

  def _sample(self, index: int) -> dict:
    return video_sample(self.seed, index, self.cfg)


class InterleavedSource(_Source):
  """Mixed-modality stories: caption, image, edit instruction, edited image, ... (:func:`interleaved_sample`)."""

  def __init__(self, seed: int = 0, length: int = 10_000, cfg: SceneConfig = SceneConfig(), max_images: int = 4):
    super().__init__(seed, length, cfg)
    self.max_images = max_images

  def _sample(self, index: int) -> dict:
    return interleaved_sample(self.seed, index, self.cfg, self.max_images)


class TextSource(_Source):
  """Text-only documents (:func:`text_sample`)."""

  def _sample(self, index: int) -> dict:
    return text_sample(self.seed, index, self.cfg)
