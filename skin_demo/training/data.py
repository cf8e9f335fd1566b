"""HAM10000 metadata, the fixed lesion-disjoint split, and the tf.data input pipeline."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from ..classes import CLASSES
from ..images import load_fitted
from ..lesions import LESIONS_FILE
from ..paths import RESOURCES, SHARED

SPLIT_FILE = RESOURCES / "ham10000_split.csv"
SPLITS = ("train", "val", "test")
SPLIT_SEED = 2026
CAP_PER_CLASS = 450  # Inception-ResNet-v2 study: at most 450 images per class, minority classes augmented up


def data_dir(override=None) -> Path:
    """HAM10000 folder: argument, else $SKIN_DEMO_DATA, else ../shared/data/ham10000 beside the repo."""
    return Path(override or os.environ.get("SKIN_DEMO_DATA", SHARED / "data" / "ham10000"))


class DataUnavailable(ValueError):
    """The HAM10000 folder is not where we look; the message says where and how to point at it."""


def read_metadata(directory=None) -> pd.DataFrame:
    path = data_dir(directory) / "metadata.csv"
    if not path.is_file():
        raise DataUnavailable(f"HAM10000 not found: {path} does not exist (pass --data or set SKIN_DEMO_DATA).")
    return pd.read_csv(path)


def make_split(metadata: pd.DataFrame, fractions=(0.70, 0.15, 0.15), seed: int = SPLIT_SEED) -> pd.DataFrame:
    """Assign whole lesions to train/val/test, stratified by diagnosis (a lesion has one dx)."""
    lesions = metadata.groupby("lesion_id")["dx"].first()
    train_frac, val_frac, test_frac = fractions
    rest, test = train_test_split(lesions.index, test_size=test_frac, stratify=lesions, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_frac / (train_frac + val_frac), stratify=lesions[rest], random_state=seed)
    split_of = {**dict.fromkeys(train, "train"), **dict.fromkeys(val, "val"), **dict.fromkeys(test, "test")}
    out = metadata[["image_id", "lesion_id", "dx"]].copy()
    out["split"] = out["lesion_id"].map(split_of)
    return out.sort_values("image_id").reset_index(drop=True)


def write_split(table: pd.DataFrame, path=SPLIT_FILE, lesions_path=LESIONS_FILE) -> None:
    """The split file, and the lesion of every evaluated image (`lesions.py`: intervals resample lesions)."""
    table[["image_id", "split"]].to_csv(path, index=False)
    evaluated = table[table["split"].isin(("val", "test"))].sort_values("image_id")
    evaluated[["image_id", "lesion_id"]].to_csv(lesions_path, index=False)


def load_split(directory=None, path=SPLIT_FILE) -> pd.DataFrame:
    """Metadata with a `split` column from the committed split file."""
    split = pd.read_csv(path)
    return read_metadata(directory).merge(split, on="image_id", validate="one_to_one")


def split_checksum(path=SPLIT_FILE) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def labelled_split(split: str, directory=None, split_table=None) -> tuple[list[str], np.ndarray]:
    """(image paths, class indices) of one split."""
    table = load_split(directory) if split_table is None else split_table
    rows = table[table["split"] == split]
    root = data_dir(directory)
    paths = [str(root / f"{image_id}.jpg") for image_id in rows["image_id"]]
    labels = rows["dx"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy("int32")
    return paths, labels


def split_sample(split: str, limit: int | None = None, seed: int = 0, directory=None) -> tuple[list[str], np.ndarray]:
    """(image paths, class indices) of one split, or of `limit` images of it drawn at random (in split order)."""
    paths, labels = labelled_split(split, directory)
    if limit is not None and limit < len(paths):
        keep = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
        paths, labels = [paths[i] for i in keep], labels[keep]
    return paths, labels


def split_arrays(split: str, size, limit: int | None = None, seed: int = 0,
                 directory=None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images at `size`, class indices) of `split_sample`."""
    paths, labels = split_sample(split, limit, seed, directory)
    return load_images(paths, size), labels


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """'balanced' weights (n / (k * count)), as scikit-learn computes them."""
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights)}


# ----------------------------------------------------------------------------- decoding

def load_images(paths, size) -> np.ndarray:
    """Decode and fit images exactly as the app does (images.py), as one uint8 array."""
    out = np.empty((len(paths), *size, 3), dtype="uint8")
    for i, path in enumerate(paths):
        out[i] = np.round(load_fitted(path, size)).astype("uint8")
    return out


def predict_uint8(predict_fn, images, batch: int = 64) -> np.ndarray:
    """`predict_fn`'s probabilities for a uint8 image array, converted to float32 a batch at a time (the
    whole training split as float32 would be 2.5 GB)."""
    return np.concatenate([np.asarray(predict_fn(images[i:i + batch].astype("float32")))
                           for i in range(0, len(images), batch)])


# ----------------------------------------------------------------------------- one epoch, deterministic

BALANCES = ("oversample", "weights", "cap")


def epoch_indices(labels, balance: str, batch_size: int, seed: int, epoch: int, epoch_size: int | None = None,
                  cap: int = CAP_PER_CLASS) -> np.ndarray:
    """Which training images one epoch shows, in order: (steps * batch_size,) indices into `labels`.

    Drawn from (seed, epoch) alone, so an epoch is the same whether the run went through or was resumed.
    'oversample': every image's class is drawn uniformly first (balanced batches), then an image of it;
    'weights': a plain shuffle (pair with class weights in the loss); 'cap': at most `cap` per class,
    smaller classes repeated up to `cap` (the Inception-ResNet-v2 study), shuffled. An epoch shows
    `epoch_size` images (default: all; `cap` per class for 'cap'), so extra training images from another
    source widen what an epoch draws from without making it longer.
    """
    labels = np.asarray(labels)
    epoch_size = epoch_size or len(labels)
    rng = np.random.default_rng([seed, epoch])
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    if balance == "oversample":
        steps = epoch_size // batch_size
        classes = rng.integers(0, len(by_class), steps * batch_size)
        chosen = np.empty(len(classes), dtype=np.int64)
        for c, members in enumerate(by_class):
            where = np.flatnonzero(classes == c)
            chosen[where] = rng.choice(members, len(where))
        return chosen
    if balance == "weights":
        steps = epoch_size // batch_size
        return rng.permutation(len(labels))[:steps * batch_size]
    if balance == "cap":
        chosen = np.concatenate([rng.choice(m, cap, replace=len(m) < cap) for m in by_class])
        rng.shuffle(chosen)
        return chosen[:len(chosen) // batch_size * batch_size]
    raise ValueError(f"balance must be one of {', '.join(BALANCES)}, not {balance!r}")


def one_hot(labels) -> np.ndarray:
    """Class indices -> (n, classes) float32 targets."""
    return np.eye(len(CLASSES), dtype="float32")[np.asarray(labels, dtype="int64")]


def _drop_seed(images, labels, seed):
    return images, labels


def epoch_dataset(images, targets, indices, batch_size: int, augment_fn, seed: int, epoch: int, mix_fn=None):
    """Augmented batches (float32 RGB 0-255, targets) of `images[indices]`, in order.

    `targets` (n, classes) are the training targets: one-hot labels (`one_hot`) or soft ones (`distill.soft_targets`).

    Batches are gathered in numpy (the decoded set stays one uint8 array, never a graph constant) and
    augmented in tf.data with the stateless seed (seed, epoch, batch), so the run is reproducible.
    `mix_fn(images, targets, seed)`, if given, then mixes images and targets (`augment.mix_batch`)."""
    images, targets, indices = np.asarray(images), np.asarray(targets, dtype="float32"), np.asarray(indices)
    steps = len(indices) // batch_size
    height, width = images.shape[1:3]

    def batches():
        for step in range(steps):
            chosen = indices[step * batch_size:(step + 1) * batch_size]
            yield images[chosen], targets[chosen], np.array([seed * 100_003 + epoch, step], dtype="int64")

    signature = (tf.TensorSpec((batch_size, height, width, 3), tf.uint8),
                 tf.TensorSpec((batch_size, targets.shape[1]), tf.float32), tf.TensorSpec((2,), tf.int64))
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.map(lambda x, y, s: (augment_fn(tf.cast(x, tf.float32), s), y, s), num_parallel_calls=2, deterministic=True)
    ds = ds.map(mix_fn or _drop_seed, num_parallel_calls=2, deterministic=True)
    return ds.prefetch(2)
