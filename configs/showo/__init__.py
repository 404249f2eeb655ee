"""Show-o (v1) configs: ``ablations.py`` (the v1 ablation studies)."""
