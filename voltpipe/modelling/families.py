"""Forecasting (cnn, lstm, gru, transformer, mlp over a window) and anomaly (autoencoder) models.

Built from Keras' own layers only, so a saved model loads in safe mode without voltpipe code:
normalisation of every channel is a Normalization layer fixed to the training statistics, and
the forecast is rescaled to the label's units by a Rescaling layer, so the model takes raw
values and returns raw values.
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
) -> Any:
    """An uncompiled model: raw window (window, channels) -> standardised forecast (horizon,)."""
    import keras
    from keras import layers

    channels = len(channel_mean)
    inp = keras.Input(shape=(window, channels), name="window", dtype="float32")
    x = layers.Normalization(
        axis=-1, mean=channel_mean, variance=channel_variance, name="norm_channels"
    )(inp)
    if family == "cnn":
        for i in range(mp.encoder_layers):
            x = layers.Conv1D(
                mp.filters, mp.kernel_size, padding="causal", activation="relu", name=f"conv_{i}"
            )(x)
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
        x = layers.Flatten(name="flatten")(x)
    elif family == "mlp":
        x = layers.Flatten(name="flatten")(x)
    else:  # guarded by the caller
        raise ValueError(f"no forecasting family {family!r}")
    for i, units in enumerate(mp.hidden_units[:1] if family != "mlp" else mp.hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if mp.dropout:
            x = layers.Dropout(mp.dropout, name=f"dropout_{i}")(x)
    out = layers.Dense(horizon, name="standardised_forecast")(x)
    return keras.Model(inputs=inp, outputs=out, name=f"voltpipe_{family}_forecaster")


def with_forecast_scale(model: Any, mean: float, std: float) -> Any:
    """Wraps a forecaster so it returns the label's units: ``y = out * std + mean``."""
    import keras
    from keras import layers

    out = layers.Rescaling(scale=std, offset=mean, name="forecast")(model.output)
    return keras.Model(inputs=model.inputs, outputs=out, name=model.name)


def build_autoencoder(plan: FeaturePlan, mp: ModelConfig) -> Any:
    """A model from raw columns to the per-row reconstruction error (mean squared, encoded scale).

    The encoder narrows through `hidden_units` to `latent_dim`; the decoder mirrors it.
    Categories are one-hot (no trainable embedding that could shrink to make errors small).
    """
    import keras
    from keras import layers

    from voltpipe.modelling.mlp import encode_tabular

    inputs, encoded = encode_tabular(plan, one_hot_only=True)
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
