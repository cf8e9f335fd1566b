"""Compiled, calibrated inference around a loaded model folder.

`Classifier` is the plain contract the rest of the package uses: call it on a batch of RGB images
at its input size and get class probabilities (as lime expects), or `predict` one image from any
source. The forward pass is a traced tf.function (engines.py); `accelerate()` moves it to
onnxruntime (~2x faster, checked against Keras), which the hundreds of forward passes of a LIME
explanation need. What it serves is `served_probabilities`: the saved model's softmax with the
folder's decision rule applied (logit adjustment toward the class prior, then temperature, both
chosen on validation by the training code); the saved Keras model itself is never changed, so
`raw_probabilities` stays available.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from ..classes import CLASSES
from ..images import fit_batch, load_fitted
from ..model_folder import ModelInfo, load_model_folder
from . import engines
from .ood import OodDetector

BATCH = 64


def log_probabilities(probs) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probs, dtype="float64"), np.finfo("float32").tiny))


def adjust_logits(probs, tau: float, prior) -> np.ndarray:
    """softmax(log p + tau log prior), row by row: tau = 0 is the identity, tau > 0 moves predictions toward
    frequent classes (a model trained on balanced batches otherwise acts as if all classes were equally common)."""
    if tau == 0:
        return probs
    shifted = log_probabilities(probs) + tau * np.log(np.asarray(prior, dtype="float64"))
    shifted -= shifted.max(axis=1, keepdims=True)
    out = np.exp(shifted)
    return (out / out.sum(axis=1, keepdims=True)).astype("float32")


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """softmax(log p / T), row by row; T = 1 returns the probabilities unchanged."""
    if temperature == 1.0:
        return probs
    scaled = log_probabilities(probs) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    out = np.exp(scaled)
    return (out / out.sum(axis=1, keepdims=True)).astype("float32")


def served_probabilities(raw, info: ModelInfo) -> np.ndarray:
    """The folder's decision rule on the model's softmax: logit adjustment, then temperature scaling."""
    adjustment = info.logit_adjustment
    if adjustment:
        raw = adjust_logits(raw, adjustment["tau"], adjustment["prior"])
    return apply_temperature(raw, info.served_temperature)


def ranked(probs) -> dict[str, float]:
    """Class code -> probability of one image, highest first."""
    order = np.argsort(-probs)
    return {CLASSES[i]: float(probs[i]) for i in order}


class Classifier:
    def __init__(self, model, info: ModelInfo, name: str | None = None, folder=None):
        self.model = model
        self.folder = Path(folder) if folder else None
        self.info = info
        self.name = name or info.name or model.name
        self.input_size = info.input_size
        traced = engines.traced_forward(model, self.input_size)
        self._keras_forward = lambda x: traced(x).numpy()
        self._forward, self._batch = self._keras_forward, BATCH
        self.runtime = "keras"
        self._last = None  # (read-only batch, its probabilities)
        self._pooled = None  # traced on first use: only the OOD warning needs features
        self._ood_detector = None

    @classmethod
    def from_folder(cls, folder, name: str | None = None) -> "Classifier":
        model, info = load_model_folder(folder)
        return cls(model, info, name or Path(folder).name, folder)

    def accelerate(self) -> str | None:
        """Serve probabilities through onnxruntime from now on; returns why not (Keras stays) or None."""
        if self.runtime != "keras":
            return None
        try:
            forward = engines.onnx_forward(self.model, self.input_size, self._keras_forward)
        except engines.RuntimeUnavailable as error:
            return str(error)
        self._forward, self._batch, self.runtime = forward, engines.BATCH, "onnxruntime"
        return None

    def __call__(self, images) -> np.ndarray:
        """Served probabilities (n, 7) for a batch of RGB images (n, height, width, 3) at the input size.

        The answer for the last read-only batch is remembered, so when LIME compares an ensemble with
        its own members on one rendered batch each network runs once (a read-only array cannot
        change behind the cache's back)."""
        last = self._last
        if last is not None and last[0] is images:
            return last[1]
        probabilities = served_probabilities(self.raw_probabilities(images), self.info)
        if isinstance(images, np.ndarray) and not images.flags.writeable:
            self._last = (images, probabilities)
        return probabilities

    def raw_probabilities(self, images) -> np.ndarray:
        """The saved model's own softmax output, before temperature scaling."""
        return self._batched(self._forward, images, self._batch)

    def features(self, images) -> np.ndarray:
        """Global average of the Grad-CAM layer's output ("avg_pool" for pretrained backbones), (n, channels)."""
        if self._pooled is None:
            conv = self.model.get_layer(self.info.last_conv_layer).output
            pooled = keras.Model(self.model.inputs, keras.layers.GlobalAveragePooling2D()(conv))
            traced = engines.traced_forward(pooled, self.input_size)
            self._pooled = lambda x: traced(x).numpy()
        return self._batched(self._pooled, images)

    def _batched(self, forward, images, batch: int = BATCH) -> np.ndarray:
        images = fit_batch(images, self.input_size)
        if not len(images):  # TensorFlow refuses a batch of 0; the answer to no images is no rows
            return np.zeros((0, forward(np.zeros((1, *self.input_size, 3), "float32")).shape[1]), "float32")
        return np.concatenate([forward(images[i:i + batch]) for i in range(0, len(images), batch)])

    def ood_detector(self) -> OodDetector:
        """The folder's OOD detector (`python -m skin_demo ood-fit`); raises OodUnavailable without one."""
        if self._ood_detector is None:
            self._ood_detector = OodDetector.from_folder(self.folder, self.info)
        return self._ood_detector

    def ood(self, source) -> tuple[float, bool]:
        """(distance from the training lesions, True when beyond the threshold) for one image from any source."""
        detector = self.ood_detector()
        score = float(detector.score(self.features(self.prepare(source)[None]))[0])
        return score, bool(detector.is_outlier(score))

    def prepare(self, source) -> np.ndarray:
        """Any image source -> float32 array at this model's input size (raises ImageError)."""
        return load_fitted(source, self.input_size)

    def predict(self, source) -> dict[str, float]:
        """Class code -> probability for one image from any source, highest first."""
        return ranked(self(self.prepare(source)[None])[0])
