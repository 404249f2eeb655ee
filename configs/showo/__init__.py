"""Show-o (v1) configs: ``base`` plus one small diff per stage (spec showo.md §6.4), and ``ablations.py``.

``stage1`` → ``stage2`` → ``stage3`` (pre-training), ``tuning1`` → ``tuning2`` (instruction tuning, ``res=256|512``).
Every stage file takes ``runlocal``: ``--config configs/showo/stage1.py:runlocal``. Show-o‡ (CLIP-ViT
understanding) has no config: it needs a CLIP-ViT tower, which this repository does not port.
"""
