"""Block-skipping attention kernels behind ``showo_jax.attention`` (``impl="splash"`` / ``impl="tokamax"``).

* ``splash``: TPU Splash attention (tokamax's copy of the kernel) with the Show-o2 omni mask; Pallas interpret
  mode everywhere but on TPU, so the same code is tested on CPU.
* ``tokamax_flash``: tokamax's GPU flash kernels (Mosaic-GPU on sm90+, Triton otherwise) fed with the per-query
  key ranges directly; tokamax's XLA op of the same signature on CPU.

Both take ``q [b, l, n, e]``, ``k, v [b, s, k, e]`` and a :class:`~showo_jax.masks.MaskSpec` and are checked
against the dense XLA path in ``tests/kernels/``. Model code never imports these modules directly.
"""
