"""Parity: Show-o v1 (Phi + QK-LayerNorm) — masks, t2i cond/uncond logits, MMU logits, training losses and
hidden states, and the full 4-step MaskGIT run replayed from the recorded torch draws (ids exact)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from showo_jax import maskgit
from showo_jax.convert import showo as convert_showo
from showo_jax.data import prompting_v1
from showo_jax.masks import dense
from showo_jax.models.showo import ShowoConfig
from showo_jax.tools.parity import TIGHT, compare, load_fixture


def _bool_mask(additive):
  return np.asarray(additive)[:, 0] == 0


def run(fixture_dir: str, scan_variants=(False, True)):
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  cfg = ShowoConfig.from_fixture(cfg_json)
  ids = cfg.token_ids
  yield compare("special_token_ids", [ids.as_dict()[k] for k in sorted(cfg_json["special_token_ids"])],
                [cfg_json["special_token_ids"][k] for k in sorted(cfg_json["special_token_ids"])], exact=True)
  yield compare("image_token_offset", cfg.image_token_offset, cfg_json["image_token_offset"], exact=True)
  yield compare("mask_token_id", cfg.mask_token_id, cfg_json["mask_token_id"], exact=True)
  max_seq_length = int(cfg_json["max_text_len"])
  n = cfg.num_vq_tokens

  # ---- masks built by our prompting helpers equal the official ones
  gen_ids = jnp.asarray(inp["t2i_gen.input_ids_cond_uncond"])
  l = gen_ids.shape[1]
  gen_spec = prompting_v1.predict_next_mask(gen_ids, ids.pad, ids.soi, ids.eoi, rm_pad_in_image=True)
  yield compare("t2i_gen.mask", dense(gen_spec), _bool_mask(inp["t2i_gen.attention_mask_additive"]), exact=True)
  yield compare("t2i_gen.attention_mask_bool", dense(gen_spec), out["t2i_gen.attention_mask_bool"][:, 0],
                exact=True)
  train_ids = jnp.asarray(inp["train.input_ids"])
  t2i_spec = prompting_v1.predict_next_mask(train_ids[:1], ids.pad, ids.soi, ids.eoi, rm_pad_in_image=True)
  lm_spec = prompting_v1.predict_next_mask(train_ids[1:2], ids.pad, ids.soi, ids.eoi, rm_pad_in_image=False)
  mmu_spec = prompting_v1.mmu_mask(train_ids[2:], ids.eoi)
  train_mask = np.concatenate([dense(t2i_spec), dense(lm_spec), dense(mmu_spec)])
  yield compare("train.mask", train_mask, _bool_mask(inp["train.attention_mask_additive"]), exact=True)
  mmu_ids = jnp.asarray(inp["mmu.input_ids"])
  yield compare("mmu.mask", dense(prompting_v1.mmu_mask(mmu_ids, ids.eoi)),
                _bool_mask(inp["mmu.attention_mask_additive"]), exact=True)

  for scan in scan_variants:
    tag = "scan." if scan else ""
    cfg_s = cfg.replace(scan_layers=scan)
    model = convert_showo.load(sd, cfg_s)
    fwd = jax.jit(lambda m, x, s: m(x, mask=s, return_hidden=True))
    # ---- t2i cond/uncond logits (our key-range mask)
    yield compare(tag + "t2i_gen.logits", fwd(model, gen_ids, gen_spec).logits, out["t2i_gen.logits"])
    # ---- MMU logits
    mmu = fwd(model, mmu_ids, prompting_v1.mmu_mask(mmu_ids, ids.eoi))
    yield compare(tag + "mmu.logits", mmu.logits, out["mmu.logits"])
    # ---- training forward (the official additive mask): logits, hidden states, the three losses
    spec = jnp.asarray(_bool_mask(inp["train.attention_mask_additive"]))
    res = fwd(model, train_ids, spec)
    yield compare(tag + "train.logits", res.logits, out["train.logits"])
    nl = cfg.phi.num_hidden_layers
    for i in range(nl):
      yield compare(f"{tag}train.hidden_states_{i}", res.hidden_states[i], out[f"train.hidden_states_{i}"])
    yield compare(f"{tag}train.hidden_states_{nl}", res.last_hidden_state, out[f"train.hidden_states_{nl}"])
    batch = maskgit.ShowoBatch(labels=jnp.asarray(inp["train.labels"]), mask=spec, input_ids=train_ids,
                               batch_size_t2i=1, batch_size_lm=1, batch_size_mmu=1, max_seq_length=max_seq_length)
    loss, metrics = jax.jit(maskgit.showo_loss)(model, batch)
    for name in ("loss_t2i", "loss_lm", "loss_mmu"):
      yield compare(f"{tag}train.{name}", metrics[name], out[f"train.{name}"])
    want = out["train.loss_t2i"] + 0.1 * out["train.loss_lm"] + out["train.loss_mmu"]
    yield compare(tag + "train.loss_weighted", loss, want)

    # ---- MaskGIT replay (4 steps, CFG 1.75), with and without the prefix K/V reuse
    steps = int(inp["maskgit.timesteps"])
    g = float(inp["maskgit.guidance_scale"])
    b = gen_ids.shape[0] // 2
    mult = out["maskgit.trace.multinomial_out"].reshape(steps, b, n)
    draws = (mult, out["maskgit.trace.gumbel"])
    cond, uncond = gen_ids[:b], gen_ids[b:]
    for reuse in (True, False):
      rtag = f"{tag}maskgit{'' if reuse else '.no_prefix_reuse'}."
      codes, trace = maskgit.t2i_generate(model, cond, uncond, timesteps=steps, guidance_scale=g, draws=draws,
                                          reuse_prefix=reuse, return_trace=True)
      yield compare(rtag + "sampled_ids", codes, out["maskgit.sampled_ids"], exact=True)
      yield compare(rtag + "trace.input_ids", trace["input_ids"], out["maskgit.trace.input_ids"], exact=True)
      off = cfg.image_token_offset
      ref_img = out["maskgit.trace.logits_cond_uncond"][:, :, l - n - 1:l - 1, off:off + cfg.codebook_size]
      yield compare(rtag + "trace.image_logits", trace["image_logits"], ref_img)
      yield compare(rtag + "trace.mask_len", trace["mask_len"], out["maskgit.trace.mask_len"], exact=True)
      yield compare(rtag + "trace.masking", trace["masking"], out["maskgit.trace.masking"], exact=True)
      sel, ref_sel = np.asarray(trace["selected_probs"]), out["maskgit.trace.selected_probs"]
      finite = ref_sel < 1e30
      yield compare(rtag + "trace.selected_probs", np.where(finite, sel, 0), np.where(finite, ref_sel, 0), atol=TIGHT)
      yield compare(rtag + "trace.selected_probs_known", sel[~finite], ref_sel[~finite], exact=True)
    # Full-vocabulary logits of every recorded model call (all 27 positions).
    step_logits = np.stack([np.asarray(fwd(model, jnp.asarray(out["maskgit.trace.input_ids"][k]), gen_spec).logits)
                            for k in range(steps)])
    yield compare(tag + "maskgit.trace.logits_cond_uncond", step_logits, out["maskgit.trace.logits_cond_uncond"])
