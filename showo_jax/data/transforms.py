"""Host-side image/video transforms (numpy + PIL) and the toy "patch" latent space.

Reference transforms (``showlab/Show-o@45a5a2d:show-o2/datasets/utils.py``):

* :func:`resize_center_crop` = ``image_transform``: resize the shorter side to ``size`` (bicubic), center
  crop ``size × size`` (T2I, captioning, interleaved, video frames).
* :func:`resize_and_pad` = ``resize_and_pad_image``: aspect-preserving resize of the longer side (PIL's
  default filter), pasted centred on black (LLaVA-style MMU, video understanding).
* :func:`to_unit_range`: uint8 → float32 in ``[-1, 1]`` (``Normalize(0.5, 0.5)``).
* :func:`sample_frames`: ``np.linspace(0, total-1, n, dtype=int)`` frame indices (decord ``force_sample``).

**Patch latents** (:class:`PatchLatents`) are a fixed linear autoencoder for CPU-scale runs where the Wan
VAE would dominate the cost: ``f × f`` pixel patches (``f·f·3`` values in [-1, 1]) are projected by a fixed
seeded orthonormal matrix onto ``channels`` dimensions; decoding applies the transpose (the least-squares
reconstruction). It has the VAE's interface (channels-last latents, spatial ``/f``) so the whole pipeline,
model and sampler run unchanged; real configs use the Wan VAE (on the fly or cached).
"""
from __future__ import annotations

import io

import numpy as np


def decode_image(x) -> np.ndarray:
  """Encoded bytes or an array → uint8 ``[h, w, 3]`` RGB."""
  if isinstance(x, (bytes, bytearray, memoryview)):
    from PIL import Image
    with Image.open(io.BytesIO(bytes(x))) as im:
      return np.asarray(im.convert("RGB"))
  arr = np.asarray(x)
  if arr.ndim == 2:
    arr = np.repeat(arr[..., None], 3, axis=-1)
  if arr.shape[-1] == 4:
    arr = arr[..., :3]
  return arr.astype(np.uint8)


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
  """``Resize(size, bicubic)`` on the shorter side then ``CenterCrop(size)``."""
  h, w = img.shape[:2]
  if (h, w) == (size, size):
    return img
  from PIL import Image
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  im = Image.fromarray(img).resize((nw, nh), Image.BICUBIC)
  top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
  return np.asarray(im.crop((left, top, left + size, top + size)))


def resize_and_pad(img: np.ndarray, size: int) -> np.ndarray:
  """Aspect-preserving resize so the longer side is ``size``, centred on a black ``size × size`` canvas."""
  h, w = img.shape[:2]
  if (h, w) == (size, size):
    return img
  from PIL import Image
  scale = size / max(h, w)
  nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
  im = Image.fromarray(img).resize((nw, nh))
  canvas = np.zeros((size, size, 3), np.uint8)
  top, left = (size - nh) // 2, (size - nw) // 2
  canvas[top:top + nh, left:left + nw] = np.asarray(im)
  return canvas


def to_unit_range(img: np.ndarray) -> np.ndarray:
  """uint8 → float32 ``x/127.5 − 1`` (``ToTensor`` + ``Normalize(0.5, 0.5)``)."""
  return img.astype(np.float32) / 127.5 - 1.0


def from_unit_range(x: np.ndarray) -> np.ndarray:
  """``denorm``: ``clamp((x+1)/2, 0, 1)·255`` truncated to uint8."""
  return (np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(np.uint8)


def sample_frames(num_total: int, num_frames: int) -> np.ndarray:
  return np.linspace(0, num_total - 1, num_frames, dtype=int)


def video_frames(video: np.ndarray, num_frames: int, size: int, pad: bool = False) -> np.ndarray:
  """Uniformly sampled, resized frames uint8 ``[num_frames, size, size, 3]``."""
  idx = sample_frames(video.shape[0], num_frames)
  fn = resize_and_pad if pad else resize_center_crop
  return np.stack([fn(decode_image(video[i]), size) for i in idx])


def posterior_sample(mean: np.ndarray, logvar: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
  """Cached Wan posterior → latent: ``mean + exp(0.5·clamp(logvar, −30, 20))·ε`` (``WanVAE.sample``), or the
  mean when ``rng`` is None (deterministic)."""
  mean = np.asarray(mean, np.float32)
  if rng is None:
    return mean
  std = np.exp(0.5 * np.clip(np.asarray(logvar, np.float32), -30.0, 20.0))
  return (mean + std * rng.standard_normal(mean.shape, dtype=np.float32)).astype(np.float32)


class PatchLatents:
  """Fixed linear "autoencoder": ``f × f × 3`` pixel patches → ``channels`` values (orthonormal rows)."""

  def __init__(self, factor: int = 4, channels: int = 16, seed: int = 0):
    d = factor * factor * 3
    if channels > d:
      raise ValueError(f"patch latents: {channels} channels exceed the {d} values of a {factor}x{factor} patch")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    self.proj = np.ascontiguousarray(q[:, :channels].astype(np.float32))   # [d, c], orthonormal columns
    self.factor, self.channels = factor, channels

  def encode(self, x: np.ndarray) -> np.ndarray:
    """``[..., H, W, 3]`` in [-1, 1] → ``[..., H/f, W/f, c]``."""
    f = self.factor
    *lead, h, w, c = x.shape
    p = x.reshape(*lead, h // f, f, w // f, f, c)
    p = np.moveaxis(p, -4, -3).reshape(*lead, h // f, w // f, f * f * c)
    return (p @ self.proj).astype(np.float32)

  def decode(self, z: np.ndarray) -> np.ndarray:
    """Least-squares inverse: ``[..., h, w, c]`` → ``[..., h·f, w·f, 3]`` in [-1, 1]."""
    f = self.factor
    *lead, h, w, _ = z.shape
    p = np.asarray(z, np.float32) @ self.proj.T
    p = p.reshape(*lead, h, w, f, f, 3)
    return np.clip(np.moveaxis(p, -3, -4).reshape(*lead, h * f, w * f, 3), -1.0, 1.0)
