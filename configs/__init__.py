"""Experiment configs (ml_collections ``get_config(arg)`` files); shared pieces in :mod:`configs.common`."""
