"""Data stage: discovery, synthetic GTZAN, splits, decoding, features and the Ray Data pipeline."""
