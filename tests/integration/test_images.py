"""Hostile, broken and unusual uploads through the one image loader, the classifier and the CLI.

The corpus (tools/make_bad_images.py) is generated into a temporary folder; every case must end in
a usable RGB array or an ImageError with a message for a person, never in another exception.
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from make_bad_images import CASES, FORTY_MEGAPIXELS
from skin_demo.classes import CLASSES
from skin_demo.images import MIN_SIDE, WORKING_SIDE, ImageError, load_image

REPO = Path(__file__).resolve().parents[2]
CASE_IDS = [case.name for case in CASES]
BOMBS = [case.name for case in CASES if case.message == "too many pixels"]
CLI_GOOD = "photo.jpg"
CLI_BAD = ["empty.jpg", "truncated.jpg", "document.jpg", "bomb.png", "tiny_8x8.png", "iphone.heic"]
MESSAGES = {case.name: case.message for case in CASES}


def _assert_refused(case, action):
    """The refusal is an ImageError whose message is one sentence naming the problem."""
    with pytest.raises(ImageError) as refusal:
        action()
    message = str(refusal.value)
    assert case.message in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_load_image(case, corpus_dir):
    path = corpus_dir / case.name
    if case.expect == "error":
        _assert_refused(case, lambda: load_image(path))
        return
    image = load_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert MIN_SIDE <= min(image.shape[:2]) and max(image.shape[:2]) <= WORKING_SIDE
    if case.same_as:
        reference = load_image(corpus_dir / case.same_as)
        assert image.shape == reference.shape
        assert np.abs(image.astype("float32") - reference).mean() <= case.tolerance


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_predict(case, corpus_dir, tiny_classifier):
    path = corpus_dir / case.name
    if case.expect == "error":
        _assert_refused(case, lambda: tiny_classifier.predict(path))
        return
    probabilities = tiny_classifier.predict(path)
    assert sorted(probabilities) == sorted(CLASSES)
    assert all(0 <= p <= 1 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("name", BOMBS)
def test_bomb_is_refused_from_the_header(name, corpus_dir):
    """Decoding any of these would take seconds and gigabytes (their data is fake: a decode would say "damaged")."""
    start = time.perf_counter()
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(corpus_dir / name)
    assert time.perf_counter() - start < 0.5


def test_forty_megapixels_decode_at_reduced_scale(corpus_dir):
    """A full decode needs 120 MB for pixels alone; JPEG draft mode decodes at 1/4 scale instead."""
    measure = (
        "import resource, sys, time\n"
        "from skin_demo.images import load_image\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.perf_counter()\n"
        "shape = load_image(sys.argv[1]).shape\n"
        "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, *shape)\n")
    result = subprocess.run([sys.executable, "-c", measure, str(corpus_dir / FORTY_MEGAPIXELS)],
                            cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    seconds, extra_kib, height, width, _ = (float(v) for v in result.stdout.split())
    assert (height, width) == (768, WORKING_SIDE)
    assert extra_kib < 40 * 1024
    assert seconds < 3


def test_cli_reports_each_bad_file_and_still_predicts_the_good_one(corpus_dir, tiny_model_dir):
    """One CLI run (TensorFlow starts once): results on stdout, one line per bad file on stderr, exit code 2."""
    files = [str(corpus_dir / name) for name in [CLI_GOOD, *CLI_BAD]]
    result = subprocess.run([sys.executable, "-m", "skin_demo", "predict", "--model", str(tiny_model_dir), *files],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0] == files[0]
    assert len(re.findall(r"^\s+\d+\.\d+%", result.stdout, flags=re.MULTILINE)) == len(CLASSES)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(CLI_BAD)
    for name, line in zip(CLI_BAD, errors):
        assert name in line and MESSAGES[name] in line
