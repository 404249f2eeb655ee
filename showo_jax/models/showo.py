"""Show-o (v1): Phi-1.5 over one unified vocabulary of text, special tokens, MAGVIT-v2 codes and [MASK].

Reference: ``showlab/Show-o@45a5a2d:models/modeling_showo.py`` (``Showo``), spec ``showo.md`` §1, §3, §8.

Vocabulary layout (``vocab_size = llm_vocab_size + 10 + codebook_size + 1``; real 58498 = 50295 + 10 + 8192
+ 1, the ``showo_v1`` fixture 175 = 100 + 10 + 64 + 1):

  ``[0, llm_vocab_size)`` text; ``llm_vocab_size`` = ``[PAD]``; the next 9 ids are ``<|soi|> <|eoi|> <|sov|>
  <|eov|> <|t2i|> <|mmu|> <|t2v|> <|v2v|> <|lvg|>``; image code ``c`` is ``image_token_offset + c`` with
  ``image_token_offset = llm_vocab_size + 10``; ``[MASK] = vocab_size - 1``. ``<|sot|>``/``<|eot|>`` are
  the text tokenizer's bos/eos (Phi: both 50256).

One LM head predicts text and image tokens; image logits are the slice
``[image_token_offset, vocab_size - 1)`` (the ``[MASK]`` logit is excluded by the sampler).

Show-o‡ (``w_clip_vit``): ``mm_projector = Linear(1024, D) → GELU(erf) → Linear(D, D)`` maps CLIP-ViT-L/14-336
penultimate features (576 × 1024, CLS dropped; the CLIP tower itself is outside this model) into the LLM
input; the upstream ``nn.Sequential`` indices 0 and 2 become our ``mm_projector.0`` / ``mm_projector.1``.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from showo_jax.models import layers
from showo_jax.models.phi import KVCache, Mask, PhiConfig, PhiForCausalLM, PhiOutput, dtype_of

SPECIAL_TOKENS = ("<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")


@dataclasses.dataclass(frozen=True)
class ShowoTokenIds:
  """Ids of the special tokens (``UniversalPrompting.sptids_dict``) plus the image-code layout."""
  pad: int
  soi: int
  eoi: int
  sov: int
  eov: int
  t2i: int
  mmu: int
  t2v: int
  v2v: int
  lvg: int
  sot: int          # = tokenizer bos
  eot: int          # = tokenizer eos
  image_offset: int
  mask: int
  codebook_size: int

  @classmethod
  def layout(cls, llm_vocab_size: int, codebook_size: int, bos: int, eos: int) -> "ShowoTokenIds":
    # UniversalPrompting adds [PAD] then the 9 special tokens right after the text vocabulary.
    ids = {name: llm_vocab_size + 1 + i for i, name in enumerate(("soi", "eoi", "sov", "eov", "t2i", "mmu",
                                                                   "t2v", "v2v", "lvg"))}
    offset = llm_vocab_size + 1 + len(SPECIAL_TOKENS)
    return cls(pad=llm_vocab_size, sot=bos, eot=eos, image_offset=offset, mask=offset + codebook_size,
               codebook_size=codebook_size, **ids)

  def as_dict(self) -> dict[str, int]:
    """``<|name|>`` → id, the form of the fixtures' ``special_token_ids``."""
    names = ("pad", "soi", "eoi", "sov", "eov", "t2i", "mmu", "t2v", "v2v", "lvg", "sot", "eot")
    return {f"<|{n}|>": getattr(self, n) for n in names}


@dataclasses.dataclass(frozen=True)
class ShowoConfig:
  phi: PhiConfig
  llm_vocab_size: int = 50295
  num_new_special_tokens: int = 10
  codebook_size: int = 8192
  num_vq_tokens: int = 256
  w_clip_vit: bool = False
  clip_hidden_size: int = 1024
  bos_token_id: int = 50256
  eos_token_id: int = 50256

  def __post_init__(self):
    want = self.llm_vocab_size + self.num_new_special_tokens + self.codebook_size + 1
    if self.phi.vocab_size != want:
      raise ValueError(f"vocab_size {self.phi.vocab_size} != llm_vocab_size + {self.num_new_special_tokens} + "
                       f"codebook_size + 1 = {want} (the reference id layout)")
    if self.num_new_special_tokens != 1 + len(SPECIAL_TOKENS):
      raise ValueError("Show-o adds exactly [PAD] and 9 special tokens (num_new_special_tokens = 10)")

  @property
  def vocab_size(self) -> int:
    return self.phi.vocab_size

  @property
  def mask_token_id(self) -> int:
    return self.vocab_size - 1

  @property
  def image_token_offset(self) -> int:
    return self.llm_vocab_size + self.num_new_special_tokens

  @property
  def token_ids(self) -> ShowoTokenIds:
    return ShowoTokenIds.layout(self.llm_vocab_size, self.codebook_size, self.bos_token_id, self.eos_token_id)

  def replace(self, **phi_kw) -> "ShowoConfig":
    """Same model with execution-policy overrides on the backbone (dtype, scan_layers, remat …)."""
    return dataclasses.replace(self, phi=dataclasses.replace(self.phi, **phi_kw))

  @classmethod
  def show_o(cls, num_vq_tokens: int = 256, w_clip_vit: bool = False, **phi_kw) -> "ShowoConfig":
    """``showlab/show-o`` (256 image tokens); ``num_vq_tokens=1024`` for the 512x512 checkpoints."""
    return cls(phi=PhiConfig.phi_1_5(vocab_size=58498, **phi_kw), llm_vocab_size=50295, codebook_size=8192,
               num_vq_tokens=num_vq_tokens, w_clip_vit=w_clip_vit)

  @classmethod
  def show_o_512x512(cls, **phi_kw) -> "ShowoConfig":
    return cls.show_o(num_vq_tokens=1024, **phi_kw)

  @classmethod
  def show_o_w_clip_vit(cls, num_vq_tokens: int = 256, **phi_kw) -> "ShowoConfig":
    """``showlab/show-o-w-clip-vit`` (Show-o‡); ``num_vq_tokens=1024`` for ``…-512x512``."""
    return cls.show_o(num_vq_tokens=num_vq_tokens, w_clip_vit=True, **phi_kw)

  @classmethod
  def tiny(cls, w_clip_vit: bool = False, **phi_kw) -> "ShowoConfig":
    """The ``showo_v1`` fixture sizes: Phi 64-d, vocab 175 = 100 + 10 + 64 + 1, 16 image tokens."""
    return cls(phi=PhiConfig.tiny(vocab_size=175, **phi_kw), llm_vocab_size=100, codebook_size=64,
               num_vq_tokens=16, w_clip_vit=w_clip_vit, clip_hidden_size=32, bos_token_id=1, eos_token_id=2)

  @classmethod
  def from_hf(cls, showo_cfg: dict, phi_hf: dict, **phi_kw) -> "ShowoConfig":
    """From Show-o's diffusers ``config.json`` dict and the Phi ``config.json`` it names."""
    return cls(phi=PhiConfig.from_hf(phi_hf, vocab_size=showo_cfg["vocab_size"], **phi_kw),
               llm_vocab_size=showo_cfg["llm_vocab_size"], codebook_size=showo_cfg.get("codebook_size", 8192),
               num_vq_tokens=showo_cfg.get("num_vq_tokens", 256), w_clip_vit=bool(showo_cfg.get("w_clip_vit", False)),
               bos_token_id=phi_hf.get("bos_token_id", 50256), eos_token_id=phi_hf.get("eos_token_id", 50256))

  @classmethod
  def from_fixture(cls, cfg_json: dict, **phi_kw) -> "ShowoConfig":
    """From a parity fixture's ``config.json`` (``init_kwargs`` + ``phi_config``)."""
    return cls.from_hf(cfg_json["init_kwargs"], cfg_json["phi_config"], **phi_kw)


PRESETS = {"show_o": ShowoConfig.show_o, "show_o_512x512": ShowoConfig.show_o_512x512,
           "show_o_w_clip_vit": ShowoConfig.show_o_w_clip_vit, "tiny": ShowoConfig.tiny}


class Showo(nnx.Module):
  """Show-o v1: ``showo`` (Phi LM over the unified vocabulary) and, for Show-o‡, ``mm_projector``."""

  def __init__(self, cfg: ShowoConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.showo = PhiForCausalLM(cfg.phi, rngs=rngs)
    if cfg.w_clip_vit:
      dt, pdt = dtype_of(cfg.phi.dtype), dtype_of(cfg.phi.param_dtype)
      d = cfg.phi.hidden_size
      self.mm_projector = nnx.List([
          layers.Linear(cfg.clip_hidden_size, d, names=(None, "embed"), dtype=dt, param_dtype=pdt, rngs=rngs),
          layers.Linear(d, d, names=("mlp", "embed"), dtype=dt, param_dtype=pdt, rngs=rngs)])
    else:
      self.mm_projector = None

  def embed(self, ids: Int[Array, "b l"]) -> Float[Array, "b l d"]:
    return self.showo.embed(ids)

  def project_clip(self, features: Float[Array, "b n c"]) -> Float[Array, "b n d"]:
    """``mm_projector``: Linear → GELU (erf, ``nn.GELU()`` default) → Linear."""
    if self.mm_projector is None:
      raise ValueError("this Show-o has no mm_projector (w_clip_vit=False)")
    return self.mm_projector[1](layers.gelu_erf(self.mm_projector[0](features)))

  def __call__(self, input_ids: Int[Array, "b l"] | None = None, *,
               inputs_embeds: Float[Array, "b l d"] | None = None, mask: Mask = None,
               cache: KVCache | None = None, return_hidden: bool = False,
               compute_logits: bool = True, positions: Int[Array, "b l"] | None = None) -> PhiOutput:
    """Logits over the unified vocabulary (float32). ``mask`` and ``positions`` (default ``arange(L)``, what
    packed batches override, ``showo_jax/packing.py``) as in :class:`PhiForCausalLM`."""
    return self.showo(input_ids, inputs_embeds=inputs_embeds, mask=mask, cache=cache, positions=positions,
                      return_hidden=return_hidden, compute_logits=compute_logits)

  def image_logits(self, hidden: Float[Array, "*b d"]) -> Float[Array, "*b c"]:
    """Logits of the ``codebook_size`` image codes only (``[MASK]`` excluded), from final hidden states."""
    off = self.cfg.image_token_offset
    return self.showo.logits_range(hidden, off, off + self.cfg.codebook_size)

  def mmu_vit_embeds(self, system_ids: Int[Array, "b s"], clip_features: Float[Array, "b n c"],
                     text_ids: Int[Array, "b t"]) -> Float[Array, "b l d"]:
    """Show-o‡ understanding input (``inference_mmu.py``): ``[<|mmu|>] + system + [<|soi|>] +
    mm_projector(clip) + [<|eoi|>] + text``, all embedded (use with ``prompting_v1.mmu_vit_mask``)."""
    ids = self.cfg.token_ids
    b = system_ids.shape[0]
    col = lambda t: jnp.full((b, 1), t, jnp.int32)
    head = self.embed(jnp.concatenate([col(ids.mmu), system_ids.astype(jnp.int32), col(ids.soi)], axis=1))
    tail = self.embed(jnp.concatenate([col(ids.eoi), text_ids.astype(jnp.int32)], axis=1))
    img = self.project_clip(clip_features).astype(head.dtype)
    return jnp.concatenate([head, img, tail], axis=1)
