"""Parity: MAGVIT-v2 (Show-o v1 tokenizer) — encoder output, LFQ (z, losses, indices; codes exact), encode,
get_code, decode_code, codebook entries / decode of fixed codes (bit order), and the export round trip."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from showo_jax.convert import magvit2 as convert_magvit2
from showo_jax.models.magvit2 import MAGVITv2Config
from showo_jax.tools.parity import TIGHT, compare, load_fixture

nchw = lambda x: np.transpose(np.asarray(x), (0, 3, 1, 2))
nhwc = lambda x: jnp.asarray(np.transpose(np.asarray(x), (0, 2, 3, 1)))


def run(fixture_dir: str):
  cfg_json, inp, out, sd = load_fixture(fixture_dir)
  cfg = MAGVITv2Config.from_fixture(cfg_json)
  model = convert_magvit2.load(sd, cfg)
  exported = convert_magvit2.export(model)
  yield compare("export.keys", sorted(exported) == sorted(sd), True, exact=True)
  yield compare("export.bitwise", all(np.array_equal(exported[k], sd[k]) and exported[k].dtype == sd[k].dtype
                                      for k in sd), True, exact=True)

  x = nhwc(inp["pixel_values"])
  z = jax.jit(lambda m, x: m.encoder(x))(model, x)
  yield compare("encoder_out", nchw(z), out["encoder_out"])
  q = jax.jit(lambda m, z: m.quantize(z))(model, z)
  yield compare("quantize.z", nchw(q["z"]), out["quantize.z"], atol=TIGHT)
  yield compare("quantize.indices", np.asarray(q["indices"])[:, None], out["quantize.indices"], exact=True)
  yield compare("quantize.quantizer_loss", q["quantizer_loss"], out["quantize.quantizer_loss"])
  yield compare("quantize.entropy_loss", q["entropy_loss"], out["quantize.entropy_loss"])
  quantized, codes = jax.jit(lambda m, x: m.encode(x))(model, x)
  yield compare("encode.quantized", nchw(quantized), out["encode.quantized"], atol=TIGHT)
  yield compare("encode.codes", codes, out["encode.codes"], exact=True)
  yield compare("get_code", jax.jit(lambda m, x: m.get_code(x))(model, x), out["get_code"], exact=True)
  # decode_code of the recorded codes (the reference decodes its own get_code output).
  decode = jax.jit(lambda m, c: m.decode_code(c))
  yield compare("decode_code", nchw(decode(model, jnp.asarray(out["get_code"]))), out["decode_code"])
  fixed = jnp.asarray(inp["fixed_codes"])
  yield compare("fixed_codes.codebook_entry", nchw(model.quantize.get_codebook_entry(fixed)),
                out["fixed_codes.codebook_entry"], atol=TIGHT)
  yield compare("fixed_codes.decoded", nchw(decode(model, fixed)), out["fixed_codes.decoded"])
