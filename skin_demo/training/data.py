"""HAM10000 metadata, the fixed lesion-disjoint split, and the tf.data input pipeline."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from ..classes import CLASSES
from ..images import load_fitted
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


def write_split(table: pd.DataFrame, path=SPLIT_FILE) -> None:
    table[["image_id", "split"]].to_csv(path, index=False)


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


def split_arrays(split: str, size, limit: int | None = None, seed: int = 0,
                 directory=None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images at `size`, class indices) of one split, or of `limit` images of it drawn at random."""
    paths, labels = labelled_split(split, directory)
    if limit is not None and limit < len(paths):
        keep = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
        paths, labels = [paths[i] for i in keep], labels[keep]
    return load_images(paths, size), labels


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """'balanced' weights (n / (k * count)), as scikit-learn computes them."""
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights)}


# ----------------------------------------------------------------------------- tf.data

def load_images(paths, size) -> np.ndarray:
    """Decode and fit images exactly as the app does (images.py), as one uint8 array."""
    out = np.empty((len(paths), *size, 3), dtype="uint8")
    for i, path in enumerate(paths):
        out[i] = np.round(load_fitted(path, size)).astype("uint8")
    return out


def augment_batch(images, seed):
    """Random dihedral + affine (rotation, zoom, shift), colour jitter and occasional blur.

    Lesions have no canonical orientation, so full rotations are fair. The downscale-blur teaches
    the model that sharpness varies (uploads are sharper than the 200x150 training images).
    """
    batch = tf.shape(images)[0]
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    draws = iter(range(1, 100))  # a distinct stateless stream per draw: deterministic for a seed

    def uniform(low, high, shape=None):
        shape = shape if shape is not None else [batch]
        return tf.random.stateless_uniform(shape, tf.stack([seed, next(draws)]), low, high)

    images = tf.where(uniform(0.0, 1.0)[:, None, None, None] < 0.5, tf.reverse(images, [2]), images)
    images = tf.where(uniform(0.0, 1.0)[:, None, None, None] < 0.5, tf.reverse(images, [1]), images)

    angle = uniform(-math.pi, math.pi)
    scale = 1.0 / uniform(0.9, 1.2)  # output->input mapping: >1 zooms out
    shift_x, shift_y = uniform(-0.08, 0.08) * w, uniform(-0.08, 0.08) * h
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    zeros = tf.zeros_like(angle)
    transform = tf.stack([
        cos, -sin, cx - cos * cx + sin * cy + shift_x,
        sin, cos, cy - sin * cx - cos * cy + shift_y,
        zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transform, output_shape=tf.stack([height, width]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")

    gray = tf.reduce_mean(images, axis=3, keepdims=True)
    saturation = uniform(0.8, 1.2)[:, None, None, None]
    images = gray + saturation * (images - gray)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    contrast = uniform(0.8, 1.2)[:, None, None, None]
    brightness = uniform(-20.0, 20.0)[:, None, None, None]
    images = mean + contrast * (images - mean) + brightness
    channel_gain = uniform(0.93, 1.07, shape=tf.stack([batch, 1, 1, 3]))
    images = images * channel_gain

    factor = uniform(0.4, 0.8, shape=[])
    small = tf.image.resize(images, tf.cast(tf.stack([h * factor, w * factor]), tf.int32), antialias=True)
    blurred = tf.image.resize(small, tf.stack([height, width]))
    images = tf.where(uniform(0.0, 1.0)[:, None, None, None] < 0.25, blurred, images)
    return tf.clip_by_value(images, 0.0, 255.0)


def make_dataset(images, labels, batch_size=32, training=False, balance="weights", seed=0,
                 cap=CAP_PER_CLASS):
    """Batches of (float32 RGB 0-255, one-hot labels) from `load_images` output.

    Training: `balance` picks the sampling:
    'weights' (plain shuffle; pair with class weights), 'oversample' (equal class frequency),
    'cap' (at most `cap` per class, minority classes repeated up to `cap`, all augmented).
    Returns (dataset, steps per epoch).
    """
    labels = np.asarray(labels, dtype="int32")
    n_classes = len(CLASSES)

    def decoded(x, y):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        return ds.map(lambda image, label: (tf.cast(image, tf.float32), tf.one_hot(label, n_classes)))

    if not training:
        ds = decoded(images, labels).batch(batch_size).prefetch(tf.data.AUTOTUNE)
        return ds, math.ceil(len(images) / batch_size)

    rng = np.random.default_rng(seed)
    if balance == "weights":
        ds = decoded(images, labels).repeat().shuffle(2048, seed=seed)
        steps = len(images) // batch_size
    elif balance in ("oversample", "cap"):
        per_class = []
        for c in np.unique(labels):
            index = np.flatnonzero(labels == c)
            if balance == "cap" and len(index) > cap:
                index = rng.choice(index, cap, replace=False)
            per_class.append(decoded(images[index], labels[index]).repeat().shuffle(512, seed=seed + int(c)))
        ds = tf.data.Dataset.sample_from_datasets(per_class, seed=seed)
        total = len(images) if balance == "oversample" else cap * len(per_class)
        steps = total // batch_size
    else:
        raise ValueError(f"balance must be weights, oversample or cap, not {balance!r}")
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed))
    ds = ds.map(lambda xy, s: (augment_batch(xy[0], s), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), steps
