"""Modelling: feature plans, model families, training and prediction (TensorFlow imported lazily)."""
