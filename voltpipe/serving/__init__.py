"""Serving: the prediction server (Vertex AI custom-container contract) and the fast predictor.

Imports neither kfp nor TensorFlow; TensorFlow loads with the model.
"""

from voltpipe.serving.forecast import ForecastPredictor
from voltpipe.serving.predictor import BasePredictor, Predictor, load_predictor, resolve_model_dir
from voltpipe.serving.server import create_app, serve, serve_from_env, settings_from_env
from voltpipe.serving.validation import RequestError

__all__ = [
    "BasePredictor",
    "ForecastPredictor",
    "Predictor",
    "RequestError",
    "create_app",
    "load_predictor",
    "resolve_model_dir",
    "serve",
    "serve_from_env",
    "settings_from_env",
]
