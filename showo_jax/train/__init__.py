"""Training: state and layout (``state``), optimizer (``optim``), the jitted step (``step``), the loop
(``loop``), checkpoints (``checkpoint``), metrics (``metrics``) and the model-family registry (``tasks``)."""
