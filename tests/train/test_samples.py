"""The sample-grid hook: held-out T2I prompts through the flow sampler, decoded, written as PNG (slow: it
compiles the ODE sampler)."""
import numpy as np
import pytest
from PIL import Image

from configs.showo2 import stage1
from showo_jax.train import loop


@pytest.mark.slow
def test_sample_grid_written(tmp_path):
  c = stage1.get_config("runlocal")
  with c.unlocked():
    c.ckpt.every = 0
    c.log.sample_every, c.log.sample_steps, c.log.num_samples = 2, 3, 4
  t = loop.Trainer(c, str(tmp_path))
  try:
    t.train()
  finally:
    t.close()
  grid = np.asarray(Image.open(tmp_path / "samples" / "samples_00000002.png"))
  assert grid.shape == (2 * 34 + 2, 2 * 34 + 2, 3)          # 2×2 grid of 32 px images, 2 px borders
  captions = open(tmp_path / "samples" / "samples_00000002.txt").read().splitlines()
  assert len(captions) == 4 and all(c.startswith("a photo of") for c in captions)
