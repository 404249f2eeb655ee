"""Text tokenizers for showo_jax (offline Qwen2.5 for Show-o2; tiny BPE for tiny configs)."""
from showo_jax.text.qwen_offline import (  # noqa: F401
    MissingTokenizerPackage,
    ShowoTokenizer,
    SpecialIds,
    build_tiny_tokenizer,
    load_qwen25_tokenizer,
    qwen25_tokenizer_json,
    qwen25_tokenizer_json_path,
)
