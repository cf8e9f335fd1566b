"""Model factory: a backbone of the registry (backbones.py) plus the classification head, and saving it.

A built model takes raw RGB pixels (0-255, float32) at its input size; its preprocessing is made of
standard Keras layers inside the model, so `keras.saving.load_model(folder, safe_mode=True)` is all
anyone needs to run it (the folder format: model_folder.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import keras
import numpy as np

from ..classes import CLASSES
from ..model_folder import ModelInfo
from .backbones import BUILTIN, CAFFE, LITE, TF, TORCH, UNIT, Backbone, get_backbone, imagenet_dir
from .efficientnet_lite import preprocessing_layer as lite_preprocessing_layer

_IMAGENET_MEAN_RGB = np.array([123.68, 116.779, 103.939], dtype="float32")
_IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype="float32") * 255.0


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be found offline nor downloaded."""


def _preprocessing_layers(kind: str):
    if kind == TF:
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")]
    if kind == UNIT:
        return [keras.layers.Rescaling(1 / 255.0, name="to_unit_interval")]
    if kind == TORCH:
        return [keras.layers.Normalization(
            mean=_IMAGENET_MEAN_RGB, variance=_IMAGENET_STD_RGB**2, name="imagenet_normalize")]
    if kind == CAFFE:
        # RGB->BGR and mean subtraction as a frozen 1x1 linear map: a standard, safe layer.
        permute = np.eye(3, dtype="float32")[::-1]
        bias = -_IMAGENET_MEAN_RGB[::-1]
        layer = keras.layers.Dense(3, name="caffe_bgr_mean", trainable=False)
        return [(layer, [permute, bias])]
    if kind == LITE:
        return [lite_preprocessing_layer()]  # (x - 127) / 128 as a Rescaling layer
    if kind == BUILTIN:
        return []
    raise ValueError(f"unknown preprocessing {kind!r}")


def _apply(layers, x):
    for item in layers:
        layer, weights = item if isinstance(item, tuple) else (item, None)
        x = layer(x)
        if weights is not None:
            layer.set_weights(weights)
    return x


def resolve_imagenet_weights(backbone: Backbone) -> str:
    """The offline weights file when one fits, else 'imagenet' (Keras downloads it)."""
    if backbone.imagenet_file:
        path = imagenet_dir() / backbone.imagenet_file
        if path.exists():
            return str(path)
    return "imagenet"


def _constructor(backbone: Backbone):
    """The keras.applications constructor, or our own one named by `builder` ("module.Function")."""
    if backbone.builder is None:
        return getattr(keras.applications, backbone.application)
    module, function = backbone.builder.rsplit(".", 1)
    return getattr(importlib.import_module(f".{module}", __package__), function)


def _builder_weights(backbone: Backbone) -> str:
    """A `builder` backbone's offline ImageNet file; there is no download to fall back on."""
    path = imagenet_dir() / backbone.imagenet_file if backbone.imagenet_file else None
    if path is None or not path.is_file():
        raise WeightsUnavailable(
            f"ImageNet weights for {backbone.name} are not available here: "
            f"{path or 'no imagenet_file in the registry'} is missing and there is no download for them. "
            f"Put {backbone.imagenet_file} under {imagenet_dir()} (or set SKIN_DEMO_IMAGENET_DIR), "
            "or train with --from-scratch.")
    return str(path)


def _custom_cnn(x, seed: int):
    """The custom CNN of the MobileNet web-app study (its layer table, 646,471 parameters at 224)."""
    x = keras.layers.BatchNormalization(name="input_bn")(x)
    for i, filters in enumerate((32, 64, 128, 256), start=1):
        x = keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv2d_{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"max_pooling2d_{i}")(x)
        x = keras.layers.Dropout(0.25, seed=seed + i, name=f"dropout_{i}")(x)
    return keras.layers.Flatten(name="flatten")(x)


def build_model(backbone_name: str, input_size=None, pretrained: bool = True, dropout: float = 0.3,
                seed: int = 0):
    """Build backbone + head (global pooling, dropout, dense logits, softmax over the 7 classes).

    The result is one flat functional model, so Grad-CAM can reach `backbone.last_conv_layer`.
    """
    backbone = get_backbone(backbone_name)
    height, width = tuple(input_size or backbone.input_size)
    inputs = keras.Input((height, width, 3), name="rgb_0_255")
    x = _apply(_preprocessing_layers(backbone.preprocessing), inputs)
    if backbone.application is None and backbone.builder is None:
        features = _custom_cnn(x, seed)
    else:
        constructor = _constructor(backbone)
        if backbone.builder is not None:
            weights = _builder_weights(backbone) if pretrained else None
        else:
            weights = resolve_imagenet_weights(backbone) if pretrained else None
        try:
            base = constructor(include_top=False, weights=weights, input_tensor=x, **backbone.kwargs)
        except Exception as exc:  # download or file errors surface as many types
            if weights is None:
                raise
            raise WeightsUnavailable(
                f"ImageNet weights for {backbone.name} are not available here ({type(exc).__name__}: "
                f"{str(exc)[:200]}). Put the Keras weights file under {imagenet_dir()}, run where "
                "keras.applications can download, or train with --from-scratch."
            ) from exc
        features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(features)
    logits = keras.layers.Dense(len(CLASSES), name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probs, name=backbone.name)


def last_conv_layer_name(model, backbone: Backbone) -> str:
    """Grad-CAM's layer: the registry's name, else the layer whose output the head pools."""
    if backbone.last_conv_layer:
        return backbone.last_conv_layer
    return model.get_layer("avg_pool").input._keras_history.operation.name


def backbone_layers(model):
    """Layers that belong to the backbone (everything before the head)."""
    head = {"avg_pool", "head_dropout", "logits", "probabilities", "flatten"}
    return [layer for layer in model.layers if layer.name not in head and layer.weights]


def set_trainable(model, fraction: float) -> None:
    """Freeze the backbone except its top `fraction` of weighted layers; BatchNorm stays frozen.

    Frozen BatchNorm layers run in inference mode in Keras 3, which is what fine-tuning needs.
    """
    layers = backbone_layers(model)
    first = int(round(len(layers) * (1.0 - fraction)))
    for i, layer in enumerate(layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        frozen_preprocessing = layer.name == "caffe_bgr_mean"
        layer.trainable = i >= first and not is_bn and not frozen_preprocessing


def save_model_folder(model, folder, info: ModelInfo) -> Path:
    """Write the Keras HF layout plus skin_demo.json; the model card is written by `card.py`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.optimizer = None  # Adam's moments would double the file; a served model never resumes them
    model.save(str(folder), zipped=False)
    info.write(folder)
    return folder
