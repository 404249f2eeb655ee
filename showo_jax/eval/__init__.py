"""Evaluation: deterministic procedural checker (GenEval-style scores, motion, VQA match)."""
