"""RecStack's Feast feature repo (definitions, feature_store.yaml)."""
