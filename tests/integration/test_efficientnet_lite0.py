"""EfficientNet-Lite0 (our own build from standard Keras layers): exact ImageNet weights, safe saving, Grad-CAM."""

import json

import keras
import numpy as np
import pytest
import skimage.data
from PIL import Image

from skin_demo import CLASSES
from skin_demo.model_folder import ModelInfo
from skin_demo.training.backbones import BACKBONES, imagenet_dir
from skin_demo.training.efficientnet_lite import imagenet_classifier, load_imagenet_weights
from skin_demo.training.factory import (
    WeightsUnavailable, build_model, last_conv_layer_name, save_model_folder)

BACKBONE = BACKBONES["efficientnet_lite0"]
WEIGHTS = imagenet_dir() / BACKBONE.imagenet_file

# SOURCES.md / manifest.json of the weights folder: top-3 (class, probability) at 224, centre
# square crop, bicubic resize, (x - 127) / 128.
EXPECTED_TOP3 = {
    "chelsea": [(285, 0.385), (282, 0.332), (281, 0.163)],  # Egyptian cat, tiger cat, tabby
    "coffee": [(967, 0.94), (968, 0.017), (925, 0.008)],  # espresso, cup, consomme
    "rocket": [(657, 0.223), (540, 0.146), (744, 0.117)],  # missile, drilling platform, projectile
}

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"{WEIGHTS} not present")


def _centre_crop_224(image):
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top:top + side, left:left + side])
    return np.asarray(square.resize((224, 224), Image.BICUBIC), dtype="float32")


@needs_weights
def test_imagenet_weights_give_the_documented_top3():
    model = imagenet_classifier(WEIGHTS)
    assert model.count_params() == 4_694_024  # every array of the npz, nothing more
    photos = np.stack([_centre_crop_224(getattr(skimage.data, name)()) for name in EXPECTED_TOP3])
    probs = model.predict(photos, verbose=0)
    for (name, expected), row in zip(EXPECTED_TOP3.items(), probs):
        top3 = np.argsort(row)[::-1][:3]
        assert [int(i) for i in top3] == [c for c, _ in expected], (name, top3, row[top3])
        assert np.allclose(row[top3], [p for _, p in expected], atol=0.01), (name, row[top3])


@needs_weights
def test_random_weights_do_not_pass_the_imagenet_check():
    """Control: the check above depends on the loaded arrays, not on the architecture alone."""
    model = imagenet_classifier(WEIGHTS)
    stem = model.get_layer("stem_conv")
    stem.set_weights([np.random.default_rng(0).permutation(stem.get_weights()[0].ravel())
                      .reshape(stem.get_weights()[0].shape)])
    coffee = _centre_crop_224(skimage.data.coffee())[None]
    assert model.predict(coffee, verbose=0)[0, 967] < 0.5
    assert load_imagenet_weights(model, WEIGHTS) == 247  # reloading restores every array
    assert model.predict(coffee, verbose=0)[0, 967] == pytest.approx(0.94, abs=0.01)


@needs_weights
def test_pretrained_backbone_saves_and_reloads_safely(tmp_path):
    model = build_model("efficientnet_lite0", (96, 128), pretrained=True)
    assert model.output.shape == (None, len(CLASSES))
    assert '"Lambda"' not in json.dumps(model.get_config())
    random = build_model("efficientnet_lite0", (96, 128), pretrained=False)
    assert not np.allclose(model.get_layer("top_conv").get_weights()[0],
                           random.get_layer("top_conv").get_weights()[0])

    layer = last_conv_layer_name(model, BACKBONE)
    feature = model.get_layer(layer).output
    assert len(feature.shape) == 4 and feature.shape[-1] == 1280

    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 128, 3)).astype("float32")
    out = model.predict(x, verbose=0)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    preprocess = keras.Model(model.input, model.get_layer("lite_normalize").output)
    assert np.allclose(preprocess.predict(x, verbose=0), (x - 127.0) / 128.0, atol=1e-6)

    info = ModelInfo(name="lite0_test", backbone="efficientnet_lite0", input_size=(96, 128),
                     last_conv_layer=layer)
    folder = save_model_folder(model, tmp_path / "lite0", info)
    reloaded = keras.saving.load_model(str(folder), safe_mode=True)
    assert np.allclose(reloaded.predict(x, verbose=0), out, atol=1e-5)
    grad_cam = keras.Model(reloaded.input, [reloaded.get_layer(layer).output, reloaded.output])
    features, _ = grad_cam.predict(x, verbose=0)
    assert features.shape == (2, 3, 4, 1280)


def test_missing_npz_raises_weights_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIN_DEMO_IMAGENET_DIR", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="no download.*--from-scratch"):
        build_model("efficientnet_lite0", (64, 64), pretrained=True)
    assert build_model("efficientnet_lite0", (64, 64), pretrained=False).output.shape == (None, len(CLASSES))
