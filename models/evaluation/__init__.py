"""Evaluation: metrics as pure functions, the split protocols, the comparison harness."""
