"""Shape vocabulary shared by the whole package.

Axis letters (jaxtyping dims and einsum subscripts use the same letters):
  b batch, l query length, s key length, d model width, n query heads, k kv heads, g query heads per kv
  head, e head dim, f ffn width, v vocab, m modality slots per row, t latent frames, h/w latent or pixel
  height/width, c channels.

Conventions decided once for the package:
  * arrays are channels-last: images ``[b, h, w, c]``, videos ``[b, t, h, w, c]``; the PyTorch
    NCHW/NCTHW layouts appear only in ``convert/`` and the parity checks;
  * masks are boolean, ``True`` = may attend (``masks.py``);
  * flow time: ``t = 1`` is data, ``t = 0`` is noise (``transport.py``).
"""
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray  # noqa: F401

ModalityPositions = Int[Array, "b m 2"]
"""``(offset, length)`` per visual block; ``(0, 0)`` rows are unused slots (spec §4, §5)."""
