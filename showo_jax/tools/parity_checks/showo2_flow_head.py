"""Parity: the Show-o2 flow head pieces (``TimestepEmbedder``, 2 × ``ModulatedAttentionBlock``, ``FinalLayer``).

Checked for both the Python-loop and the scanned (``lax.scan``) layer stack.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from showo_jax import masks
from showo_jax.convert import common, showo2 as convert_showo2
from showo_jax.models import flow_head as fh
from showo_jax.tools.parity import TIGHT, compare, load_fixture


def build(cfg_json: dict, sd, **policy) -> tuple[fh.FlowHeadConfig, fh.FlowHead]:
  cfg = fh.FlowHeadConfig.from_diffusion_head_config(
      cfg_json["diffusion_head_config_tiny"], cfg_json["num_diffusion_layers"], patch_size=cfg_json["patch_size"],
      out_channels=cfg_json["image_latent_dim"], **policy)
  model = nnx.eval_shape(lambda: fh.FlowHead(cfg, rngs=nnx.Rngs(0)))
  common.load_into(model, convert_showo2.flow_head_to_flat(sd, cfg))
  return cfg, model


@nnx.jit
def forward(model, hidden, t, mp):
  # The mask is built inside the jit (a MaskSpec is a plain pytree, but nnx.jit re-creates argument pytrees
  # with placeholder leaves, which the test-time shape checker rejects).
  return model(hidden, t, mp, masks.omni(mp, hidden.shape[1]), collect=True)


def run(fixture_dir: str):
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  hidden = jnp.asarray(inp["hidden_states"])
  b, l, _ = hidden.shape
  mp = jnp.asarray(inp["modality_positions"])
  spec = masks.omni(mp, l)
  yield compare("attention_mask", masks.dense(spec), inp["attention_mask_additive"].reshape(b, l, l) == 0, exact=True)
  np.testing.assert_array_equal(inp["position_ids"][0], np.arange(l))  # the head's positions are arange(L)
  yield compare("t_freq", fh.timestep_embedding(jnp.asarray(inp["t"]), 256), out["t_freq"], atol=TIGHT)
  for scan in (False, True):
    tag = "scan." if scan else ""
    _, model = build(cfg_json, sd, scan_layers=scan)
    v, c, outs, _ = forward(model, hidden, jnp.asarray(inp["t"]), mp)
    yield compare(tag + "time_embeds", c, out["time_embeds"])
    for i, o in enumerate(outs):
      yield compare(f"{tag}head_a_layer{i}", o, out[f"head_a_layer{i}"])
    yield compare(tag + "v_pred_tokens", v, out["v_pred_tokens"])
