"""Fixtures on real data: HAM10000 images and small models trained by our own training code.

Random-weight networks give near-constant outputs, so these tests use a MobileNetV2 alpha 0.35 that
really trained (a few steps, ImageNet start) on a handful of real images per class.
"""

import json

import pytest
from ports import free_port

from skin_demo.training import data as dataset

TINY_SIZE = (96, 128)


@pytest.fixture(scope="session")
def data_dir():
    path = dataset.data_dir()
    if not (path / "metadata.csv").exists():
        pytest.fail(f"HAM10000 not found at {path}; set SKIN_DEMO_DATA")
    return path


@pytest.fixture(scope="session")
def test_images(data_dir):
    """One real test-split image path per class (class code -> path)."""
    table = dataset.load_split()
    test = table[table["split"] == "test"]
    return {dx: str(data_dir / f"{rows['image_id'].iloc[0]}.jpg") for dx, rows in test.groupby("dx")}


def _train_tiny(out, seed):
    from skin_demo.training.train import TrainConfig, train

    return train(TrainConfig(
        backbone="mobilenet_v2_035", out=str(out), img_size=TINY_SIZE, head_epochs=2, epochs=1,
        batch_size=16, limit=8, head_lr=3e-3, lr=1e-4, seed=seed, verbose=0))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A model folder trained by `skin_demo.training.train` on 8 real images per class (about 40 s)."""
    return _train_tiny(tmp_path_factory.mktemp("models") / "tiny_v2", seed=0)


@pytest.fixture(scope="session")
def second_tiny_model_dir(tmp_path_factory):
    """Another small trained model (different seed), for comparison views."""
    return _train_tiny(tmp_path_factory.mktemp("models") / "tiny_v2_b", seed=1)


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir):
    from skin_demo.serving.classifier import Classifier

    return Classifier.from_folder(tiny_model_dir)


@pytest.fixture(scope="session")
def registry_file(tmp_path_factory, tiny_model_dir, second_tiny_model_dir):
    """A registry of the two tiny models plus one entry whose folder is missing."""
    path = tmp_path_factory.mktemp("registry") / "models.json"
    path.write_text(json.dumps({"models": [
        {"name": "tiny_a", "display_name": "Tiny A", "source": str(tiny_model_dir), "description": "test model"},
        {"name": "tiny_b", "display_name": "Tiny B", "source": str(second_tiny_model_dir), "description": "test model"},
        {"name": "gone", "display_name": "Gone", "source": str(tiny_model_dir.parent / "nope"), "description": "missing"},
    ]}))
    return path


@pytest.fixture(scope="session")
def service(registry_file):
    from skin_demo.serving.service import SkinDemo
    from skin_demo.serving.store import ModelStore

    return SkinDemo(ModelStore(registry_file))


@pytest.fixture(scope="session")
def app_url(service):
    """The Gradio app over `service`, served on a free local port for the whole session."""
    from skin_demo.serving.ui import build_app

    app = build_app(service)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()
