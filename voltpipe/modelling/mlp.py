"""The tabular MLP family: preprocessing layers inside the model, so it takes raw values."""

from __future__ import annotations

from typing import Any

from voltpipe.modelling.features import MAX_ONE_HOT, FeaturePlan

# Standardised numbers are clipped to [-CLIP, CLIP]: a value far outside the training range
# (a flag that was always 0 in training) cannot saturate the network.
CLIP = 10.0


def encode_tabular(
    plan: FeaturePlan, *, one_hot_only: bool = False, coded: bool = False
) -> tuple[dict[str, Any], Any]:
    """Keras inputs for the raw feature columns and their encoded, concatenated tensor.

    Numbers pass a Normalization layer fixed to the training mean/variance, then are clipped to
    [-CLIP, CLIP] (built-in layers only, so the model loads in safe mode: scale by 1/CLIP, a
    ``hard_tanh`` activation, scale back); strings a StringLookup (one-hot when small or
    `one_hot_only`, an embedding otherwise).

    With `coded`, categories arrive as int32 lookup indices (0 = out of vocabulary, i + 1 =
    ``vocab[i]``, what the StringLookup gives) and are encoded by the same layers after the
    lookup: the training input (strings cannot cross a tf.distribute strategy; see
    ``inputs.compact_dataset``). The two variants have the same weights under the same layer
    names (``copy_weights``).
    """
    import keras
    from keras import layers

    inputs: dict[str, Any] = {}
    encoded = []
    numeric = []
    for name, st in plan.numeric.items():
        inp = keras.Input(shape=(1,), name=name, dtype="float32")
        inputs[name] = inp
        numeric.append(
            layers.Normalization(mean=st["mean"], variance=st["variance"], name=f"norm_{name}")(inp)
        )
    if numeric:
        x = layers.Concatenate(name="numeric")(numeric) if len(numeric) > 1 else numeric[0]
        x = layers.Rescaling(1.0 / CLIP, name="clip_scale")(x)
        x = layers.Activation("hard_tanh", name="clip")(x)
        encoded.append(layers.Rescaling(CLIP, name="clip_unscale")(x))
    for name, vocab in plan.categorical.items():
        inp = keras.Input(shape=(1,), name=name, dtype="int32" if coded else "string")
        inputs[name] = inp
        size = len(vocab) + 1  # + the out-of-vocabulary bucket
        if size <= MAX_ONE_HOT or one_hot_only:
            if coded:
                enc = layers.CategoryEncoding(size, output_mode="one_hot", name=f"lookup_{name}")(
                    inp
                )
            else:
                enc = layers.StringLookup(
                    vocabulary=vocab, output_mode="one_hot", name=f"lookup_{name}"
                )(inp)
        else:
            if coded:
                idx = inp
            else:
                idx = layers.StringLookup(vocabulary=vocab, name=f"lookup_{name}")(inp)
            dim = int(min(32, round(1.6 * size**0.56)))
            enc = layers.Flatten(name=f"flat_{name}")(
                layers.Embedding(size, dim, name=f"embed_{name}")(idx)
            )
        encoded.append(enc)
    x = layers.Concatenate(name="features")(encoded) if len(encoded) > 1 else encoded[0]
    return inputs, x


def build_mlp(
    plan: FeaturePlan,
    *,
    task: str,
    n_classes: int,
    hidden_units: list[int],
    dropout: float,
    coded: bool = False,
) -> Any:
    """Returns an uncompiled Keras model taking a dict of raw feature columns.

    Preprocessing is inside (see ``encode_tabular``). Regression outputs one value on the
    standardised label scale (see ``with_output_scale``); classification outputs class
    probabilities.
    """
    import keras
    from keras import layers

    inputs, x = encode_tabular(plan, coded=coded)
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    if task == "classification":
        outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    else:
        outputs = layers.Dense(1, name="standardised_prediction")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="voltpipe_mlp")


def copy_weights(source: Any, target: Any) -> Any:
    """Copies every layer's weights from `source` to the layer of the same name in `target`
    (the coded training model to the serving model taking strings); returns `target`."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return target


def with_output_scale(model: Any, mean: float, std: float) -> Any:
    """Wraps a regression model so it predicts in the label's units: ``y = out * std + mean``."""
    import keras
    from keras import layers

    outputs = layers.Rescaling(scale=std, offset=mean, name="prediction")(model.output)
    return keras.Model(inputs=model.inputs, outputs=outputs, name=model.name)
