"""Hostile, broken and unusual uploads (the corpus of tools/make_bad_images.py) through the one image loader
and a classifier: every file ends in a usable RGB array or an ImageError with one sentence for a person.

The corpus is generated once per run (about 2 s) by the session fixture `corpus_dir` of tests/conftest.py.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from make_bad_images import CASES, FORTY_MEGAPIXELS
from unit_helpers import TINY_SIZE, assert_one_sentence

from skin_demo.classes import CLASSES
from skin_demo.images import MIN_SIDE, WORKING_SIDE, ImageError, load_image

REPO = Path(__file__).resolve().parents[2]
CASE_IDS = [case.name for case in CASES]
BOMBS = [case.name for case in CASES if case.message == "too many pixels"]


def _assert_refused(case, action):
    with pytest.raises(ImageError) as refusal:
        action()
    assert_one_sentence(str(refusal.value), case.message)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_corpus_file_loads_or_is_refused_in_one_sentence(case, corpus_dir):
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
def test_a_classifier_answers_every_readable_file_and_refuses_the_rest_with_the_same_sentence(
        case, corpus_dir, tiny_classifier):
    path = corpus_dir / case.name
    if case.expect == "error":
        _assert_refused(case, lambda: tiny_classifier.predict(path))
        return
    assert tiny_classifier.prepare(path).shape == (*TINY_SIZE, 3)
    probabilities = tiny_classifier.predict(path)
    assert sorted(probabilities) == sorted(CLASSES)
    assert all(0 <= p <= 1 for p in probabilities.values())
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("name", BOMBS)
def test_a_decompression_bomb_is_refused_from_its_header(name, corpus_dir, monkeypatch):
    """Decoding any of these would take seconds and gigabytes (their data is fake: a decode would say "damaged"),
    so the refusal must come before any pixel is decoded."""
    def decode(self, *args, **kwargs):
        raise AssertionError("a pixel was decoded")
    monkeypatch.setattr(Image.Image, "load", decode)
    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(corpus_dir / name)


def test_forty_megapixels_decode_at_reduced_scale(corpus_dir):
    """A full decode needs 120 MB for pixels alone; JPEG draft mode decodes at 1/4 scale instead.

    Measured in a fresh interpreter that imports only the image loader, so the memory peak is the decode's."""
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
    assert extra_kib < 40 * 1024  # (how long it takes is for benchmarks, not for a test)
