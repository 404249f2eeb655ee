"""Parity: the standalone Qwen2 backbone (logits, every hidden state, omni and causal masks)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax import masks
from showo_jax.convert import common, qwen2 as convert_qwen2
from showo_jax.models.qwen2 import Qwen2Config, Qwen2ForCausalLM
from showo_jax.tools.parity import compare, load_fixture


def build(cfg_json: dict, **kw) -> tuple[Qwen2Config, Qwen2ForCausalLM]:
  cfg = Qwen2Config.from_hf(cfg_json["qwen2_config"], **kw)
  return cfg, Qwen2ForCausalLM(cfg, rngs=nnx.Rngs(0))


def run(fixture_dir: str):
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  for scan in (False, True):
    cfg, model = build(cfg_json, scan_layers=scan)
    common.load_into(model, convert_qwen2.to_flat(sd, cfg))
    ids = jnp.asarray(inp["input_ids"])
    b, l = ids.shape
    tag = "scan." if scan else ""
    spec = masks.omni(jnp.asarray(inp["modality_positions"]), l)
    # The fixture gives the official additive mask too: our key-range mask must be the same mask.
    yield compare(tag + "omni_mask", masks.dense(spec), np.asarray(inp["attention_mask_bool"]).reshape(b, l, l) > 0,
                  exact=True)
    yield compare(tag + "omni_mask_flex", masks.dense(spec), out["omni_mask_flex_mask_mod"].reshape(b, l, l), exact=True)
    res = model(ids, mask=spec, return_hidden=True)
    yield compare(tag + "logits", res.logits, out["logits"])
    n = res.hidden_states.shape[0]
    for i in range(n):
      name = f"hidden_states_{i}"
      if name in out and i < n - 1:
        yield compare(tag + name, res.hidden_states[i], out[name])
    last_name = f"hidden_states_{n - 1}"
    if last_name in out:  # HF's last hidden state is post final norm
      yield compare(tag + last_name, res.last_hidden_state, out[last_name])
    yield compare(tag + "last_hidden_states", res.last_hidden_state, out["last_hidden_states"])
    causal = model(ids, mask=None)
    yield compare(tag + "logits_causal_mask", causal.logits, out["logits_causal_mask"])
