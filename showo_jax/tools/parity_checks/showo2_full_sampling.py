"""Parity of the Show-o2 samplers on the ``showo2_full`` fixture: scenarios ``ode`` and ``mmu_infer``.

* ``ode``: ``Sampler.sample_ode(euler, num_steps=4, time_shifting_factor=3)`` driving ``t2i_generate`` with
  ``g = 5`` on the ``cfg`` rows (2 prompts + 2 null rows): the time grid and the state at **every** grid
  point (``samples_all_steps``, both CFG halves: they are identical) plus ``final_cond_half``, atol 1e-4; run
  with and without prefix reuse.
* ``mmu_infer``: the ``inference_mmu.py`` prompt (``text_tokens_a`` = ``[bos] + prefix``,
  ``text_tokens_b`` = ``[boi] [eoi] + suffix``, time token then 16 image tokens between them) built with
  ``sequence.format_mmu_inference`` (reference off-by-one mask), compared on the mask (exact), the spliced
  input embeddings, the fused image embeddings and the prefill logits (atol 1e-4); then greedy decoding with
  the KV cache must reproduce ``greedy_tokens`` exactly.

Called by the lead from ``showo2_full.py``; :func:`run_scenarios` yields ``compare`` results.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from showo_jax import masks
from showo_jax.data import sequence
from showo_jax.sampling import ode, text
from showo_jax.text.qwen_offline import SpecialIds
from showo_jax.tools.parity import compare, load_fixture
from showo_jax.tools.parity_checks import showo2_full

SCENARIOS = ("ode", "mmu_infer")


def special_ids(cfg_json: dict) -> SpecialIds:
  t = cfg_json["token_ids"]
  # The fixture has no LLaVA <image> id; -1 never matches a token.
  return SpecialIds(bos=t["bos_id"], eos=t["eos_id"], boi=t["boi_id"], eoi=t["eoi_id"], img_pad=t["img_pad_id"],
                    vid_pad=t["vid_pad_id"], pad=t["pad_id"], img=-1, bov=t["bov_id"], eov=t["eov_id"])


def ode_scenario(model, cfg_json, inp, out):
  tokens = np.asarray(inp["cfg.text_tokens"])
  mp = np.asarray(inp["cfg.modality_positions"])
  z = np.asarray(inp["ode.z_init"])
  b = tokens.shape[0] // 2
  if not np.array_equal(z[:b], z[b:]):
    raise AssertionError("ode.z_init halves differ; the sampler keeps one copy of the CFG state")
  steps = int(inp["ode.num_steps"])
  g = float(inp["cfg.guidance_scale"])
  cond = ode.Branch(tokens=tokens[:b], target=mp[:b, 0])
  uncond = ode.Branch(tokens=tokens[b:], target=mp[b:, 0])
  noise = jnp.asarray(showo2_full.to_nhwc(z[:b]))
  shift = float(cfg_json["transport"]["time_shifting_factor"])
  for reuse in (True, False):
    tag = "ode" if reuse else "ode.no_prefix_reuse"
    res = ode.sample(model, noise, cond, uncond, num_steps=steps, guidance_scale=g, shift=shift,
                     prefix_reuse=reuse, return_trajectory=True)
    if reuse:
      yield compare("ode.time_grid", res.time_grid, out["ode.time_grid"], atol=1e-7)
    traj = np.moveaxis(np.asarray(res.trajectory), -1, 2)             # [S, b, C, H, W]
    yield compare(f"{tag}.samples_all_steps", np.concatenate([traj, traj], axis=1), out["ode.samples_all_steps"])
    yield compare(f"{tag}.final_cond_half", showo2_full.to_nchw(res.latents), out["ode.final_cond_half"])


def mmu_scenario(model, cfg_json, inp, out):
  sp = special_ids(cfg_json)
  a = np.asarray(inp["mmu_infer.text_tokens_a"])[0]
  bb = np.asarray(inp["mmu_infer.text_tokens_b"])[0]
  if a[0] != sp.bos or bb[0] != sp.boi or bb[1] != sp.eoi:
    raise AssertionError("unexpected mmu_infer token layout")
  lat = jnp.asarray(showo2_full.to_nhwc(np.asarray(inp["mmu_infer.image_latents"])))
  emb, tp = text.visual_inputs(model, lat, 1.0)
  row = sequence.format_mmu_inference(sp, a[1:].tolist(), bb[2:].tolist(), emb.shape[1], reference_offset=True)
  ref_mp = np.asarray(inp["mmu_infer.modality_positions"])[0]
  yield compare("mmu_infer.modality_positions", row.omni_positions, ref_mp, exact=True)
  prompt = text.build_prompt(model, [row], sp.pad, emb[:, None], tp[:, None])
  ref_mask = np.asarray(out["mmu_infer.attention_mask"])[0, 0] == 0
  length = ref_mask.shape[0]
  yield compare("mmu_infer.attention_mask", masks.dense(prompt.mask, length)[0], ref_mask, exact=True)
  yield compare("mmu_infer.image_embeds", emb, out["mmu_infer.image_embeds"])
  yield compare("mmu_infer.input_embeds", prompt.embeds, out["mmu_infer.input_embeds"])
  greedy = np.asarray(out["mmu_infer.greedy_tokens"])
  gen = text.generate(model, prompt, max_new_tokens=int(greedy.shape[0]), stop_tokens=(sp.eos,),
                      sampling=text.Sampling(), pad_id=sp.pad, return_prefill_logits=True)
  yield compare("mmu_infer.prefill_logits", gen.prefill_logits, out["mmu_infer.prefill_logits"])
  yield compare("mmu_infer.greedy_tokens", np.asarray(gen.row(0)), greedy, exact=True)


def run_scenarios(fixture_dir: str, scenarios=SCENARIOS, **policy):
  """Yield ``compare`` results of the sampler scenarios (``ode``, ``mmu_infer``) of ``showo2_full``."""
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  _, model = showo2_full.build(cfg_json, sd, **policy)
  for s in scenarios:
    if s == "ode":
      yield from ode_scenario(model, cfg_json, inp, out)
    elif s == "mmu_infer":
      yield from mmu_scenario(model, cfg_json, inp, out)
    else:
      raise ValueError(f"unknown sampler scenario {s!r}")


run = run_scenarios
