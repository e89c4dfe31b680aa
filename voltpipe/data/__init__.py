"""Data: warehouse backends, extraction with splits, statistics and validation."""
