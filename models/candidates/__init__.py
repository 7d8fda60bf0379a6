"""Candidate generators: each usable alone and as a source for the ranker."""
