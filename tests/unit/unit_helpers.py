"""Synthetic inputs and message checks shared by the unit tests (a module of its own: no conftest imports)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

TINY_SIZE = (48, 64)  # (height, width) of the tiny test model: landscape, so orientation mistakes show


def synthetic_lesion(height: int = 150, width: int = 200, seed: int = 0) -> np.ndarray:
    """uint8 RGB: a skin-coloured gradient with a dark oval 'lesion' and a little noise."""
    y, x = np.mgrid[0:height, 0:width].astype("float32")
    x, y = x / width, y / height
    rgb = np.stack([200 + 40 * x, 150 + 50 * y, 130 + 30 * x * y], axis=-1)
    rgb[((x - 0.5) / 0.25) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1] *= 0.45
    rgb += np.random.default_rng(seed).normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype("uint8")


def write_image(path, array, **params) -> Path:
    """Save an array with Pillow (format from the suffix) and return the path."""
    path = Path(path)
    Image.fromarray(np.asarray(array, dtype="uint8")).save(path, **params)
    return path


def assert_one_sentence(message: str, *phrases: str) -> None:
    """A message for a person: one line, one sentence ending in a full stop, naming the problem."""
    assert "\n" not in message, message
    assert message.endswith("."), message
    assert not re.search(r"[.!?] [A-Z]", message), f"more than one sentence: {message}"
    for phrase in phrases:
        assert phrase in message, (phrase, message)
