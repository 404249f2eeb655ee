"""Time the official showlab/Show-o PyTorch code on the workloads of ``shared/bench/official_cpu.json``.

This is the reference side of ``python -m showo_jax.tools.bench WORKLOAD``: it builds the *official* modules
(Show-o2, the Wan2.1 VAE, Show-o v1) at the JSON's sizes with random weights (nothing is downloaded) and times
one unit of work exactly as ``workloads.<name>.workload`` describes, on CPU in float32 with two threads. The
machines drift, so run it in the same window as our benchmark and compare ratios, not stored numbers.

    /tmp/offvenv/bin/python launch/bench_official.py WORKLOAD [--official-src /tmp/showo_official] \\
        [--repeats N] [--json FILE]

WORKLOAD is one of showo2_train_step, showo2_t2i_sample, wan_vae_image, wan_vae_video, showo1_train_step,
showo1_maskgit_sample. Output keys match the JSON (median_s, min_s, max_s, repeats) plus params, torch,
threads, official_commit, first_call_s (the untimed warm-up) and, for reference, params_json and
stored_median_s; ``--json`` also records the workload description.

Setup (once; the pins are the JSON's ``versions``)::

    python3.11 -m venv /tmp/offvenv
    /tmp/offvenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /tmp/offvenv/bin/pip install transformers==4.47.0 diffusers==0.31.0 einops==0.8.0 safetensors==0.8.0 \\
        numpy==2.4.6 torchdiffeq==0.2.5 huggingface-hub==0.24.0 tokenizers==0.21.4 omegaconf==2.3.0 \\
        jaxtyping==0.2.28 typeguard==2.13.3
    # official code at 45a5a2d, source files only (MIRROR = git dir of a showlab/Show-o clone; plain
    # `git archive 45a5a2d | tar -x` works too where the clone has every blob, images included)
    mkdir -p /tmp/showo_official && cd /tmp/showo_official
    for f in $(git --git-dir=$MIRROR ls-tree -r --name-only 45a5a2d | grep -E '\\.(py|yaml|json|txt)$'); do
      mkdir -p "$(dirname $f)"; git --git-dir=$MIRROR show "45a5a2d:$f" > "$f"; done

The official files are used unedited. The harness only fills in what a checkpoint would: configs written to a
temp dir for ``AutoConfig.from_pretrained``, a random SigLIP in place of ``SiglipModel.from_pretrained``, a
random ``WanVAE_`` in place of the checkpoint load, a small ``DiffusionHeadConfig`` (the official one is
hard-coded to the 2048-wide head), a stand-in tokenizer over integer ids, and stubs for ``timm`` (only
``to_2tuple`` is used) and ``torchvision.transforms`` (an image helper of ``training/utils.py`` we never call)
where those are not installed. It must not import ``showo_jax``; nothing in the repo imports it, and torch is
imported here only.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
import warnings

import numpy as np
import torch

COMMIT = "45a5a2d"
HERE = os.path.dirname(os.path.abspath(__file__))
SPEC_PATH = os.path.join(HERE, "..", "..", "shared", "bench", "official_cpu.json")


def load_spec(path: str | None) -> dict:
  shared = os.environ.get("SHOWO_SHARED")
  for cand in (path, shared and os.path.join(shared, "bench", "official_cpu.json"), SPEC_PATH):
    if cand and os.path.exists(cand):
      return json.load(open(cand))
  raise SystemExit("official_cpu.json not found (pass --spec or set SHOWO_SHARED)")


def use_tree(src: str, sub: str) -> None:
  """Import the official ``models`` package of one tree (v1 at the top level, Show-o2 under show-o2/)."""
  # Both trees call their package ``models``; one process only ever uses one of them.
  sys.path.insert(0, os.path.join(src, sub) if sub else src)
  import diffusers.utils, transformers.utils   # they probe for timm at import time; probe before the stub
  # show-o2/models/misc.py imports timm for to_2tuple alone; training/utils.py imports torchvision.transforms
  # for an image-loading helper we never call. Neither is a pinned dependency, so stub them if absent.
  for names in (("timm", "timm.layers", "timm.layers.helpers"), ("torchvision", "torchvision.transforms")):
    try:
      __import__(names[-1])
    except ImportError:
      for name in names:
        sys.modules[name] = types.ModuleType(name)
  if not hasattr(sys.modules["timm.layers.helpers"], "to_2tuple"):
    sys.modules["timm.layers.helpers"].to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
  if not hasattr(sys.modules["torchvision"], "transforms"):
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]


def n_params(module: torch.nn.Module) -> int:
  return sum(p.numel() for p in module.parameters())   # parameters() yields a tied table once


def config_dir(cfg) -> str:
  """A directory ``AutoConfig.from_pretrained`` can read (the official constructors take a path)."""
  path = tempfile.mkdtemp(prefix="official_cfg_")
  atexit.register(shutil.rmtree, path, True)
  cfg.save_pretrained(path)
  return path


class StandInTokenizer:
  """Prompts are already lists of integer ids; '' is the empty (CFG null) prompt.

  Implements the parts of a HF tokenizer that ``UniversalPrompting`` / ``prepare_gen_input`` touch. Added
  tokens get ids right after the text vocabulary, as with the real tokenizer ([PAD] first, then the specials).
  """

  def __init__(self, vocab: int, bos: int, eos: int):
    self.vocab, self.bos_token_id, self.eos_token_id = vocab, bos, eos
    self.added: dict[str, int] = {}

  def add_special_tokens(self, d: dict) -> None:
    self.add_tokens(list(d.values()))

  def add_tokens(self, toks: list) -> None:
    for t in toks:
      self.added.setdefault(t, self.vocab + len(self.added))

  def convert_tokens_to_ids(self, toks):
    return [self.added[t] for t in toks] if isinstance(toks, list) else self.added[toks]

  @property
  def pad_token_id(self) -> int:
    return self.added["[PAD]"]

  def __len__(self) -> int:
    return self.vocab + len(self.added)

  def __call__(self, texts, **kw):
    one = lambda t: [] if isinstance(t, str) else [int(i) for i in t]
    batched = isinstance(texts, list) and len(texts) > 0 and isinstance(texts[0], (list, str))
    return {"input_ids": [one(t) for t in texts] if batched else one(texts)}


# ---------------------------------------------------------------------------------------------- Show-o2

S2_IDS = dict(bos=2038, eos=2039, boi=2040, eoi=2041, pad=2042, img_pad=2043)   # stand-in, top of 2048 rows


def build_showo2(src: str, spec: dict):
  use_tree(src, "show-o2")
  from transformers import Qwen2Config
  from transformers.models.siglip.configuration_siglip import SiglipConfig
  import models.modeling_showo2_qwen2_5 as m2
  from models import Showo2Qwen2_5
  from models.modules import DiffusionHeadConfig
  from models.modeling_siglip import SiglipModel
  ms = spec["models"]["showo2"]
  fh, lat = ms["flow_head"], ms["image_latent"]

  def head_config():   # the official class hard-codes the 2048-wide head of the 1.5B model
    c = DiffusionHeadConfig(hidden_size=fh["hidden_size"], head_dim=fh["head_dim"],
                            intermediate_size=fh["intermediate_size"])
    c.num_attention_heads, c.num_key_value_heads = fh["num_attention_heads"], fh["num_key_value_heads"]
    return c

  sig_cfg = SiglipConfig(text_config=ms["siglip_text"], vision_config=ms["siglip_vision"])
  m2.DiffusionHeadConfig = head_config
  m2.SiglipModel = types.SimpleNamespace(from_pretrained=lambda path, **kw: SiglipModel(sig_cfg))
  torch.manual_seed(0)
  p = lat["patch_size"]
  model = Showo2Qwen2_5(
      llm_vocab_size=ms["llm_vocab_size"], llm_model_path=config_dir(Qwen2Config(**ms["qwen2"])),
      load_from_showo=True, image_latent_dim=lat["channels"],
      # image_latent_height/width count patches: 16x16 latents / patch 2 -> the SigLIP 8x8 position table
      image_latent_height=lat["height"] // p, image_latent_width=lat["width"] // p, patch_size=p,
      hidden_size=ms["qwen2"]["hidden_size"], clip_latent_dim=ms["siglip_vision"]["hidden_size"],
      num_diffusion_layers=ms["num_diffusion_layers"], add_time_embeds=True)
  return model


def transport_for(lat: dict):
  from transport import create_transport
  # showo2_*.yaml transport block; seq_len = num_t2i_image_tokens (+1 time slot)
  return create_transport(path_type="Linear", prediction="velocity", loss_weight=None, train_eps=None,
                          sample_eps=None, snr_type="lognorm", do_shift=True,
                          seq_len=lat["slots_with_time_embedding"])


def showo2_train_step(src: str, spec: dict):
  w = spec["workloads"]["showo2_train_step"]["workload"]
  model = build_showo2(src, spec)
  from models import omni_attn_mask_naive
  lat = spec["models"]["showo2"]["image_latent"]
  transport = transport_for(lat)
  B, L, n_slots = w["batch"], w["seq_len"], lat["slots_with_time_embedding"]
  rng = np.random.default_rng(0)
  i = S2_IDS
  tokens = np.full((B, L), i["pad"], np.int64)
  labels = np.full((B, L), -100, np.int64)
  mp = np.zeros((B, 1, 2), np.int64)
  for r, (kind, n) in enumerate(zip(w["rows"], w["text_lens"])):
    text, block = list(rng.integers(0, 2000, n)), [i["img_pad"]] * n_slots
    if kind == "t2i":   # [bos] text [boi] [time+img] [eoi] [eos] pad
      seq, off = [i["bos"]] + text + [i["boi"]] + block + [i["eoi"], i["eos"]], n + 2
    else:               # [bos] [boi] [time+img] [eoi] caption [eos] pad; captions carry the NTP labels
      seq, off = [i["bos"], i["boi"]] + block + [i["eoi"]] + text + [i["eos"]], 2
    tokens[r, :len(seq)] = seq
    mp[r, 0] = (off, n_slots)
    if kind == "mmu":
      labels[r, :len(seq)] = np.where(tokens[r, :len(seq)] == i["img_pad"], -100, seq)
  tokens, labels, mp = (torch.from_numpy(a) for a in (tokens, labels, mp))
  img_masks = (tokens == i["img_pad"]).long()
  latents = torch.randn(B, lat["channels"], lat["height"], lat["width"])   # VAE excluded: random latents
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0, eps=1e-8)
  model.train()

  def step():
    # prepare_latents_and_labels minus the VAE (und_max_t0 = 1.0: MMU rows see clean latents, no flow loss)
    ts, xts, uts, masks = [], [], [], []
    for r, kind in enumerate(w["rows"]):
      t, x0, x1 = transport.sample(latents[r][None], 1.0 if kind == "mmu" else None)
      t, xt, ut = transport.path_sampler.plan(t, x0, x1)
      ts.append(t), xts.append(xt), uts.append(ut)
      masks.append(img_masks[r][None] * 0.0 if kind == "mmu" else img_masks[r][None])
    t, xt, ut, masks = torch.stack(ts).squeeze(-1), torch.cat(xts), torch.cat(uts), torch.cat(masks)
    attn = omni_attn_mask_naive(B, L, mp, "cpu").to(torch.float32)
    _, loss_ntp, loss_flow = model(text_tokens=tokens, image_latents=xt, t=t, attention_mask=attn,
                                   image_masks=masks, text_labels=labels, image_labels=ut, modality_positions=mp,
                                   output_hidden_states=True, max_seq_len=L, device="cpu")
    (0.2 * loss_ntp + 1.0 * loss_flow).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)

  return step, n_params(model)


def showo2_t2i_sample(src: str, spec: dict):
  w = spec["workloads"]["showo2_t2i_sample"]["workload"]
  model = build_showo2(src, spec).eval()
  from models import omni_attn_mask_naive
  from models.misc import prepare_gen_input
  from transport import Sampler
  lat = spec["models"]["showo2"]["image_latent"]
  sampler = Sampler(transport_for(lat))
  tok = StandInTokenizer(2038, S2_IDS["bos"], S2_IDS["eos"])
  rng = np.random.default_rng(0)
  prompts = [list(rng.integers(0, 2000, n)) for n in w["prompt_lens"]]
  i, n_slots, L, g = S2_IDS, lat["slots_with_time_embedding"], w["seq_len"], w["guidance_scale"]

  def sample():   # inference_t2i.py from prepare_gen_input to the ODE samples (VAE decode excluded)
    text, text_null, mp, mp_null = prepare_gen_input(prompts, tok, n_slots, i["bos"], i["eos"], i["boi"], i["eoi"],
                                                     i["pad"], i["img_pad"], w["max_text_len"], "cpu")
    z = torch.randn(len(prompts), lat["channels"], lat["height"], lat["width"]).to(torch.bfloat16)
    z = torch.cat([z, z])
    text_tokens, mp = torch.cat([text, text_null]), torch.cat([mp, mp_null])
    assert text_tokens.shape == (w["cfg_rows"], L), text_tokens.shape
    mask = omni_attn_mask_naive(text_tokens.size(0), L, mp, "cpu").to(torch.float32)
    fn = sampler.sample_ode(sampling_method=w["sampler"], num_steps=w["num_steps"], atol=1e-6, rtol=1e-3,
                            reverse=False, time_shifting_factor=w["time_shifting_factor"])
    return fn(z, model.t2i_generate, text_tokens=text_tokens, attention_mask=mask, modality_positions=mp,
              output_hidden_states=True, max_seq_len=L, guidance_scale=g)[-1]

  return sample, n_params(model)


# ---------------------------------------------------------------------------------------------- Wan VAE

def wan_vae(name: str):
  def build(src: str, spec: dict):
    w = spec["workloads"][name]["workload"]
    use_tree(src, "show-o2")
    import models.wan21_vae as wv
    cfg = dict(w["vae_cfg"])
    # _video_vae builds on the meta device and loads a checkpoint; build the same module with random init.
    wv._video_vae = lambda pretrained_path=None, z_dim=None, device="cpu", **kw: wv.WanVAE_(**{**cfg, "z_dim": z_dim})
    torch.manual_seed(0)
    vae = wv.WanVAE(z_dim=cfg["z_dim"], vae_pth="", dtype=torch.float32, device="cpu")
    x = torch.rand(*w["shape"]) * 2 - 1

    def run():   # deterministic encode, then decode (clamped), as WanVAE.sample / batch_decode do
      with torch.no_grad():
        return vae.batch_decode(vae.sample(x, deterministic=True))

    return run, n_params(vae.model)
  return build


# ---------------------------------------------------------------------------------------------- Show-o v1

V1_BOS, V1_EOS = 1, 2   # stand-in tokenizer's bos/eos inside the 1000-token text vocabulary


def build_showo1(src: str, spec: dict):
  use_tree(src, "")
  from transformers import PhiConfig
  from models import Showo
  from training.prompting_utils import UniversalPrompting
  ms = spec["models"]["showo1"]
  torch.manual_seed(0)
  model = Showo(w_clip_vit=False, vocab_size=ms["vocab_size"], llm_vocab_size=ms["llm_vocab_size"],
                llm_model_path=config_dir(PhiConfig(**ms["phi"])), codebook_size=ms["codebook_size"],
                num_vq_tokens=ms["num_vq_tokens"], load_from_showo=True)
  tok = StandInTokenizer(ms["llm_vocab_size"], V1_BOS, V1_EOS)
  # cond_dropout_prob 0: the workload fixes every row's text (dropping would not change the shapes anyway)
  up = UniversalPrompting(tok, max_text_len=ms["max_text_len"], ignore_id=-100, cond_dropout_prob=0.0)
  assert len(tok) == ms["llm_vocab_size"] + ms["num_new_special_tokens"]
  return model, up


def v1_config(spec: dict):
  from omegaconf import OmegaConf
  ms = spec["models"]["showo1"]
  return OmegaConf.create({
      "model": {"showo": {k: ms[k] for k in ("num_vq_tokens", "num_new_special_tokens", "llm_vocab_size",
                                              "codebook_size")}, "codebook_size": ms["codebook_size"]},
      "dataset": {"preprocessing": {"max_seq_length": ms["max_text_len"]}},
      "training": {"min_masking_rate": 0.0}})   # train.py's config fields that the called code reads


def showo1_train_step(src: str, spec: dict):
  w = spec["workloads"]["showo1_train_step"]["workload"]
  ms = spec["models"]["showo1"]
  model, up = build_showo1(src, spec)
  from models import get_mask_chedule
  from training.prompting_utils import create_attention_mask_predict_next, create_attention_mask_for_mmu
  from training.utils import mask_or_random_replace_tokens
  config, schedule = v1_config(spec), get_mask_chedule("cosine")
  sp = {k: int(v) for k, v in up.sptids_dict.items()}
  mask_id, off = model.config.mask_token_id, len(up.text_tokenizer)
  rng = np.random.default_rng(0)
  text = lambda n: [int(x) for x in rng.integers(3, ms["llm_vocab_size"], n)]
  t2i_text, lm_text, mmu_text = ([text(n) for n in w["text_lens"][k]] for k in ("t2i", "lm", "mmu"))
  n_t2i, n_lm, n_mmu = len(t2i_text), len(lm_text), len(mmu_text)
  codes = lambda b: torch.from_numpy(rng.integers(0, ms["codebook_size"], (b, ms["num_vq_tokens"]))) + off
  t2i_codes, mmu_codes = codes(n_t2i), codes(n_mmu)   # VQ encode excluded: random codes

  # train.py's two groups: no decay on biases / LayerNorm weights / embeddings
  no_decay = ["bias", "layer_norm.weight", "mlm_ln.weight", "embeddings.weight"]
  named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
  groups = [{"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": 0.01},
            {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0}]
  opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01, eps=1e-8)
  model.train()

  def step():   # train.py's batch assembly (minus the VQ model and data loading), forward, backward, AdamW
    with torch.no_grad():
      ids, labels, _, _ = mask_or_random_replace_tokens(t2i_codes, mask_id, config, mask_schedule=schedule)
      ids, _, labels = up(([list(t) for t in t2i_text], ids, labels), "t2i")
      mask = create_attention_mask_predict_next(ids, pad_id=sp["<|pad|>"], soi_id=sp["<|soi|>"],
                                                eoi_id=sp["<|eoi|>"], rm_pad_in_image=True).to(torch.float32)
      ids_lm, _, labels_lm = up(([list(t) for t in lm_text], ids.shape[-1]), "lm")
      mask_lm = create_attention_mask_predict_next(ids_lm, pad_id=sp["<|pad|>"], soi_id=sp["<|soi|>"],
                                                   eoi_id=sp["<|eoi|>"]).to(torch.float32)
      ids_mmu, _, labels_mmu = up((mmu_codes, [list(t) for t in mmu_text]), "mmu")
      mask_mmu = create_attention_mask_for_mmu(ids_mmu, eoi_id=sp["<|eoi|>"]).to(torch.float32)
      ids = torch.cat([ids, ids_lm, ids_mmu])
      labels = torch.cat([labels, labels_lm, labels_mmu])
      mask = torch.cat([mask, mask_lm, mask_mmu])
    assert list(ids.shape) == w["input_ids_shape"], ids.shape
    _, loss_t2i, loss_lm, loss_mmu = model(input_ids=ids, attention_mask=mask, labels=labels,
                                           batch_size_t2i=n_t2i, batch_size_lm=n_lm, batch_size_mmu=n_mmu,
                                           max_seq_length=ms["max_text_len"])
    (1.0 * loss_t2i + 0.1 * loss_lm + 1.0 * loss_mmu).backward()
    opt.step()   # max_grad_norm null: no clipping
    opt.zero_grad(set_to_none=True)

  return step, n_params(model)


def showo1_maskgit_sample(src: str, spec: dict):
  w = spec["workloads"]["showo1_maskgit_sample"]["workload"]
  ms = spec["models"]["showo1"]
  model, up = build_showo1(src, spec)
  model.eval()
  from models import get_mask_chedule
  from training.prompting_utils import create_attention_mask_predict_next
  config, schedule = v1_config(spec), get_mask_chedule(w["noise_schedule"])
  sp = {k: int(v) for k, v in up.sptids_dict.items()}
  rng = np.random.default_rng(0)
  prompts = [[int(x) for x in rng.integers(3, ms["llm_vocab_size"], n)] for n in w["prompt_lens"]]

  def sample():   # inference_t2i.py, mode t2i, from the prompts to the sampled codes (MAGVIT decode excluded)
    image = torch.ones((len(prompts), ms["num_vq_tokens"]), dtype=torch.long) * model.config.mask_token_id
    ids, _ = up(([list(p) for p in prompts], image), "t2i_gen")
    uncond, _ = up(([""] * len(prompts), image), "t2i_gen")
    mask = create_attention_mask_predict_next(torch.cat([ids, uncond]), pad_id=sp["<|pad|>"], soi_id=sp["<|soi|>"],
                                              eoi_id=sp["<|eoi|>"], rm_pad_in_image=True)
    assert ids.shape[1] == w["seq_len"], ids.shape
    with torch.no_grad():
      return model.t2i_generate(input_ids=ids, uncond_input_ids=uncond, attention_mask=mask,
                                guidance_scale=w["guidance_scale"], temperature=w["temperature"],
                                timesteps=w["timesteps"], noise_schedule=schedule, noise_type="mask",
                                seq_len=ms["num_vq_tokens"], uni_prompting=up, config=config)

  return sample, n_params(model)


WORKLOADS = {
    "showo2_train_step": showo2_train_step,
    "showo2_t2i_sample": showo2_t2i_sample,
    "wan_vae_image": wan_vae("wan_vae_image"),
    "wan_vae_video": wan_vae("wan_vae_video"),
    "showo1_train_step": showo1_train_step,
    "showo1_maskgit_sample": showo1_maskgit_sample,
}


def serve(run) -> None:
  """Paired timing: print ``ready``, then for each stdin line run once and print the seconds (``quit`` ends)."""
  print("ready", flush=True)
  for line in sys.stdin:
    if line.strip() == "quit":
      break
    t0 = time.perf_counter()
    run()
    print(f"{time.perf_counter() - t0:.6f}", flush=True)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("workload", choices=sorted(WORKLOADS))
  ap.add_argument("--official-src", default="/tmp/showo_official", help="checkout of showlab/Show-o@" + COMMIT)
  ap.add_argument("--repeats", type=int, default=None, help="timed calls (default: the JSON's repeats)")
  ap.add_argument("--spec", default=None, help="official_cpu.json (default: shared/bench/official_cpu.json)")
  ap.add_argument("--json", default=None, help="also write the result here")
  ap.add_argument("--serve", action="store_true",
                  help="after the warm-up, time one call per stdin line and print its seconds (launch/bench_pair.py)")
  args = ap.parse_args()
  spec = load_spec(args.spec)
  ref = spec["workloads"][args.workload]
  repeats = args.repeats or ref["repeats"]
  torch.set_num_threads(spec["machine"]["torch_threads"])
  torch.manual_seed(0)
  # The official code warns on every call (deprecated autocast, RoPE API); keep the output to the result.
  warnings.filterwarnings("ignore")

  run, params = WORKLOADS[args.workload](os.path.abspath(args.official_src), spec)
  if params != ref["params"]:
    print(f"warning: {params:,} parameters, the JSON says {ref['params']:,}", file=sys.stderr)
  t0 = time.perf_counter()
  run()   # warm-up: first-call allocations, lazy inits
  first = time.perf_counter() - t0
  if args.serve:
    serve(run)
    return
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  out = {"workload": args.workload, "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
         "max_s": round(max(times), 4), "repeats": repeats, "first_call_s": round(first, 4), "params": params,
         "params_json": ref["params"], "stored_median_s": ref["median_s"], "torch": torch.__version__,
         "threads": torch.get_num_threads(), "official_commit": COMMIT, "workload_spec": ref["workload"]}
  print(json.dumps({k: v for k, v in out.items() if k != "workload_spec"}, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
