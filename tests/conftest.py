"""Settings for every test: quiet TensorFlow, no Gradio analytics, a private cache for converted ONNX graphs.

`tests/unit` needs no data set and no trained model; `tests/integration` uses the real HAM10000
images and models trained by our own code (its conftest). `tools/` and the test folders are on the
import path (pytest.ini), so both tiers and the tools share one `free_port` and one hostile-image corpus.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["SKIN_DEMO_CACHE"] = tempfile.mkdtemp(prefix="skin_demo_test_cache_")  # converted ONNX graphs
os.environ["SKIN_DEMO_RUNS"] = tempfile.mkdtemp(prefix="skin_demo_test_runs_")  # training runs' checkpoints

import pytest  # noqa: E402

from make_bad_images import make_corpus  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    """The hostile and odd image files of tools/make_bad_images.py, generated once per test run."""
    folder = tmp_path_factory.mktemp("bad_images")
    make_corpus(folder)
    return folder
