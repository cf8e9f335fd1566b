"""Fixtures of the fast tier: no data set, no trained model, no ImageNet weights.

One tiny network (the custom CNN at 48x64, random weights) is built and saved as a model folder once
per session; every other input is synthetic (numpy arrays, PNG/JPEG files written with Pillow). While
a unit test runs, the data set, extra data and ImageNet weight locations point at a folder that does
not exist.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from unit_helpers import TINY_SIZE, synthetic_lesion, write_image


TINY_CONV = "conv2d_4"  # the custom CNN's Grad-CAM layer (backbones.BACKBONES["custom_cnn"])
NOWHERE = "/nonexistent/skin_demo_unit_tier"

# ------------------------------------------------------------------ no data set, no ../shared
@pytest.fixture(autouse=True)
def no_data_set(monkeypatch):
    """Every unit test runs as if no data set, no extra clinic and no ImageNet weights existed."""
    for variable in ("SKIN_DEMO_DATA", "SKIN_DEMO_EXTRA_DATA", "SKIN_DEMO_IMAGENET_DIR"):
        monkeypatch.setenv(variable, NOWHERE)
    monkeypatch.delenv("SKIN_DEMO_REGISTRY", raising=False)


# ------------------------------------------------------------------ synthetic images
@pytest.fixture
def lesion_jpg(tmp_path):
    return write_image(tmp_path / "lesion.jpg", synthetic_lesion(), quality=95)


# ------------------------------------------------------------------ the tiny model folder
def _save_tiny(folder: Path, seed: int) -> Path:
    from skin_demo.model_folder import ModelInfo
    from skin_demo.training.factory import build_model, save_model_folder

    model = build_model("custom_cnn", TINY_SIZE, pretrained=False, seed=seed)
    info = ModelInfo(name=folder.name, backbone="custom_cnn", input_size=TINY_SIZE, last_conv_layer=TINY_CONV,
                     pretrained="none (random weights, unit tests)", parameters=int(model.count_params()))
    return save_model_folder(model, folder, info)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A model folder as training writes it (without card or plots): random custom CNN, 48x64, built once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKIN_DEMO_IMAGENET_DIR", NOWHERE)
        return _save_tiny(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture
def folder_copy(tiny_folder, tmp_path):
    """A private copy of the tiny folder, for tests that damage or edit it."""
    return Path(shutil.copytree(tiny_folder, tmp_path / "copy"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_folder):
    from skin_demo.serving.classifier import Classifier

    return Classifier.from_folder(tiny_folder)


@pytest.fixture(scope="session")
def registry_file(tmp_path_factory, tiny_folder):
    """The tiny model plain and with TTA, their ensemble, and an entry whose folder is missing."""
    path = tmp_path_factory.mktemp("registry") / "models.json"
    path.write_text(json.dumps({"models": [
        {"name": "tiny", "display_name": "Tiny CNN", "source": str(tiny_folder), "description": "random weights"},
        {"name": "tiny_tta", "display_name": "Tiny CNN + TTA", "source": str(tiny_folder), "tta": True},
        {"name": "both", "display_name": "Tiny ensemble", "members": ["tiny", "tiny_tta"]},
        {"name": "gone", "display_name": "Gone", "source": str(tiny_folder.parent / "gone")},
    ]}))
    return path


@pytest.fixture(scope="session")
def store(registry_file):
    from skin_demo.serving.store import ModelStore

    return ModelStore(registry_file)
