"""Out-of-distribution warning at serving time: is this picture a dermatoscopic lesion image at all?

A 7-class softmax always names a lesion, even for a cat. The detector scores how far an image's
pooled features (global average of the Grad-CAM layer, i.e. "avg_pool" for the pretrained
backbones) lie from the training lesions: a Mahalanobis distance in the top principal components
of the training features (whitened) plus the residual outside them. Its arrays live in the model
folder's OOD_FILE (plain numpy, no pickle), its threshold in `ModelInfo.ood`; both are fitted by
`training.fit_ood`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model_folder import OOD_FILE, ModelInfo

COMPONENTS = 128  # principal directions kept (the rest of the feature space is scored by its residual)


class OodUnavailable(RuntimeError):
    """The model folder has no fitted detector (run `python -m skin_demo ood-fit --model FOLDER`)."""


class OodDetector:
    """Distance of pooled features from the training lesions; larger is stranger.

    Score = squared whitened distance in the top principal directions + squared residual outside them
    divided by its mean per-dimension variance: about chi-square with as many degrees of freedom as
    features for training-like images.
    """

    def __init__(self, mean, components, variances, residual_variance: float, threshold: float = np.inf):
        self.mean = np.asarray(mean, dtype="float32")
        self.components = np.asarray(components, dtype="float32")
        self.variances = np.asarray(variances, dtype="float32")
        self.residual_variance = float(residual_variance)
        self.threshold = float(threshold)

    @classmethod
    def fit(cls, features, components: int = COMPONENTS) -> "OodDetector":
        features = np.asarray(features, dtype="float64")
        mean = features.mean(axis=0)
        centred = features - mean
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        k = min(components, len(singular) - 1, features.shape[1] - 1)
        variances = singular[:k] ** 2 / (len(features) - 1)
        residual = centred - centred @ directions[:k].T @ directions[:k]
        residual_variance = float(np.mean(residual**2)) * features.shape[1] / (features.shape[1] - k)
        return cls(mean, directions[:k], variances, residual_variance or 1.0)

    def score(self, features) -> np.ndarray:
        centred = np.asarray(features, dtype="float32") - self.mean
        projected = centred @ self.components.T
        residual = np.maximum(np.sum(centred**2, axis=1) - np.sum(projected**2, axis=1), 0)
        return np.sum(projected**2 / self.variances, axis=1) + residual / self.residual_variance

    def is_outlier(self, scores) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def save(self, folder) -> Path:
        path = Path(folder) / OOD_FILE
        np.savez(path, mean=self.mean, components=self.components, variances=self.variances,
                 residual_variance=self.residual_variance)
        return path

    @classmethod
    def load(cls, folder, threshold: float) -> "OodDetector":
        with np.load(Path(folder) / OOD_FILE, allow_pickle=False) as arrays:
            return cls(arrays["mean"], arrays["components"], arrays["variances"],
                       float(arrays["residual_variance"]), threshold)

    @classmethod
    def from_folder(cls, folder, info: ModelInfo) -> "OodDetector":
        """The folder's fitted detector at its threshold; OodUnavailable when it has none."""
        if folder is None or info.ood is None or not (Path(folder) / OOD_FILE).is_file():
            raise OodUnavailable(f"{info.name or folder} has no OOD detector; run "
                                 f"`python -m skin_demo ood-fit --model {folder}`.")
        return cls.load(folder, info.ood["threshold"])
