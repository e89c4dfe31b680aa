"""Evaluation: metrics by task and the champion/challenger decision."""
