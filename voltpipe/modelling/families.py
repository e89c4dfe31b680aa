"""Forecasting (cnn, lstm, gru, transformer, mlp over a window) and anomaly (autoencoder) models.

Built from Keras' own layers only, so a saved model loads in safe mode without voltpipe code:
normalisation of every input is a Normalization layer fixed to the training statistics, so the
model takes raw values and returns raw values.

A forecaster takes three inputs computed by ``forecast_features`` (NumPy, the same in training,
evaluation and serving): the window, the naive ``base`` forecast (horizon,) and the seasonal
lags ``y[t+k-m]`` (horizon, seasons). The network predicts a correction that a Rescaling and an
Add layer put on top of the base; the correction's layer starts at zero, so an untrained model
*is* its naive base, and early stopping on the valid split keeps it from getting worse.
"""

from __future__ import annotations

from typing import Any

from voltpipe.config import ModelConfig
from voltpipe.modelling.features import FeaturePlan


def build_forecaster(
    mp: ModelConfig,
    *,
    family: str,
    window: int,
    horizon: int,
    channel_mean: list[float],
    channel_variance: list[float],
    seasons: int | None = None,
    label_mean: float = 0.0,
    label_variance: float = 1.0,
) -> Any:
    """An uncompiled model: raw window (window, channels) [, base (horizon,), seasonal (horizon,
    seasons)] -> standardised forecast (legacy, `seasons` None) or correction (horizon,)."""
    import keras
    from keras import layers

    channels = len(channel_mean)
    inp = keras.Input(shape=(window, channels), name="window", dtype="float32")
    squeeze = seasons is not None  # the feature path: a small head on top of the naive base
    x = layers.Normalization(
        axis=-1, mean=channel_mean, variance=channel_variance, name="norm_channels"
    )(inp)
    if family == "cnn":
        for i in range(mp.encoder_layers):
            x = layers.Conv1D(
                mp.filters, mp.kernel_size, padding="causal", activation="relu", name=f"conv_{i}"
            )(x)
        if squeeze:  # window x filters -> window x 4 before the dense head: few weights
            x = layers.Dense(4, activation="relu", name="squeeze")(x)
        x = layers.Flatten(name="flatten")(x)
    elif family in ("lstm", "gru"):
        rnn = layers.LSTM if family == "lstm" else layers.GRU
        for i in range(mp.encoder_layers):
            last = i == mp.encoder_layers - 1
            x = rnn(mp.rnn_units, return_sequences=not last, name=f"{family}_{i}")(x)
    elif family == "transformer":
        d = mp.num_heads * mp.key_dim
        # A causal convolution embeds each step with its neighbours, which also tells the
        # attention layers the local order; Flatten keeps absolute positions for the head.
        x = layers.Conv1D(d, 3, padding="causal", name="embed")(x)
        for i in range(mp.encoder_layers):
            att = layers.MultiHeadAttention(
                mp.num_heads, mp.key_dim, dropout=mp.dropout, name=f"attention_{i}"
            )(x, x)
            x = layers.LayerNormalization(name=f"norm_att_{i}")(layers.Add()([x, att]))
            ff = layers.Dense(2 * d, activation="relu", name=f"ff_in_{i}")(x)
            ff = layers.Dense(d, name=f"ff_out_{i}")(ff)
            x = layers.LayerNormalization(name=f"norm_ff_{i}")(layers.Add()([x, ff]))
        if squeeze:
            x = layers.Dense(4, activation="relu", name="squeeze")(x)
        x = layers.Flatten(name="flatten")(x)
    elif family == "mlp":
        x = layers.Flatten(name="flatten")(x)
    else:  # guarded by the caller
        raise ValueError(f"no forecasting family {family!r}")
    inputs = [inp]
    if squeeze:
        base = keras.Input(shape=(horizon,), name="base", dtype="float32")
        inputs.append(base)
        parts = [x, _label_norm(base, horizon, label_mean, label_variance, "norm_base")]
        if seasons:
            seasonal = keras.Input(shape=(horizon, seasons), name="seasonal", dtype="float32")
            inputs.append(seasonal)
            s = layers.Reshape((horizon * seasons,), name="flatten_seasonal")(seasonal)
            parts.append(
                _label_norm(s, horizon * seasons, label_mean, label_variance, "norm_seasonal")
            )
        x = layers.Concatenate(name="inputs")(parts)
    for i, units in enumerate(mp.hidden_units[:1] if family != "mlp" else mp.hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if mp.dropout:
            x = layers.Dropout(mp.dropout, name=f"dropout_{i}")(x)
    if squeeze:
        out = layers.Dense(horizon, kernel_initializer="zeros", name="correction")(x)
    else:
        out = layers.Dense(horizon, name="standardised_forecast")(x)
    return keras.Model(inputs=inputs, outputs=out, name=f"voltpipe_{family}_forecaster")


def _label_norm(x: Any, width: int, mean: float, variance: float, name: str) -> Any:
    from keras import layers

    return layers.Normalization(
        axis=-1, mean=[mean] * width, variance=[max(variance, 1e-12)] * width, name=name
    )(x)


def with_base_correction(model: Any, residual_std: float) -> Any:
    """Wraps a feature-path forecaster so it returns ``base + correction * residual_std``."""
    import keras
    from keras import layers

    base = next(t for t in model.inputs if t.name.startswith("base"))
    out = layers.Rescaling(scale=residual_std, name="correction_units")(model.output)
    forecast = layers.Add(name="forecast")([base, out])
    return keras.Model(inputs=model.inputs, outputs=forecast, name=model.name)


def with_forecast_scale(model: Any, mean: float, std: float) -> Any:
    """Wraps a forecaster so it returns the label's units: ``y = out * std + mean``."""
    import keras
    from keras import layers

    out = layers.Rescaling(scale=std, offset=mean, name="forecast")(model.output)
    return keras.Model(inputs=model.inputs, outputs=out, name=model.name)


def build_autoencoder(plan: FeaturePlan, mp: ModelConfig, *, coded: bool = False) -> Any:
    """A model from raw columns to the per-row reconstruction error (mean squared, encoded scale).

    The encoder narrows through `hidden_units` to `latent_dim`; the decoder mirrors it.
    Categories are one-hot (no trainable embedding that could shrink to make errors small).
    `coded`: categories as lookup indices (the training input, see ``mlp.encode_tabular``).
    """
    import keras
    from keras import layers

    from voltpipe.modelling.mlp import encode_tabular

    inputs, encoded = encode_tabular(plan, one_hot_only=True, coded=coded)
    width = int(encoded.shape[-1])
    x = encoded
    for i, units in enumerate(mp.hidden_units):
        x = layers.Dense(units, activation="relu", name=f"encode_{i}")(x)
        if mp.dropout:
            x = layers.Dropout(mp.dropout, name=f"dropout_{i}")(x)
    x = layers.Dense(mp.latent_dim, name="latent")(x)
    for i, units in enumerate(reversed(mp.hidden_units)):
        x = layers.Dense(units, activation="relu", name=f"decode_{i}")(x)
    recon = layers.Dense(width, name="reconstruction")(x)
    diff = layers.Subtract(name="residual")([recon, encoded])
    sq = layers.Multiply(name="squared")([diff, diff])
    err = layers.GlobalAveragePooling1D(name="reconstruction_error")(
        layers.Reshape((width, 1), name="per_dimension")(sq)
    )
    return keras.Model(inputs=inputs, outputs=err, name="voltpipe_autoencoder")
