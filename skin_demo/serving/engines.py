"""The two engines that run a Keras model: its traced TensorFlow function, and onnxruntime.

A traced tf.function is what every forward pass uses (an eager `model(x)` costs 10-40x more per call).

On 2 cores onnxruntime runs MobileNetV2 at 150x200 in ~2.0 ms per image (batches of 4) against
~4.1 ms for the compiled Keras call at its best batch size, which halves the cost of a LIME
explanation (hundreds of forward passes). The Keras model stays the source of truth: the ONNX graph is
converted from it (tf2onnx), accepted only if its probabilities match Keras's on a probe batch, and
cached on disk under a digest of the weights so a changed model is never served a stale graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

ONNX_OPSET = 17
BATCH = 4  # onnxruntime's sweet spot on 2 cores (MobileNetV2: 2.0 ms per image at 4, 2.3 at 16, 2.4 at 50)
TOLERANCE = 1e-4  # max |probability difference| against Keras on the probe batch (measured: ~1e-6)
log = logging.getLogger(__name__)


class RuntimeUnavailable(RuntimeError):
    """onnxruntime cannot serve this model; the Keras path is used instead."""


def cache_dir() -> Path:
    return Path(os.environ.get("SKIN_DEMO_CACHE") or Path.home() / ".cache" / "skin_demo") / "onnx"


def traced_forward(model, input_size, batch: int | None = None):
    """`model` in inference mode as a tf.function on float32 RGB batches (n, height, width, 3); batch None = any n."""
    spec = tf.TensorSpec([batch, *input_size, 3], tf.float32, name="rgb_0_255")
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def to_onnx(model, input_size, batch: int | None = None) -> bytes:
    """The Keras model (RGB 0-255 in, softmax out) as an ONNX graph; batch None = any batch size."""
    import tf2onnx  # deferred: an optional engine, and tf2onnx takes seconds to import

    function = traced_forward(model, input_size, batch)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=ONNX_OPSET)
    return proto.SerializeToString()


def _digest(model, input_size) -> str:
    import tf2onnx  # deferred, as in to_onnx

    digest = hashlib.sha256(repr((tuple(input_size), ONNX_OPSET, tf2onnx.__version__)).encode())
    for variable in model.weights:
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()[:32]


def _cached_graph(model, input_size) -> bytes:
    """The converted graph from the cache, or converted now (~3-5 s) and cached when the cache is writable."""
    path = cache_dir() / f"{_digest(model, input_size)}.onnx"
    if path.is_file():
        return path.read_bytes()
    graph = to_onnx(model, input_size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(graph)
        partial.replace(path)
    except OSError as error:  # a read-only home still gets the speed, just not the cache
        log.info("ONNX cache not written (%s)", error)
    return graph


def probe_batch(input_size) -> np.ndarray:
    """Images that exercise the whole value range: noise, flat grey, a gradient (deterministic)."""
    height, width = input_size
    noise = np.random.default_rng(0).uniform(0, 255, (2, height, width, 3))
    grey = np.full((1, height, width, 3), 128.0)
    ramp = np.broadcast_to(np.linspace(0, 255, width)[None, None, :, None], (1, height, width, 3))
    return np.concatenate([noise, grey, ramp]).astype("float32")


def onnx_forward(model, input_size, keras_forward):
    """A function batch -> probabilities run by onnxruntime, checked against `keras_forward`.

    Raises RuntimeUnavailable (with the reason) when onnxruntime or the conversion is missing or
    the graph disagrees with Keras."""
    try:
        import onnxruntime  # deferred: optional; without it Keras serves
    except ImportError as error:
        raise RuntimeUnavailable(f"onnxruntime is not installed ({error})") from error
    try:
        graph = _cached_graph(model, input_size)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        # idle threads must sleep, not spin: compare mode alternates between models' sessions, and
        # spinning ones steal the cores (measured: 4 models interleaved 4.9 s -> 3.1 s)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # tf2onnx/onnxruntime raise many types for unsupported graphs
        raise RuntimeUnavailable(f"ONNX conversion failed: {type(error).__name__}: {error}") from error
    input_name = session.get_inputs()[0].name

    def forward(images: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: np.ascontiguousarray(images, dtype="float32")})[0]

    probe = probe_batch(input_size)
    difference = float(np.abs(forward(probe) - keras_forward(probe)).max())
    if not difference <= TOLERANCE:
        raise RuntimeUnavailable(f"onnxruntime differs from Keras by {difference:.2g} on the probe batch")
    return forward
