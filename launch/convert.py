"""Convert an official checkpoint to showo_jax's on-disk format, or export it back.

    python -m launch.convert --model qwen2 --src model.safetensors --dst DIR [--preset qwen2_5_1_5b]
    python -m launch.convert --model qwen2 --export DIR --dst out.safetensors --keys-from official.bin

``--src`` may be ``.safetensors``, a torch ``.bin``/``.pth`` zip (read without torch) or an HF
``*.index.json``. Conversion is strict: unused, missing or mis-shaped keys abort with one message that
lists them all (``--skip REGEX`` is the only exception).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--model", required=True, help="registry name (see showo_jax/convert/registry.py)")
  ap.add_argument("--src", help="official checkpoint file")
  ap.add_argument("--dst", required=True, help="output directory (convert) or .safetensors file (export)")
  ap.add_argument("--preset", default=None, help="config preset name")
  ap.add_argument("--config-json", default=None, help="HF/fixture config.json to build the config from")
  ap.add_argument("--scan-layers", action="store_true", help="store stacked (nnx.scan) layers")
  ap.add_argument("--skip", action="append", default=[], help="regex of official keys to ignore")
  ap.add_argument("--export", default=None, help="converted directory to export back to official keys")
  ap.add_argument("--keys-from", default=None, help="official checkpoint whose key order/names to export")
  args = ap.parse_args(argv)

  import numpy as np
  from flax import nnx
  from showo_jax.convert import common, io, registry, torch_pickle

  entry = registry.get(args.model)
  cfg_json = json.load(open(args.config_json)) if args.config_json else None
  cfg = entry.make_config(args.preset, cfg_json, **({"scan_layers": True} if args.scan_layers else {}))
  abstract = nnx.eval_shape(lambda: entry.build(cfg))
  shapes = common.flat_shapes(abstract)

  if args.export:
    flat = io.load_flat(args.export, shapes)
    if not args.keys_from:
      print("error: --export needs --keys-from (the official key list to reproduce)", file=sys.stderr)
      return 2
    keys = list(torch_pickle.load_any(args.keys_from))
    common.save_safetensors(entry.from_flat(flat, cfg, keys), args.dst)
    print(f"exported {len(keys)} tensors to {args.dst}")
    return 0

  if not args.src:
    print("error: --src is required to convert", file=sys.stderr)
    return 2
  sd = torch_pickle.load_any(args.src)
  if args.skip:
    import re
    sd = {k: v for k, v in sd.items() if not any(re.fullmatch(s, k) for s in args.skip)}
  try:
    flat = entry.to_flat(sd, cfg)
    common.check_against(shapes, {k: tuple(np.shape(v)) for k, v in flat.items()})
  except common.ConversionError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  io.save_params(args.dst, flat, {"model": args.model, "config": dataclasses.asdict(cfg), "source": args.src})
  print(f"converted {len(sd)} tensors -> {len(flat)} parameters in {args.dst}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
