"""Mobile export: TFLite (float or int8) and ONNX files of a model folder, and how they compare with Keras.

The exported graph is the saved model as is (RGB 0-255 in, uncalibrated softmax out, batch 1); the
folder's temperature is applied by `ExportedClassifier`, as `Classifier` does. Two quantisations:
"int8" is full integer (weights and activations, ranges from training-split images; float input and
output so the app's pixels go in unchanged), the fastest; "int8-weights" (dynamic range: int8 weights,
float activations) is as small. MobileNet v1 0.75 with int8 weights loses nothing; the flagship MobileNetV2
loses 2-3 points, because rounding its convolution weights to 8 bits alone (per channel, no activation
quantisation) already changes a fifth of its validation answers: it needs quantisation-aware training.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import onnxruntime
import tensorflow as tf

from ..images import fit_batch
from ..metrics import compute_metrics
from ..model_folder import WEIGHTS_FILE, ModelInfo
from ..serving import engines
from ..serving.classifier import Classifier, served_probabilities
from .data import split_arrays

FORMATS = ("tflite", "onnx")
QUANTIZATIONS = ("int8", "int8-weights")
REPRESENTATIVE_IMAGES = 200


def default_path(folder, fmt: str, quantization: str | None = None) -> Path:
    folder = Path(folder)
    suffix = "_" + quantization.replace("-", "_") if quantization else ""
    return folder / f"{folder.name}{suffix}.{fmt}"


def to_tflite(classifier: Classifier, quantization: str | None = None) -> bytes:
    """Keras 3's own route (ExportArchive -> SavedModel -> converter), restricted to builtin TFLite ops.

    Converting the concrete function directly loses the weights (resource variables) in TF 2.21."""
    with tempfile.TemporaryDirectory() as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(classifier.model)
        archive.add_endpoint("serve", engines.traced_forward(classifier.model, classifier.input_size, batch=1))
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        if quantization:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic range (int8 weights)
        if quantization == "int8":
            _quantise_int8(converter, classifier)
        return converter.convert()


def _quantise_int8(converter, classifier: Classifier) -> None:
    """Full integer quantisation; activation ranges from REPRESENTATIVE_IMAGES training-split images."""
    images, _ = split_arrays("train", classifier.input_size, REPRESENTATIVE_IMAGES)
    converter.representative_dataset = lambda: ([image[None].astype("float32")] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def to_onnx(classifier: Classifier) -> bytes:
    return engines.to_onnx(classifier.model, classifier.input_size, batch=1)


def export(folder, fmt: str, quantization: str | None = None, out=None) -> Path:
    """Write the exported file and return its path: `out`, or inside `out` when it is a folder (by default the
    model folder), named like mobilenet_v2_int8.tflite."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if quantization not in (None, *QUANTIZATIONS):
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {quantization!r}")
    if quantization and fmt != "tflite":
        raise ValueError("Quantisation is for --format tflite only.")
    path = default_path(folder, fmt, quantization)
    if out is not None:
        out = Path(out)
        path = out / path.name if out.is_dir() else out
        if not path.parent.is_dir():
            raise ValueError(f"Cannot write {path}: the folder {path.parent} does not exist.")
        if path.suffix != f".{fmt}":  # the runtime that reads it back is chosen by the suffix
            raise ValueError(f"Cannot write {path}: a {fmt} file must end in .{fmt}.")
    classifier = Classifier.from_folder(folder)
    path.write_bytes(to_tflite(classifier, quantization) if fmt == "tflite" else to_onnx(classifier))
    return path


class ExportedClassifier:
    """The Classifier contract around an exported file, run by the TFLite interpreter or onnxruntime."""

    def __init__(self, path, info: ModelInfo, name: str | None = None):
        self.path, self.info = Path(path), info
        self.name = name or self.path.stem
        self.input_size = info.input_size
        if self.path.suffix == ".tflite":
            interpreter = tf.lite.Interpreter(model_path=str(self.path))
            interpreter.allocate_tensors()
            input_index = interpreter.get_input_details()[0]["index"]
            output_index = interpreter.get_output_details()[0]["index"]

            def run(image):
                interpreter.set_tensor(input_index, image)
                interpreter.invoke()
                return interpreter.get_tensor(output_index)
        else:
            session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            input_name = session.get_inputs()[0].name

            def run(image):
                return session.run(None, {input_name: image})[0]
        self._run_one = run

    def raw_probabilities(self, images) -> np.ndarray:
        return np.concatenate([self._run_one(image[None]) for image in fit_batch(images, self.input_size)])

    def __call__(self, images) -> np.ndarray:
        return served_probabilities(self.raw_probabilities(images), self.info)

    prepare = Classifier.prepare
    predict = Classifier.predict


def latency_ms(classifier, images, repeats: int = 3) -> float:
    """Median milliseconds per image at batch 1 (after one warm-up call)."""
    classifier(images[:1])
    times = []
    for image in list(images) * repeats:
        start = time.perf_counter()
        classifier(image[None])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def compare_with_keras(folder, exported_path, limit: int | None = None, latency_images: int = 20) -> dict:
    """File size, batch-1 latency, test-split balanced accuracy and top-1 agreement: Keras vs the exported file."""
    keras_classifier = Classifier.from_folder(folder)
    exported = ExportedClassifier(exported_path, keras_classifier.info)
    images, labels = split_arrays("test", keras_classifier.input_size, limit)
    images = images.astype("float32")
    report = {"model": keras_classifier.name, "exported": str(exported_path), "n": int(len(labels))}
    predictions = {}
    for kind, classifier, size_path in (("keras", keras_classifier, Path(folder) / WEIGHTS_FILE),
                                        ("exported", exported, Path(exported_path))):
        probs = classifier(images)
        predictions[kind] = probs.argmax(axis=1)
        metrics = compute_metrics(labels, probs)
        report[kind] = {"file_bytes": size_path.stat().st_size, "balanced_accuracy": metrics["balanced_accuracy"],
                        "macro_auc": metrics["macro_auc"],
                        "latency_ms": latency_ms(classifier, images[:latency_images])}
    report["top1_agreement"] = float(np.mean(predictions["keras"] == predictions["exported"]))
    report["float32_weight_bytes"] = 4 * keras_classifier.model.count_params()  # the h5 file also holds optimizer state
    report["size_ratio"] = report["float32_weight_bytes"] / report["exported"]["file_bytes"]
    report["balanced_accuracy_drop"] = report["keras"]["balanced_accuracy"] - report["exported"]["balanced_accuracy"]
    return report
