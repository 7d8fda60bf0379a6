"""Data in: validation, readers, MovieLens and events importers, the synthetic generator."""
