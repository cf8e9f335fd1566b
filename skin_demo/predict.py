"""Compiled inference around a loaded model folder.

`Classifier` is the plain contract the rest of the package uses: call it on a batch of RGB images
at its input size and get class probabilities (as lime expects), or `predict` one image from any
source. The forward pass is a traced tf.function: eager `model(x)` costs 10-40x more per call.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classes import CLASSES
from .images import fit_to_input, load_image
from .modeling import load_model_folder

BATCH = 64


class Classifier:
    def __init__(self, model, info: dict, name: str | None = None, folder=None):
        import tensorflow as tf

        self.model = model
        self.folder = Path(folder) if folder else None
        self.info = info
        self.name = name or info.get("name") or model.name
        self.input_size = tuple(int(v) for v in info["input_size"])
        spec = tf.TensorSpec([None, *self.input_size, 3], tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    @classmethod
    def from_folder(cls, folder, name: str | None = None) -> "Classifier":
        model, info = load_model_folder(folder)
        return cls(model, info, name or Path(folder).name, folder)

    def __call__(self, images) -> np.ndarray:
        """Probabilities (n, 7) for a batch of RGB images (n, height, width, 3) at the input size."""
        images = np.asarray(images, dtype="float32")
        if images.ndim == 3:
            images = images[None]
        if images.shape[1:3] != self.input_size:
            images = np.stack([fit_to_input(image, self.input_size) for image in images])
        out = [self._forward(images[i:i + BATCH]).numpy() for i in range(0, len(images), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), "float32")

    def prepare(self, source) -> np.ndarray:
        """Any image source -> float32 array at this model's input size (raises ImageError)."""
        return fit_to_input(load_image(source), self.input_size)

    def predict(self, source) -> dict[str, float]:
        """Class code -> probability for one image from any source, highest first."""
        probs = self(self.prepare(source)[None])[0]
        order = np.argsort(-probs)
        return {CLASSES[i]: float(probs[i]) for i in order}
