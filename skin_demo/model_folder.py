"""The model folder: the one definition of its files, of skin_demo.json (`ModelInfo`) and of its safety checks.

A folder is the layout Keras writes for the Hugging Face Hub (config.json, model.weights.h5,
metadata.json) plus skin_demo.json (what the network is, how it was trained, its metrics, its
calibration and OOD threshold) and README.md (the model card, rendered from skin_demo.json by
`training.card`). Training writes folders; serving only reads them, after `check_safe_folder`
(required files, no pickles, no Lambda layers, optional pinned digests), with
`keras.saving.load_model(folder, safe_mode=True)`. A folder may also keep what its model served on the
test split (`StoredPredictions`, plain arrays), from which the app's Leaderboard draws its curves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classes import CLASSES

INFO_FILE = "skin_demo.json"
KERAS_FILES = ("config.json", "model.weights.h5", "metadata.json")
REQUIRED_FILES = (*KERAS_FILES, INFO_FILE)
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "README.md"
CONFUSION_MATRIX_FILE = "confusion_matrix_normalized.png"
OOD_FILE = "ood.npz"  # the OOD detector's arrays (plain numpy, no pickle)
PREDICTIONS_FILE = "test_predictions.npz"  # what the model serves on the test split (StoredPredictions)
TTA_PREDICTIONS_FILE = "test_predictions_tta.npz"  # the same, served with test-time augmentation
TEMPERATURE_RANGE = (0.05, 20.0)  # what a fitted temperature may be (skin_demo.json, an ensemble's registry entry)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".dill")


class ModelFolderError(RuntimeError):
    """A model folder is missing files or is not loadable safely; the message says which and why."""


@dataclass
class ModelInfo:
    """skin_demo.json. Metrics per split are `metrics.compute_metrics` dicts ("val", "test") plus the
    calibration record of each ("val_calibrated", "test_calibrated")."""

    name: str
    backbone: str
    input_size: tuple[int, int]  # (height, width) of the network's input
    classes: tuple[str, ...] = CLASSES
    input: str = "RGB pixels 0-255, float32; preprocessing is inside the model"
    last_conv_layer: str | None = None  # Grad-CAM's layer and the OOD detector's features
    pretrained: str = "?"
    parameters: int = 0
    training: dict = field(default_factory=dict)  # the TrainConfig of the run
    training_seconds: float = 0.0
    epochs_run: int = 0
    history: list = field(default_factory=list)  # per epoch: training logs and validation scores
    continued_from: list = field(default_factory=list)  # earlier runs this one continued, oldest first
    split_file: str | None = None
    split_sha256: str | None = None
    environment: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    temperature: float | None = None  # fitted on validation by training.calibrate; None = uncalibrated
    logit_adjustment: dict | None = None  # {"tau", "prior", "rule"}: log p + tau log prior, tau chosen on validation
    selection: dict | None = None  # which epoch's weights were kept, by which rule on validation
    ood: dict | None = None  # the OOD detector's threshold and how it was scored (training.fit_ood)
    members: tuple[str, ...] = ()  # an ensemble's member names (composite classifiers only)
    tta: str | None = None  # how test-time augmentation averages (composite classifiers only)

    # written only when set, so a folder's skin_demo.json reads back and writes out unchanged
    _OPTIONAL = ("continued_from", "temperature", "logit_adjustment", "selection", "ood", "members", "tta")

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.classes = tuple(self.classes)
        self.members = tuple(self.members)

    @property
    def test_metrics(self) -> dict:
        return self.metrics.get("test") or {}

    @property
    def served_test_ece(self) -> float | None:
        """Test ECE as the folder serves it (after its temperature); older folders kept it under test_calibrated."""
        return self.metrics.get("test_calibrated", {}).get("ece_after", self.test_metrics.get("ece"))

    @property
    def served_temperature(self) -> float:
        return 1.0 if self.temperature is None else float(self.temperature)

    @property
    def total_training_seconds(self) -> float:
        """This run and every run it continued."""
        return (self.training_seconds or 0) + sum(run.get("training_seconds") or 0 for run in self.continued_from)

    def replace(self, **changes) -> "ModelInfo":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key in self._OPTIONAL:
            if data[key] in (None, [], ()):
                del data[key]
        data["input_size"], data["classes"] = list(self.input_size), list(self.classes)
        if "members" in data:
            data["members"] = list(self.members)
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = "skin_demo.json") -> "ModelInfo":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelFolderError(f"{where} has unknown field(s) {', '.join(unknown)}.")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ModelFolderError(f"{where} is incomplete or malformed: {exc}") from None

    @classmethod
    def read(cls, folder) -> "ModelInfo":
        path = Path(folder) / INFO_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFolderError(f"Model folder {folder} is missing {INFO_FILE}.") from None
        except (OSError, ValueError) as exc:
            raise ModelFolderError(f"{path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ModelFolderError(f"{path} is not a JSON object.")
        return cls.from_dict(data, str(path))

    def write(self, folder) -> Path:
        path = Path(folder) / INFO_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def fresh_predictions(folder, info: "ModelInfo", split: str = "test", tta: bool = False,
                      served: str = "model") -> "StoredPredictions":
    """What a folder stores for a split, only if the folder still serves exactly that (`served`: how the
    registry entry serves it); otherwise a ModelFolderError saying why not: missing, unreadable, served
    another way, of another split, other weights or another decision rule."""
    path = Path(folder) / predictions_file(split, tta)
    if not path.is_file():
        raise ModelFolderError(f"no stored {'TTA ' if tta else ''}{split}-split predictions in {folder}")
    stored = StoredPredictions.read(path)
    if stored.served_as != served:
        raise ModelFolderError(f"{path} holds predictions served as {stored.served_as!r}, not as this entry "
                               f"serves ({served!r})")
    if stored.split != split:
        raise ModelFolderError(f"{path} holds {stored.split}-split predictions, not {split}-split ones")
    stale = stored.stale_reason(folder, info)
    if stale:
        raise ModelFolderError(f"{path} is stale: {stale}")
    return stored


def check_model_folder(folder) -> Path:
    """The folder, once it is a directory holding every required file."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a model folder" if folder.is_file() else "does not exist"
        raise ModelFolderError(f"Model folder {folder} {what}.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelFolderError(f"Model folder {folder} is missing {', '.join(missing)}.")
    return folder


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lambda_layers(config) -> list[str]:
    """Names of layers whose class is a Lambda (code in the config), anywhere in a Keras config."""
    found = []
    if isinstance(config, dict):
        if "lambda" in str(config.get("class_name", "")).lower():
            found.append(str(config.get("config", {}).get("name", config["class_name"])))
        for value in config.values():
            found += _lambda_layers(value)
    elif isinstance(config, list):
        for value in config:
            found += _lambda_layers(value)
    return found


def check_safe_folder(folder, sha256: dict[str, str] | None = None) -> Path:
    """The folder, once it has the required files, no pickle-style files, no Lambda layers and matching digests."""
    folder = check_model_folder(folder)
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelFolderError(f"Model folder {folder} contains pickle-style files ({', '.join(pickles)}); "
                               "refusing it because loading those can run code.")
    try:
        lambdas = _lambda_layers(json.loads((folder / "config.json").read_text()))
    except ValueError as exc:
        raise ModelFolderError(f"config.json in {folder} is not valid JSON: {exc}") from exc
    if lambdas:
        raise ModelFolderError(f"Model in {folder} has Lambda layers ({', '.join(lambdas)}); refusing it because "
                               "they carry code.")
    for filename, expected in (sha256 or {}).items():
        if not (folder / filename).is_file():
            raise ModelFolderError(f"Model folder {folder} has no {filename} to check against its sha256.")
        actual = file_sha256(folder / filename)
        if actual != expected:
            raise ModelFolderError(f"{filename} has sha256 {actual[:16]}..., the registry expects "
                                   f"{expected[:16]}...: the file is not the one that was pinned.")
    return folder


def load_model_folder(folder) -> tuple[object, ModelInfo]:
    """(keras model, info) from a checked model folder, loaded with safe_mode=True (no code runs on load)."""
    import keras  # deferred: reading and checking folders (registry listings, cards) needs no TensorFlow

    folder = check_safe_folder(folder)
    info = ModelInfo.read(folder)
    if info.classes != CLASSES:
        raise ModelFolderError(f"Model in {folder} predicts {list(info.classes)}, expected {list(CLASSES)}.")
    try:
        model = keras.saving.load_model(str(folder), compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelFolderError(f"Model in {folder} could not be loaded safely: {exc}") from exc
    return model, info


# ----------------------------------------------------------------------------- stored predictions

PREDICTIONS_ARRAYS = ("labels", "probabilities", "image_ids", "classes", "split", "served_as", "split_sha256",
                      "weights_sha256", "decision_rule")


def predictions_file(split: str = "test", tta: bool = False) -> str:
    """File name of a folder's stored predictions on a split, of the model itself or with TTA
    (PREDICTIONS_FILE and TTA_PREDICTIONS_FILE for the test split)."""
    return f"{split}_predictions{'_tta' if tta else ''}.npz"


def decision_rule(info: ModelInfo) -> str:
    """The folder's decision rule (logit adjustment, temperature) as canonical JSON: stored probabilities
    are what was served only while the rule is unchanged."""
    adjustment = info.logit_adjustment
    if adjustment and adjustment.get("tau"):
        adjustment = {"tau": adjustment["tau"], "prior": list(adjustment["prior"])}
    else:
        adjustment = None
    return json.dumps({"temperature": info.served_temperature, "logit_adjustment": adjustment}, sort_keys=True)


@dataclass(frozen=True, eq=False)
class StoredPredictions:
    """The served probabilities of a model folder on one labelled split, kept in the folder.

    One .npz of plain arrays (read with allow_pickle=False): labels int32 (n,), probabilities float32
    (n, 7) as served (after the folder's decision rule; averaged over views when `served_as` says TTA),
    image_ids text (n,), and what they came from: the classes, the split and its file's sha256, the weights
    file's sha256 and the decision rule, so a file an earlier model left behind is seen as stale
    (`stale_reason`). Written by `training.evaluate.save_split_predictions`."""

    labels: np.ndarray
    probabilities: np.ndarray
    image_ids: np.ndarray
    split: str = "test"
    served_as: str = "model"  # or "tta: <how the views are averaged>"
    split_sha256: str = ""
    weights_sha256: str = ""
    decision_rule: str = ""
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the arrays once, here
        set_(self, "labels", np.asarray(self.labels, dtype="int32"))
        set_(self, "probabilities", np.asarray(self.probabilities, dtype="float32"))
        set_(self, "image_ids", np.asarray(self.image_ids, dtype=str))
        set_(self, "classes", tuple(str(c) for c in self.classes))
        n = len(self.labels)
        if self.labels.ndim != 1 or self.probabilities.shape != (n, len(self.classes)) or self.image_ids.shape != (n,):
            raise ModelFolderError(f"Stored predictions need labels (n,), probabilities (n, {len(self.classes)}) "
                                   f"and image_ids (n,); got {self.labels.shape}, {self.probabilities.shape} and "
                                   f"{self.image_ids.shape}.")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ModelFolderError("Stored predictions have labels outside the classes.")
        if not np.isfinite(self.probabilities).all():
            raise ModelFolderError("Stored predictions have probabilities that are not finite numbers.")

    def write(self, path) -> Path:
        """Write the .npz (compressed; through a temporary file, so a reader never sees half a file)."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(partial, labels=self.labels, probabilities=self.probabilities, image_ids=self.image_ids,
                            classes=np.asarray(self.classes), split=np.asarray(self.split),
                            served_as=np.asarray(self.served_as), split_sha256=np.asarray(self.split_sha256),
                            weights_sha256=np.asarray(self.weights_sha256),
                            decision_rule=np.asarray(self.decision_rule))
        os.replace(partial, path)
        return path

    @classmethod
    def read(cls, path) -> "StoredPredictions":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in PREDICTIONS_ARRAYS if key in data.files}
        except FileNotFoundError:
            raise ModelFolderError(f"{path} does not exist.") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFolderError(f"{path} is not a readable predictions file: {exc}") from None
        missing = [key for key in PREDICTIONS_ARRAYS if key not in arrays]
        if missing:
            raise ModelFolderError(f"{path} is missing the array(s) {', '.join(missing)}.")
        texts = {key: str(arrays.pop(key)) for key in ("split", "served_as", "split_sha256", "weights_sha256",
                                                       "decision_rule")}
        try:
            stored = cls(**arrays, **texts)
        except ModelFolderError as exc:
            raise ModelFolderError(f"{path}: {exc}") from None
        if stored.classes != CLASSES:
            raise ModelFolderError(f"{path} has probabilities of {list(stored.classes)}, expected {list(CLASSES)}.")
        return stored

    def stale_reason(self, folder, info: ModelInfo) -> str | None:
        """Why these are not what the folder's model serves now (other weights, another decision rule,
        another split), else None."""
        weights = Path(folder) / WEIGHTS_FILE
        if weights.is_file() and file_sha256(weights) != self.weights_sha256:
            return f"they were computed with other weights than the folder's {WEIGHTS_FILE}"
        if decision_rule(info) != self.decision_rule:
            return "the folder's decision rule (temperature or logit adjustment) changed since"
        if info.split_sha256 and self.split_sha256 != info.split_sha256:
            return "they are from another split file than the one the model card reports on"
        return None

