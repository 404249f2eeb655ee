"""Show-o2 training configs: ``base`` plus one small diff per stage (spec showo2.md §9.3, §9.5).

``stage1`` (= ``stage1a``) → ``stage1b``; ``stage2`` (= ``stage2a``) → ``stage2b`` → ``stage2c``; ``video``
(T2V on 3-D latents); ``mixed`` (interleaved mixed-modality fine-tuning). Every file takes
``size=1.5b|7b`` and ``runlocal``: ``--config configs/showo2/stage2c.py:size=7b,runlocal``.
"""
