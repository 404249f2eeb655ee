"""SigLIP semantic layers and the dual-path pieces: parity, bicubic position resize, branch choice, video folding."""
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from showo_jax.models import fusion
from showo_jax.models.siglip import SiglipConfig
from showo_jax.tools import parity


@pytest.mark.parity
def test_semantic_layers_fixture_parity(fixtures_dir):
  status, comps = parity.run_fixture("showo2_semantic_layers", os.path.join(fixtures_dir, "showo2_semantic_layers"))
  assert status == "ok", status
  assert len(comps) == 6  # loop and scan: embeddings, normalised features, distillation loss
  bad = [(c.name, c.max_abs) for c in comps if not c.passed]
  assert not bad, bad


def torch_bicubic_reference(img: np.ndarray, out_h: int, out_w: int, a: float = -0.75) -> np.ndarray:
  """Direct per-pixel port of PyTorch's CPU bicubic kernel (align_corners=False), float64, for the test."""
  in_h, in_w = img.shape[:2]

  def coeffs(t):
    c1 = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)]

  def src(i, n_in, n_out):
    s = (n_in / n_out) * (i + 0.5) - 0.5
    i0 = min(math.floor(s), n_in - 1)
    return i0, min(max(s - i0, 0.0), 1.0)

  out = np.zeros((out_h, out_w) + img.shape[2:])
  for y in range(out_h):
    y0, ty = src(y, in_h, out_h)
    wy = coeffs(ty)
    for x in range(out_w):
      x0, tx = src(x, in_w, out_w)
      wx = coeffs(tx)
      acc = 0
      for i in range(4):
        row = img[min(max(y0 - 1 + i, 0), in_h - 1)]
        acc = acc + wy[i] * sum(wx[j] * row[min(max(x0 - 1 + j, 0), in_w - 1)] for j in range(4))
      out[y, x] = acc
  return out


@pytest.mark.parametrize("s,h,w", [(4, 6, 6), (27, 32, 32), (27, 14, 14), (5, 3, 7)])
def test_bicubic_matches_torch_algorithm(s, h, w):
  rng = np.random.default_rng(s * 100 + h)
  table = rng.standard_normal((s * s, 3)).astype(np.float32)
  ours = np.asarray(fusion.interpolate_pos_encoding(jnp.asarray(table), h, w))
  ref = torch_bicubic_reference(table.reshape(s, s, 3).astype(np.float64), h, w).reshape(h * w, 3)
  np.testing.assert_allclose(ours, ref, atol=5e-6)  # float32 weights vs a float64 reference


def test_bicubic_same_size_is_identity():
  table = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(fusion.interpolate_pos_encoding(jnp.asarray(table), 4, 4)), table)


def test_position_branch_is_chosen_by_config_grid():
  table = jnp.asarray(np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32))
  # config grid == table size: added as is (the 432-px checkpoints)
  np.testing.assert_array_equal(np.asarray(fusion.position_embeds(table, (4, 4), (4, 4))), np.asarray(table))
  # ... and another input size fails like upstream instead of silently interpolating
  with pytest.raises(ValueError, match="configured grid"):
    fusion.position_embeds(table, (4, 4), (6, 6))
  # config grid != table size (HQ configs): bicubic from the table to the INPUT grid
  out = fusion.position_embeds(table, (6, 6), (5, 7))
  np.testing.assert_allclose(np.asarray(out), np.asarray(fusion.interpolate_pos_encoding(table, 5, 7)))


def test_video_fold_is_frame_major():
  x = jnp.arange(2 * 3 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 3, 4, 4, 1)
  folded, t = fusion.fold_video(x)
  assert t == 3 and folded.shape == (6, 4, 4, 1)
  np.testing.assert_array_equal(np.asarray(folded[4]), np.asarray(x[1, 1]))
  tokens = jnp.arange(6 * 5 * 2, dtype=jnp.float32).reshape(6, 5, 2)
  un = np.asarray(fusion.unfold_tokens(tokens, 3))
  assert un.shape == (2, 15, 2)
  np.testing.assert_array_equal(un[1, 5:10], np.asarray(tokens[4]))   # sample 1, frame 1
  img, t0 = fusion.fold_video(x[:, 0])
  assert t0 == 0 and fusion.unfold_tokens(tokens, 0) is tokens


def test_patch_embed_row_major_tokens():
  from flax import nnx
  pe = nnx.eval_shape(lambda: fusion.PatchEmbed(2, 3, 2, rngs=nnx.Rngs(0)))
  k = np.zeros((2, 2, 2, 3), np.float32)
  k[0, 1, 1, 0] = 1.0   # output channel 0 reads (a=0, b=1) of input channel 1
  pe.proj.kernel.set_value(jnp.asarray(k))
  pe.proj.bias.set_value(jnp.zeros(3))
  x = np.arange(1 * 4 * 6 * 2, dtype=np.float32).reshape(1, 4, 6, 2)
  tok = np.asarray(pe(jnp.asarray(x)))
  assert tok.shape == (1, 6, 3)
  # token (i, j) row-major over the 2×3 grid sees the real 2×2 patch at (2i, 2j)
  for i in range(2):
    for j in range(3):
      assert tok[0, i * 3 + j, 0] == x[0, 2 * i, 2 * j + 1, 1]


def test_siglip_configs():
  real = SiglipConfig.so400m_patch14_384()
  assert (real.num_hidden_layers, real.head_dim, real.num_positions) == (26, 72, 729)
  hf = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
            image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
  assert SiglipConfig.from_hf(hf) == real
