"""Evaluation suites: checker-based scoring separates good from bad samples; launch.eval on a random checkpoint;
the ablation sweep's per-arm markers and resume."""
import json
import os
import types

import numpy as np
import pytest

from showo_jax.data import procedural as P
from showo_jax.eval import mmu, recon, t2i


# ------------------------------------------------------------------------------------------ scoring (pure)
@pytest.mark.parametrize("size", [32, 64])
def test_geneval_scoring_separates_good_and_bad_images(size):
  prompts = t2i.geneval_prompts(6)
  assert [p.kind for p in prompts] == [k for k in t2i.PROMPT_KINDS for _ in range(6)]
  assert all(P.parse_caption(p.caption) == p.spec for p in prompts)
  good = [t2i.render_prompt(p.spec, size, seed=i) for i, p in enumerate(prompts)]
  ok = t2i.evaluate_t2i(good, prompts)
  assert ok["overall"] == 1.0 and ok["exact"] == 1.0 and ok["extra_objects"] == 0.0
  assert all(ok[f"kind/{k}"] == 1.0 for k in t2i.PROMPT_KINDS)
  # Known-bad: every image scored against another prompt (a rotation by one kind block), or blank images.
  bad = t2i.evaluate_t2i(good[6:] + good[:6], prompts)
  assert bad["overall"] < 0.35 and bad["exact"] < 0.1
  blank = t2i.evaluate_t2i([np.zeros((size, size, 3), np.uint8)] * len(prompts), prompts)
  assert blank["overall"] == 0.0
  noise = np.random.default_rng(0).integers(0, 256, (len(prompts), size, size, 3)).astype(np.uint8)
  assert t2i.evaluate_t2i(list(noise), prompts)["exact"] == 0.0


def test_prompt_sets_are_deterministic_and_held_out():
  a, b = t2i.geneval_prompts(4), t2i.geneval_prompts(4)
  assert [p.caption for p in a] == [p.caption for p in b]
  assert [p.caption for p in t2i.geneval_prompts(4, seed=1)] != [p.caption for p in a]
  caps = t2i.video_prompts(5)
  assert all(len(P.parse_video_caption(c)) in (1, 2) for c in caps)


def test_caption_and_vqa_scoring():
  pairs = mmu.caption_set(12, size=64)
  imgs = [p[0] for p in pairs]
  right = mmu.caption_accuracy([p[1] for p in pairs], imgs)
  assert right == {"exact": 1.0, "object_f1": 1.0, "parse_rate": 1.0, "n": 12}
  wrong = mmu.caption_accuracy([p[1] for p in pairs[1:] + pairs[:1]], imgs)
  assert wrong["exact"] < 0.3 and wrong["parse_rate"] == 1.0
  garbage = mmu.caption_accuracy(["<|file_sep|> fo fo"] * 12, imgs)
  assert garbage["exact"] == 0.0 and garbage["parse_rate"] == 0.0
  items = mmu.vqa_set(20, size=32)
  assert mmu.score_vqa([it.answer for it in items], items)["accuracy"] == 1.0
  assert mmu.score_vqa(["Four." if it.answer != "four" else "no" for it in items], items)["accuracy"] == 0.0
  vid = mmu.video_qa_set(3, size=32)
  assert all(it.answer in P.DIRECTIONS and it.image.shape == (8, 32, 32, 3) for it in vid)


def test_reconstruction_psnr():
  img = P.t2i_sample(0, 0, P.SceneConfig(size=32))["image"]
  assert recon.psnr(img, img) == 100.0
  noisy = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
  assert recon.psnr(img, noisy) == pytest.approx(10 * np.log10(255 ** 2 / np.mean((img.astype(float) - noisy) ** 2)))
  # The toy patch codec with the VAE's 16 channels keeps 16 of the 48 values of a 4x4x3 patch: the black
  # background decodes to patch noise (why the toy ablations use 48 channels, which is lossless).
  lossy = recon.evaluate(recon.default_codecs(("patch",), resolution=32, channels=16)["patch"], 32, n_procedural=4)
  r = recon.evaluate(recon.default_codecs(("patch",), resolution=32, channels=48)["patch"], 32, n_procedural=4)
  assert lossy["psnr_procedural"] < 15.0 and lossy["psnr_real"] < r["psnr_real"]
  assert r["psnr_procedural"] > 50.0 and r["psnr_real"] > 45.0
  try:
    import skimage  # noqa: F401
    assert r["n_real"] >= 4 and all(n.startswith("skimage.") or n.startswith("sklearn.") for n in r["real_images"])
  except ImportError:
    assert r["n_real"] == 0


def test_user_benchmark_file_hooks(tmp_path):
  from PIL import Image
  meta = tmp_path / "evaluation_metadata.jsonl"
  rows = [{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
          {"tag": "counting", "include": [{"class": "dog", "count": 2}], "prompt": "a photo of two dogs"}]
  meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
  items = t2i.load_prompts(str(meta))
  assert [it["prompt"] for it in items] == ["a photo of a cat", "a photo of two dogs"]
  imgs = [np.full((8, 8, 3), k * 40, np.uint8) for k in range(4)]
  t2i.write_geneval_layout(str(tmp_path / "gen"), items, imgs, per_prompt=2)
  assert json.loads((tmp_path / "gen" / "00001" / "metadata.jsonl").read_text()) == rows[1]
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "gen" / "00001" / "samples" / "0001.png")), imgs[3])
  dpg = tmp_path / "prompts"
  dpg.mkdir()
  (dpg / "b.txt").write_text("two red apples\n")
  (dpg / "a.txt").write_text("a blue car")
  items = t2i.load_prompts(str(dpg))
  assert [(it["name"], it["prompt"]) for it in items] == [("a", "a blue car"), ("b", "two red apples")]
  t2i.write_images_by_name(str(tmp_path / "dpg_out"), items, imgs[:2])
  assert sorted(os.listdir(tmp_path / "dpg_out")) == ["a.png", "b.png"]
  # LLaVA-style QA JSON with images under a root.
  Image.fromarray(P.t2i_sample(0, 0, P.SceneConfig(size=32))["image"]).save(tmp_path / "img0.png")
  qa = [{"image": "img0.png", "conversations": [{"from": "human", "value": "<image>\nHow many objects are there?"},
                                                {"from": "gpt", "value": "two"}]}]
  (tmp_path / "qa.json").write_text(json.dumps(qa))
  items = mmu.load_llava_eval(str(tmp_path / "qa.json"), str(tmp_path))
  assert items[0].question == "How many objects are there?" and items[0].answer == "two"
  assert items[0].image.shape == (32, 32, 3)


# ------------------------------------------------------------------------------------------ launch.eval
def _save_random_checkpoint(workdir):
  from configs.showo2 import ablations
  from showo_jax.train import loop
  cfg = ablations.get_config("fused,scale=tiny")
  with cfg.unlocked():
    cfg.data.num_records = 64
  trainer = loop.Trainer(cfg, workdir)
  try:
    state = trainer.fresh_state()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(loop.config_to_json(cfg), f)
    trainer.save(state, 0, force=True)
    trainer.ckpt.wait()
    return cfg, {k: np.asarray(v) for k, v in state.params.items()}
  finally:
    trainer.close()


def test_launch_eval_on_a_random_checkpoint_writes_valid_json(tmp_path):
  from launch import eval as launch_eval
  from showo_jax.convert import common
  from showo_jax.eval import runs
  wd = str(tmp_path / "run")
  _, params = _save_random_checkpoint(wd)
  run = runs.load_run(wd)
  assert run.step == 0 and run.family == "showo2" and run.num_image_tokens == 64
  flat = common.export_flat(run.model)
  assert set(params) <= set(flat)
  for k in ("showo.model.embed_tokens.embedding", sorted(k for k in params if k.startswith("fusion_proj"))[0]):
    np.testing.assert_array_equal(flat[k], params[k])
  out = str(tmp_path / "eval.json")
  launch_eval.evaluate(wd, "heldout", json_path=out, settings=launch_eval._parse(["num_heldout=4", "batch_size=4"]))
  doc = json.load(open(out))          # strict JSON (NaN would not parse back as a number)
  assert doc["suite"] == "heldout" and doc["step"] == 0 and doc["family"] == "showo2"
  m = doc["metrics"]
  assert set(m) >= {"heldout_flow", "heldout_text_loss", "heldout_text_ppl", "heldout_caption_nll"}
  # An untrained model: text loss near log(vocab), flow MSE of order 1 per element (target x1 - x0).
  assert 0.5 * np.log(512) < m["heldout_text_loss"] < 2 * np.log(512)
  assert 0.3 < m["heldout_flow"] < 20.0
  assert doc["settings"]["num_heldout"] == 4


# ------------------------------------------------------------------------------------------ sweep resume
def _lm_arms():
  from configs import common, lm
  from configs.showo2.ablations import Arm, Study

  def lr_hi(c):
    c.optim.lr = 1e-3
    return c

  def make(fn=None):
    c = lm.build(common.parse_arg("size=1.5b", size="1.5b", runlocal=False))
    c = common.runlocal(c)
    c.data.num_records = 64
    c.log.tensorboard = False
    return fn(c) if fn else c

  arms = {"lr_base": Arm("lr_base", "lm_lr", "base LR", (), lambda c: c),
          "lr_hi": Arm("lr_hi", "lm_lr", "10x LR", ("optim.lr",), lr_hi)}
  st = Study("lm_lr", "test", "LR of a tiny text-only model", "lm", tuple(arms), ("heldout_text_loss",),
             suite="heldout")
  mod = types.SimpleNamespace(ARMS=arms, STUDIES={"lm_lr": st})
  cfgs = {"__base__": make(), "lr_base": common.lock(make()), "lr_hi": common.lock(make(lr_hi))}
  return mod, st, cfgs


def test_sweep_markers_and_resume(tmp_path):
  from launch import ablate
  from showo_jax.eval import runs, suites
  from showo_jax.train import loop
  mod, st, cfgs = _lm_arms()
  calls = []
  state = {"kill": True}

  def train_fn(cfg, wd):
    calls.append(cfg.optim.lr)
    if cfg.optim.lr == 1e-3 and state["kill"]:
      state["kill"] = False
      loop.run(cfg, wd, num_steps=1)           # one of two steps, checkpointed, then the sweep dies
      raise KeyboardInterrupt("killed")
    return ablate.train(cfg, wd)

  def eval_fn(cfg, wd, samples, study):
    return suites.run_suite("heldout", runs.load_run(wd), overrides=dict(num_heldout=4, batch_size=4))

  sweep = ablate.Sweep("lm_lr", "tiny", str(tmp_path / "results"), str(tmp_path / "work"), train_fn=train_fn,
                       eval_fn=eval_fn)
  with pytest.raises(KeyboardInterrupt):
    sweep.run(study=(mod, st), configs=cfgs)
  assert sweep.done("lr_base") and not sweep.done("lr_hi")
  assert calls == [cfgs["lr_base"].optim.lr, 1e-3]
  sweep.run(study=(mod, st), configs=cfgs)          # the re-run: lr_base skipped, lr_hi resumes at step 1
  assert calls == [cfgs["lr_base"].optim.lr, 1e-3, 1e-3]
  hi = json.load(open(sweep.arm_path("lr_hi")))
  inv = hi["train"]["main"]["invocations"]
  assert hi["complete"] and [(i["start_step"], i["final_step"]) for i in inv] == [(1, 2)]
  assert inv[0]["origin"].startswith("resumed")
  assert hi["diff"] == {"optim.lr": [cfgs["lr_base"].optim.lr, 1e-3]}
  assert np.isfinite(hi["eval"]["metrics"]["heldout_text_loss"])
  table = open(os.path.join(sweep.out, "README.md")).read()
  assert "| lr_base | (base) | 2 |" in table and "| lr_hi | optim.lr=0.001 | 2 |" in table
  assert os.path.exists(os.path.join(sweep.out, "metrics.png"))
  # A third run does nothing.
  sweep.run(study=(mod, st), configs=cfgs)
  assert len(calls) == 3
