"""Reconstruction quality of the image codecs (PSNR), on held-out procedural and real images (no upstream counterpart).

Codecs: the Wan2.1 VAE (Show-o2; posterior mean, decode), MAGVIT-v2 (Show-o v1; LFQ codes, decode) and the
toy ``patch`` latent space (``transforms.PatchLatents``). Images:

* ``procedural`` — held-out scenes of ``data/procedural.py`` (black background, saturated shapes);
* ``real`` — photographs shipped inside installed wheels (DATA.md §2): ``skimage.data`` (astronaut, chelsea,
  coffee, rocket, immunohistochemistry, hubble_deep_field) when scikit-image is installed, plus
  scikit-learn's ``china.jpg``/``flower.jpg`` when scikit-learn is; nothing is downloaded. Each is resized
  (shorter side) and centre-cropped to the evaluation resolution.

``psnr`` is computed on uint8 images over all pixels and channels: ``10·log10(255² / MSE)`` (∞ when equal,
capped at 100 dB).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from showo_jax.data import procedural as P
from showo_jax.data import transforms

EVAL_SEED = 20_250
SKIMAGE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
  mse = float(np.mean((a - b) ** 2))
  return 100.0 if mse == 0 else min(100.0, 10.0 * np.log10(255.0 ** 2 / mse))


def procedural_images(n: int, size: int, seed: int = EVAL_SEED) -> np.ndarray:
  cfg = P.SceneConfig(size=size)
  return np.stack([P.t2i_sample(seed + 7, i, cfg)["image"] for i in range(n)])


def real_images(size: int) -> tuple[np.ndarray, list[str]]:
  """Real photographs available offline (see the module docstring); ``([n, size, size, 3], names)``."""
  imgs, names = [], []
  try:
    import skimage.data as skd
    for name in SKIMAGE_IMAGES:
      try:
        imgs.append(transforms.resize_center_crop(transforms.decode_image(getattr(skd, name)()), size))
        names.append(f"skimage.{name}")
      except Exception:  # noqa: BLE001 - a loader that needs the network fails offline; skip it
        continue
  except ImportError:
    pass
  try:
    from sklearn.datasets import load_sample_images
    data = load_sample_images()
    for fname, img in zip(data.filenames, data.images):
      imgs.append(transforms.resize_center_crop(np.asarray(img, np.uint8), size))
      names.append(f"sklearn.{fname.rsplit('/', 1)[-1]}")
  except ImportError:
    pass
  if not imgs:
    return np.zeros((0, size, size, 3), np.uint8), []
  return np.stack(imgs), names


def evaluate(roundtrip: Callable[[np.ndarray], np.ndarray], size: int, *, n_procedural: int = 32,
             batch_size: int = 8, seed: int = EVAL_SEED) -> dict:
  """Mean PSNR of ``roundtrip`` (uint8 ``[b, h, w, 3]`` → uint8) on both image sets (``nan`` if a set is empty)."""
  out = {}
  sets = {"procedural": procedural_images(n_procedural, size, seed)}
  real, names = real_images(size)
  sets["real"] = real
  for key, imgs in sets.items():
    vals = []
    for a in range(0, len(imgs), batch_size):
      chunk = imgs[a:a + batch_size]
      rec = roundtrip(chunk)
      vals += [psnr(x, y) for x, y in zip(chunk, rec)]
    out[f"psnr_{key}"] = float(np.mean(vals)) if vals else float("nan")
    out[f"n_{key}"] = len(vals)
  out["real_images"] = names
  return out


def codec_roundtrip(codec) -> Callable[[np.ndarray], np.ndarray]:
  """``eval.runs.LatentCodec`` (patch latents or the Wan VAE)."""
  return lambda imgs: codec.decode(codec.encode(imgs))


def magvit_roundtrip(magvit) -> Callable[[np.ndarray], np.ndarray]:
  """MAGVIT-v2: pixels → LFQ codes → pixels (what Show-o v1 generates from)."""
  import jax.numpy as jnp
  from flax import nnx
  from showo_jax.models import magvit2

  @nnx.jit
  def rt(m, x):
    _, codes = m.encode(x)
    side = int(round(codes.shape[1] ** 0.5))
    return magvit2.to_uint8(m.decode_code(codes, (side, side)))

  return lambda imgs: np.asarray(rt(magvit, jnp.asarray(transforms.to_unit_range(np.asarray(imgs)))))


def evaluate_codecs(codecs: dict[str, Callable[[np.ndarray], np.ndarray]], size: int, **kw) -> dict:
  return {name: evaluate(fn, size, **kw) for name, fn in codecs.items()}


def default_codecs(names: Sequence[str] = ("patch",), *, vae_path: str = "", magvit_path: str = "",
                   patch: int = 4, channels: int = 16, resolution: int = 64) -> dict:
  """Codecs by name: ``patch`` (toy), ``wan_vae`` (converted weights at ``vae_path``, else the random tiny
  preset: a smoke test, not a quality number), ``magvit`` (same with ``magvit_path``)."""
  from flax import nnx
  from showo_jax.eval.runs import LatentCodec
  out = {}
  for name in names:
    if name == "patch":
      out[name] = codec_roundtrip(LatentCodec("patch", resolution, patch=patch, channels=channels))
    elif name == "wan_vae":
      from showo_jax.models import wan_vae
      vae = wan_vae.WanVAE((wan_vae.WanVAEConfig.wan2_1 if vae_path else wan_vae.WanVAEConfig.tiny)(),
                           rngs=nnx.Rngs(0))
      if vae_path:
        from safetensors.numpy import load_file
        from showo_jax.convert import common
        common.load_into(vae, load_file(vae_path))
      out[name if vae_path else "wan_vae_random_tiny"] = codec_roundtrip(LatentCodec("vae", resolution, vae=vae))
    elif name == "magvit":
      from showo_jax.models import magvit2
      m = magvit2.MAGVITv2((magvit2.MAGVITv2Config.magvitv2 if magvit_path else magvit2.MAGVITv2Config.tiny)(),
                           rngs=nnx.Rngs(0))
      if magvit_path:
        from safetensors.numpy import load_file
        from showo_jax.convert import common
        common.load_into(m, load_file(magvit_path))
      out[name if magvit_path else "magvit_random_tiny"] = magvit_roundtrip(m)
    else:
      raise ValueError(f"unknown codec {name!r}: patch | wan_vae | magvit")
  return out
