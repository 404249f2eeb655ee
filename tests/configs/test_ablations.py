"""Ablation configs: every arm builds at every scale and changes only the keys it declares (STYLE.md §6, §8.7)."""
import pytest

from configs.showo import ablations as v1
from configs.showo2 import ablations as v2

MODULES = {"showo2": v2, "showo": v1}
SCALES = ("tiny", "small", "full")


def _arms():
  return [(m, name) for m, mod in MODULES.items() for name in mod.ARMS]


@pytest.mark.parametrize("family,name", _arms())
def test_arm_changes_only_declared_keys(family, name):
  mod = MODULES[family]
  arm = mod.ARMS[name]
  changed_somewhere = False
  for scale in SCALES:
    base = mod.base_config(arm.study, scale)
    cfg = mod.get_config(f"{name},scale={scale}")
    diff = v2.config_diff(base, cfg)
    assert v2.declared_ok(diff, arm.keys), f"{name} ({scale}) changed undeclared keys: {sorted(diff)}"
    changed_somewhere |= bool(diff)
    assert cfg.ablation.arm == name and cfg.ablation.study == arm.study
  # A base arm changes nothing; an arm that declares keys changes one of them at some scale, except the grid
  # point of a sampler grid that coincides with the base settings (e.g. MaskGIT 18 steps, g = 1.75).
  if not arm.keys:
    assert not changed_somewhere, name
  else:
    assert changed_somewhere or mod.STUDIES[arm.study].shared_training, (name, arm.keys)


def test_registry_is_consistent():
  seen = set()
  for mod in MODULES.values():
    assert set(mod.ABLATIONS) == set(mod.ARMS)
    for sname, st in mod.STUDIES.items():
      assert st.arms, sname
      for a in st.arms:
        assert mod.ARMS[a].study == sname
        assert mod.ARMS[a].row
      assert sname not in seen, f"study name {sname} used twice"
      seen.add(sname)
    assert seen >= set(mod.STUDIES)
  names = [n for mod in MODULES.values() for n in mod.ARMS]
  assert len(names) == len(set(names)), "arm names must be unique across model families"
  # The four studies the issue asks to run exist.
  assert {"tab10_fusion", "tab11_cfg_steps", "tab12_stages", "v1_representation"} <= seen


def test_configs_are_locked_and_unknown_arms_fail():
  cfg = v2.get_config("semantic_only,scale=tiny")
  with pytest.raises(AttributeError):
    cfg.not_a_key = 1
  with pytest.raises(ValueError):
    v2.get_config("no_such_arm,scale=tiny")
  with pytest.raises(ValueError):
    v2.get_config("fused,scale=huge")
  with pytest.raises(ValueError):
    v1.get_config("fused,scale=tiny")


def test_showo2_model_switches_reach_the_model_config():
  from showo_jax.train import tasks
  task = tasks.get("showo2")
  fused = task.model_config(v2.get_config("fused,scale=tiny").model)
  proj = task.model_config(v2.get_config("projector_only,scale=tiny").model)
  sem = task.model_config(v2.get_config("semantic_only,scale=tiny").model)
  assert (fused.use_semantic, fused.use_projector) == (True, True)
  assert (proj.use_semantic, proj.use_projector) == (False, True)
  assert (sem.use_semantic, sem.use_projector) == (True, False)
  assert fused.llm.vocab_size == v2.TOY_VOCAB            # the toy BPE's 464 tokens fit
  assert fused.image_latent_dim == fused.flow_head.out_channels == 4 * 4 * 3   # lossless patch latents
  # Full scale keeps the released sizes.
  full = task.model_config(v2.get_config("projector_only,scale=full").model)
  assert full.llm.hidden_size == 1536 and not full.use_semantic


def test_toy_scale_trains_everything_and_fits_the_sequences():
  from showo_jax.data import pipeline, sequence
  cfg = v2.get_config("fused,scale=tiny")
  assert list(cfg.trainable.frozen) == [] and cfg.model.preset == "tiny"
  tok = pipeline.make_tokenizer(cfg.data.tokenizer)
  assert len(tok) <= v2.TOY_VOCAB
  # 32 px, 4x4 patch latents, patch size 1: 64 image tokens; the longest procedural caption fits the T2I
  # text budget and the longest LLaVA "tuning" row fits the stage-2 sequence length.
  mcfg = __import__("showo_jax.train.tasks", fromlist=["get"]).get("showo2").model_config(cfg.model)
  assert mcfg.patch_size == mcfg.flow_head.patch_size == 1 and cfg.loss.transport_seq_len == 65
  budget = sequence.t2i_max_text_len(64, cfg.data.max_seq_length)
  longest = "a photo of four yellow triangles, three orange diamonds, two purple squares and a white circle"
  assert len(tok.encode(longest)) <= budget
  s2 = v2.get_config("und_tokens_base,scale=tiny")
  conv = [{"from": "human", "value": "<image>\nIs the yellow triangle to the left of the purple diamond?"},
          {"from": "gpt", "value": "yes"}]
  row = sequence.build_llava(tok, conv, 64, 1000, stage="tuning")
  assert int((row.tokens != tok.special.pad).sum()) <= s2.data.max_seq_length


def test_tab12_followup_and_tab13_pretrain_configs():
  from showo_jax.train import tasks
  c = v2.get_config("stage1_plus_stage2,scale=tiny")
  f = v2.followup_config(c)
  assert f.data.mmu.format == "llava" and f.data.mmu.stage == "tuning"
  assert f.total_steps == c.followup.total_steps and list(f.trainable.frozen) == []
  assert v2.flatten(f.model) == v2.flatten(c.model)       # same architecture as the stage-1 run
  t = v2.get_config("llm_frozen_first,scale=tiny")
  p = v2.pretrain_config(t)
  assert p.model_family == "lm" and p.total_steps == t.pretrain.lm_steps > 0
  # The text-only warm-up trains exactly the Show-o2 LLM (so its weights initialise the arm).
  llm = tasks.get("lm").model_config(p.model)
  assert llm == tasks.get("showo2").model_config(t.model).llm
  assert set(t.trainable.frozen) >= {"showo"}


def test_v1_representations_set_the_model_input():
  from showo_jax.eval import v1_toy
  cfgs = {n: v1.get_config(f"{n},scale=tiny") for n in v1.REPRESENTATIONS}
  m = {n: v1_toy.model_config(c) for n, c in cfgs.items()}
  assert not m["discrete_magvit"].w_clip_vit
  assert m["continuous_magvit"].w_clip_vit and m["continuous_magvit"].clip_hidden_size == v1_toy.TOY_CODEBOOK_BITS
  assert m["clip_vit"].w_clip_vit and m["clip_vit"].clip_hidden_size == 32
  assert {x.num_vq_tokens for x in m.values()} == {16}    # 32 px: 4x4 MAGVIT codes, 4x4 ViT patches
  assert m["discrete_magvit"].vocab_size == 512 + 10 + 64 + 1


def test_studies_with_missing_features_are_refused():
  """A study that names a missing feature (``needs``) is refused at toy scale before anything trains."""
  import dataclasses
  from launch import ablate
  mod, st = ablate.registry()["flow_weight"]
  blocked = dataclasses.replace(st, needs="a feature this test pretends is missing")
  with pytest.raises(RuntimeError, match="cannot run yet"):
    ablate.Sweep("flow_weight", "tiny", "/nonexistent/results", "/nonexistent/work").run(study=(mod, blocked))


def test_latent_caching_and_v1_maskgit_are_runnable():
  """Both build on the runner paths that now exist: the cached arm reads ArrayRecords the runner writes; the
  MaskGIT study trains the v1 T2I recipe (``model_family = "showo"``) and samples it (suite ``t2i``)."""
  from launch import ablate
  _, lc = ablate.registry()["latent_caching"]
  _, mg = ablate.registry()["v1_maskgit"]
  assert not lc.needs and not mg.needs
  cached = v2.get_config("latents_cached,scale=tiny")
  assert cached.data.latents.source == "cached" and cached.data.t2i.source == "arrayrecord"
  assert cached.model.overrides["image_latent_dim"] == 16            # the Wan VAE's channels, not the toy 48
  assert cached.data.num_records == cached.total_steps * cached.data.t2i.batch_size
  c = v1.get_config("maskgit_t50_g5p0,scale=tiny")
  assert c.model_family == "showo" and c.eval.suite == "t2i"
  assert (c.eval.timesteps, c.eval.guidance_scale) == (50, 5.0)
  keys = {ablate.training_key(ablate.arm_configs("v1_maskgit", "tiny", [a])[a]) for a in mg.arms}
  assert len(keys) == 1                         # every MaskGIT arm shares one training run


def test_attention_mask_study_is_runnable_and_switches_the_mask():
  """The omni-vs-causal study has no missing feature: its causal arm sets the model's ``visual_attention``."""
  from launch import ablate
  from configs.showo2 import ablations as abl
  _, st = ablate.registry()["attention_mask"]
  assert not st.needs
  c = abl.get_config("causal_attention,scale=tiny")
  assert c.model.overrides.visual_attention == "causal"
