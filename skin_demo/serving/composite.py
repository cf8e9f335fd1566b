"""Test-time augmentation and ensembles, with the call contract of `classifier.Classifier`.

Both take a batch of RGB images at `input_size` and return averaged (calibrated) probabilities, so the
service, the UI and LIME use them like any model. Grad-CAM needs one network: a TTA classifier offers
its base model's; an ensemble has none.
"""

from __future__ import annotations

import numpy as np

from ..images import fit_batch
from ..model_folder import ModelInfo
from .classifier import Classifier, apply_temperature

TTA_SERVED = "8 dihedral views averaged"  # how a TTA entry serves, as its info and stored predictions say


def served_as(tta: bool) -> str:
    """How stored predictions say they were served: by the model itself, or with test-time augmentation."""
    return f"tta: {TTA_SERVED}" if tta else "model"


def dihedral_views(images: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and quarter turns of a batch, each in the batch's own frame.

    Lesions have no up direction, so every view is as valid as the original. A quarter turn of a
    non-square image is cut to the frame along its long side and mirrored out along its short one: the
    picture a 90° turn of training's augmentation gives (REFLECT fill), so the model has seen such views.
    The first view is the batch object itself, so a Classifier that has just answered for it (when LIME
    compares a TTA entry with its base model) answers from memory."""
    views = []
    for quarter_turns in range(4):
        turned = _turn_in_frame(images, quarter_turns) if quarter_turns else images
        views += [turned, turned[:, :, ::-1]]
    return views


def _turn_in_frame(images: np.ndarray, quarter_turns: int) -> np.ndarray:
    turned = np.rot90(images, quarter_turns, axes=(1, 2))
    (height, width), (turned_height, turned_width) = images.shape[1:3], turned.shape[1:3]
    top, left = max(turned_height - height, 0) // 2, max(turned_width - width, 0) // 2
    cropped = turned[:, top:top + height, left:left + width]
    rows, columns = height - cropped.shape[1], width - cropped.shape[2]
    return np.pad(cropped, ((0, 0), (rows // 2, rows - rows // 2), (columns // 2, columns - columns // 2), (0, 0)),
                  mode="symmetric")


def ensemble_probabilities(member_probabilities, temperature: float | None = None) -> np.ndarray:
    """The mean of the members' calibrated probabilities, then the ensemble's own temperature (fitted on
    validation by `calibrate --entry`: a mean of calibrated networks is under-confident, as their errors
    differ). Used for requests and for the stored predictions alike."""
    mean = np.mean(member_probabilities, axis=0)
    return mean if temperature is None else apply_temperature(mean, temperature)


class _Composite:
    """What TTA and ensembles share: the Classifier contract around a probability function."""

    def __init__(self, name: str, first, info: ModelInfo):
        self.name, self.info, self._first = name, info, first
        self.input_size = first.input_size
        self.folder = None

    def prepare(self, source) -> np.ndarray:
        return self._first.prepare(source)

    predict = Classifier.predict

    @property
    def runtime(self) -> str:
        return " + ".join(sorted({network.runtime for network in self._networks()}))

    def accelerate(self) -> str | None:
        """Move every network inside to onnxruntime (Classifier.accelerate); the first reason one stays on Keras."""
        reasons = [network.accelerate() for network in self._networks()]
        return next((reason for reason in reasons if reason), None)

    def ood(self, source) -> tuple[float, bool]:
        """The first (base) model's OOD warning: every member sees the same picture."""
        return self._first.ood(source)


class TtaClassifier(_Composite):
    """A classifier averaged over the dihedral views of each image."""

    def __init__(self, base, name: str | None = None):
        name = name or f"{base.name}_tta"
        super().__init__(name, base, base.info.replace(name=name, tta=TTA_SERVED, metrics={}))
        self.base = base
        self.model = base.model  # Grad-CAM explains the base network

    def _networks(self) -> list:
        return [self.base]

    def __call__(self, images) -> np.ndarray:
        images = fit_batch(images, self.input_size)
        return np.mean([self.base(view) for view in dihedral_views(images)], axis=0)


class EnsembleClassifier(_Composite):
    """The mean of its members' calibrated probabilities at the ensemble's temperature
    (`ensemble_probabilities`); each member fits the images to its own input size."""

    def __init__(self, members: list, name: str = "ensemble", temperature: float | None = None):
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        self.members = list(members)
        info = ModelInfo(name=name, backbone="ensemble of " + ", ".join(m.name for m in members),
                         members=tuple(m.name for m in members), input_size=members[0].input_size,
                         pretrained="members' own", parameters=sum(m.info.parameters for m in members),
                         temperature=temperature)
        super().__init__(name, members[0], info)

    def _networks(self) -> list:
        return self.members

    def __call__(self, images) -> np.ndarray:
        return ensemble_probabilities([member(images) for member in self.members], self.info.temperature)
