"""Every experiment config builds (full size and runlocal), is locked, and carries the reference recipe."""
import importlib

import pytest
from flax import nnx

from configs import common
from showo_jax.train import optim, tasks
from showo_jax.train import state as state_lib

# The stage configs (ablations.py has its own argument scheme and tests/configs/test_ablations.py).
SHOWO2 = ["base", "stage1", "stage1a", "stage1b", "stage2", "stage2a", "stage2b", "stage2c", "video", "mixed"]
MODULES = [f"configs.showo2.{n}" for n in SHOWO2] + ["configs.lm"]


def _get(mod, arg):
  return importlib.import_module(mod).get_config(arg)


@pytest.mark.parametrize("mod", MODULES)
@pytest.mark.parametrize("arg", ["", "size=7b", "runlocal", "size=7b,runlocal"])
def test_builds_and_is_locked(mod, arg):
  c = _get(mod, arg)
  assert c.is_locked
  with pytest.raises(AttributeError):
    c.optim.learning_rate = 1.0          # typo of optim.lr: unknown keys are errors
  with pytest.raises(AttributeError):
    c.no_such_block = 1
  c.optim.lr = 3e-5                      # known keys stay assignable (--config.optim.lr=...)
  task = tasks.get(c.model_family)
  mcfg = task.model_config(c.model)
  if "runlocal" in arg:
    assert c.total_steps == 2 and c.model.preset == "tiny" and c.mesh.num_devices == 1


def test_parse_arg_is_strict():
  a = common.parse_arg("size=7b,runlocal", size="1.5b", runlocal=False)
  assert a.size == "7b" and a.runlocal is True
  with pytest.raises(ValueError, match="unknown config argument"):
    common.parse_arg("sise=7b", size="1.5b", runlocal=False)
  with pytest.raises(ValueError):
    common.parse_arg("runlocal=maybe", size="1.5b", runlocal=False)
  with pytest.raises(ValueError, match="size"):
    _get("configs.showo2.stage1", "size=3b")


def test_reference_recipe_values():
  s1a, s1b = _get("configs.showo2.stage1a", ""), _get("configs.showo2.stage1b", "")
  assert list(s1a.trainable.frozen) == ["image_embedder_und", "und_trans", "showo", "position_embedding"]
  assert (s1a.loss.ntp_coeff, s1a.loss.flow_coeff, s1a.optim.lr) == (0.2, 1.0, 1e-4)
  assert (s1a.optim.schedule.name, s1a.optim.schedule.warmup_steps, s1a.total_steps, s1a.seed) == \
      ("constant_with_warmup", 2000, 150_000, 10086)
  assert (s1a.data.t2i.batch_size, s1a.data.mmu.batch_size, s1a.data.mmu.format) == (6, 2, "caption")
  assert (s1b.optim.schedule.warmup_steps, s1b.total_steps, s1b.seed) == (0, 40_000, 10000)
  assert s1a.loss.transport_seq_len == 730 and s1a.data.max_seq_length == 1024 and s1a.data.resolution == 432
  s2a, s2b, s2c = (_get(f"configs.showo2.stage2{x}", "") for x in "abc")
  assert "fusion_proj" not in " ".join(s2a.trainable.frozen) and "diffusion" in s2a.trainable.frozen
  assert list(s2b.trainable.frozen) == [] and list(s2c.trainable.frozen) == []
  assert {g: s2a.optim.groups[g].lr for g in ("ve", "proj", "showo")} == {"ve": 5e-5, "proj": 5e-5, "showo": 5e-5}
  assert {g: s2b.optim.groups[g].lr for g in ("ve", "proj", "showo")} == {"ve": 2e-6, "proj": 1e-5, "showo": 1e-5}
  assert (s2a.optim.schedule.name, s2a.optim.schedule.warmup_ratio, s2a.total_steps) == ("cosine", 0.03, 0)
  assert [s.data.mmu.stage for s in (s2a, s2b, s2c)] == ["pre-training", "pre-training-1-5", "tuning"]
  assert s2c.data.mmu.system_prompt == "system\nYou are a helpful assistant.<|im_end|>" and s2c.seed == 1008
  assert (s2a.data.t2i.batch_size, s2a.data.mmu.batch_size, s2a.data.t2i.min_res) == (4, 4, 512)
  s2c7 = _get("configs.showo2.stage2c", "size=7b")
  assert (s2c7.data.t2i.batch_size, s2c7.data.mmu.batch_size, s2c7.model.preset) == (2, 2, "showo2_7b")
  s1a7 = _get("configs.showo2.stage1a", "size=7b")
  assert list(s1a7.init.params_not_load) == ["image_embedder_gen", "showo", "fusion_proj", "diff_proj",
                                             "time_embed_proj"]
  mixed = _get("configs.showo2.mixed", "")
  assert (mixed.data.mixture, mixed.data.interleaved.batch_size, mixed.loss.clean_prefix_prob) == ("sequential", 2, 0.7)


def _top_level(names):
  return sorted({n.split(".")[0] for n in names})


def test_trainable_sets_and_groups_at_real_size():
  """Spec §9.3 'effective trainables', on the abstract 1.5B model (no memory)."""
  c1, c2a, c2b = (_get(f"configs.showo2.{s}", "") for s in ("stage1", "stage2a", "stage2b"))
  task = tasks.get("showo2")
  mcfg = task.model_config(c1.model)
  abstract = nnx.eval_shape(lambda: task.build(mcfg, nnx.Rngs(0)))
  lay1 = state_lib.Layout.of(abstract, optim.frozen_filter(c1.trainable))
  assert _top_level(lay1.templates["params"]) == ["diff_proj", "diffusion_head_a", "diffusion_head_b",
                                                  "fusion_proj", "image_embedder_gen", "time_embed",
                                                  "time_embed_proj"]
  assert _top_level(lay1.templates["frozen"]) == ["image_embedder_und", "position_embedding", "showo", "und_trans"]
  lay2a = state_lib.Layout.of(abstract, optim.frozen_filter(c2a.trainable))
  assert _top_level(lay2a.templates["params"]) == ["fusion_proj", "time_embed"]
  opt = optim.build(c2a.optim, list(lay2a.templates["params"]), 100)
  assert {_top_level([n])[0]: g for n, g in opt.labels.items()} == {"fusion_proj": "proj",
                                                                    "time_embed": optim.NO_GROUP}
  lay2b = state_lib.Layout.of(abstract, optim.frozen_filter(c2b.trainable))
  opt = optim.build(c2b.optim, list(lay2b.templates["params"]), 100)
  no_group = _top_level([n for n, g in opt.labels.items() if g == optim.NO_GROUP])
  assert no_group == ["time_embed"]
  assert lay1.num_params() == lay2b.num_params("params")
