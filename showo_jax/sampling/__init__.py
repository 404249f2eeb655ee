"""Show-o2 inference: the flow ODE sampler (``ode``), text decoding with a KV cache (``text``) and
mixed-modality generation (``mixed``)."""
