"""Converters between official PyTorch checkpoints and showo_jax NNX states (torch-free)."""
