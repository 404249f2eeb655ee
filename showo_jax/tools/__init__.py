"""Command-line tools: parity, bench, cache_latents."""
