"""Everything offline: data import and synthetic data, feature building, training, evaluation.

`models` never imports `serving`.
"""
