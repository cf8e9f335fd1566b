"""Compiled inference around a loaded model folder.

`Classifier` is the plain contract the rest of the package uses: call it on a batch of RGB images
at its input size and get class probabilities (as lime expects), or `predict` one image from any
source. The forward pass is a traced tf.function: eager `model(x)` costs 10-40x more per call;
`accelerate()` moves it to onnxruntime (runtime.py: ~2x faster, checked against Keras), which the
hundreds of forward passes of a LIME explanation need.
Probabilities are temperature-calibrated when the folder's skin_demo.json has a "temperature"
(calibration.py); the saved Keras model itself is never changed, so `raw_probabilities` stays available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration import apply_temperature
from .classes import CLASSES
from .images import fit_batch, fit_to_input, load_image
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
        self._spec = tf.TensorSpec([None, *self.input_size, 3], tf.float32)
        traced = tf.function(lambda x: model(x, training=False), input_signature=[self._spec])
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
        from .runtime import BATCH as ONNX_BATCH, RuntimeUnavailable, onnx_forward

        if self.runtime != "keras":
            return None
        try:
            forward = onnx_forward(self.model, self.input_size, self._keras_forward)
        except RuntimeUnavailable as error:
            return str(error)
        self._forward, self._batch, self.runtime = forward, ONNX_BATCH, "onnxruntime"
        return None

    @property
    def temperature(self) -> float:
        return float(self.info.get("temperature", 1.0))

    def __call__(self, images) -> np.ndarray:
        """Calibrated probabilities (n, 7) for a batch of RGB images (n, height, width, 3) at the input size.

        The answer for the last read-only batch is remembered, so when LIME compares an ensemble with
        its own members on one rendered batch each network runs once (a read-only array cannot
        change behind the cache's back)."""
        last = self._last
        if last is not None and last[0] is images:
            return last[1]
        probabilities = apply_temperature(self.raw_probabilities(images), self.temperature)
        if isinstance(images, np.ndarray) and not images.flags.writeable:
            self._last = (images, probabilities)
        return probabilities

    def raw_probabilities(self, images) -> np.ndarray:
        """The saved model's own softmax output, before temperature scaling."""
        return self._batched(self._forward, images, self._batch)

    def features(self, images) -> np.ndarray:
        """Global average of the Grad-CAM layer's output ("avg_pool" for pretrained backbones), (n, channels)."""
        if self._pooled is None:
            import keras
            import tensorflow as tf

            conv = self.model.get_layer(self.info["last_conv_layer"]).output
            pooled = keras.Model(self.model.inputs, keras.layers.GlobalAveragePooling2D()(conv))
            traced = tf.function(lambda x: pooled(x, training=False), input_signature=[self._spec])
            self._pooled = lambda x: traced(x).numpy()
        return self._batched(self._pooled, images)

    def _batched(self, forward, images, batch: int = BATCH) -> np.ndarray:
        images = fit_batch(images, self.input_size)
        starts = range(0, len(images), batch) or [0]  # an empty batch still gets its (0, width) answer
        return np.concatenate([forward(images[i:i + batch]) for i in starts])

    def ood_detector(self):
        """The folder's OOD detector (`python -m skin_demo ood-fit`); raises OodUnavailable without one."""
        if self._ood_detector is None:
            from .ood import load_detector

            self._ood_detector = load_detector(self.folder, self.info)
        return self._ood_detector

    def ood(self, source) -> tuple[float, bool]:
        """(distance from the training lesions, True when beyond the threshold) for one image from any source."""
        detector = self.ood_detector()
        score = float(detector.score(self.features(self.prepare(source)[None]))[0])
        return score, bool(detector.is_outlier(score))

    def prepare(self, source) -> np.ndarray:
        """Any image source -> float32 array at this model's input size (raises ImageError)."""
        return fit_to_input(load_image(source), self.input_size)

    def predict(self, source) -> dict[str, float]:
        """Class code -> probability for one image from any source, highest first."""
        probs = self(self.prepare(source)[None])[0]
        order = np.argsort(-probs)
        return {CLASSES[i]: float(probs[i]) for i in order}
