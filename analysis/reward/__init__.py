"""Personalised reward model: predicts how much one member will agree with one candidate.

config.py (options) → data.py (ratings → records, pairs, batches, split) → model.py (cross-encoder,
checkpoints) → train.py (the loop) → score.py (scoring API) and evaluate.py (metrics, baselines).
registry.py is the only Django-aware module.
"""
