"""Fitting the out-of-distribution warning (serving.ood): statistics of training lesions, a threshold that lets
COVERAGE of the validation lesions pass, and a score against pictures that are not lesions.

`non_lesion_images` makes the held-out mix the detector is scored on: scikit-image's sample
photos (whole and as random crops), noise, rendered text, flat colours and UI-like screenshots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageDraw
from sklearn.metrics import roc_auc_score

from ..images import fit_to_input
from ..serving.classifier import Classifier
from ..serving.ood import OodDetector
from .card import write_model_card
from .data import split_arrays

COVERAGE = 0.95  # share of validation lesions that pass the threshold
FIT_IMAGES = 2000  # training lesions the feature statistics are estimated from


def fit_ood(folder, classifier=None, seed: int = 0, limit: int | None = None) -> dict:
    """Fit on training lesions, threshold on validation lesions, score test lesions against the non-lesion mix.

    Writes the detector's arrays, `ModelInfo.ood` and the model card; returns the "ood" record. `limit` caps
    the images drawn from each split (quick checks).
    """
    folder = Path(folder)
    classifier = classifier or Classifier.from_folder(folder)
    counts = {"train": min(FIT_IMAGES, limit or FIT_IMAGES), "val": limit, "test": limit}
    features = {name: classifier.features(split_arrays(name, classifier.input_size, count, seed)[0])
                for name, count in counts.items()}
    detector = OodDetector.fit(features["train"])
    detector.threshold = round(float(np.quantile(detector.score(features["val"]), COVERAGE)), 3)
    lesion_scores = detector.score(features["test"])
    others, kinds = non_lesion_images(classifier.input_size, seed)
    other_scores = detector.score(classifier.features(others))
    other_flagged = detector.is_outlier(other_scores)
    groups = np.array([kind.split(":")[0] for kind in kinds])
    record = {
        "method": f"Mahalanobis distance of pooled features from {len(features['train'])} training lesions (top "
                  f"{len(detector.variances)} principal directions whitened, plus the residual)",
        "threshold": detector.threshold, "coverage": COVERAGE,
        "test_lesions_flagged": float(detector.is_outlier(lesion_scores).mean()),
        "non_lesion_images": len(others), "non_lesions_flagged": float(other_flagged.mean()),
        "flagged_by_kind": {group: float(other_flagged[groups == group].mean()) for group in dict.fromkeys(groups)},
        "auroc": float(roc_auc_score(np.r_[np.zeros(len(lesion_scores)), np.ones(len(other_scores))],
                                     np.r_[lesion_scores, other_scores])),
    }
    detector.save(folder)
    classifier.info.ood = record
    classifier.info.write(folder)
    write_model_card(folder)
    return record


# ----------------------------------------------------------------------------- a held-out non-lesion mix

SAMPLE_PHOTOS = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
                 "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon",
                 "page", "retina", "rocket", "text", "checkerboard", "horse", "binary_blobs")


def _to_rgb_uint8(array) -> np.ndarray:
    """Binary, grey and RGBA sample images as RGB uint8."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype("uint8") * 255
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def sample_photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled sample images (no download) as RGB uint8."""
    return {name: _to_rgb_uint8(getattr(skimage.data, name)()) for name in SAMPLE_PHOTOS}


def _random_crop(rng, image) -> np.ndarray:
    h, w = image.shape[:2]
    scale = rng.uniform(0.3, 0.8)
    ch, cw = max(32, int(h * scale)), max(32, int(w * scale * rng.uniform(0.8, 1.25)))
    ch, cw = min(ch, h), min(cw, w)
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return image[top:top + ch, left:left + cw]


def _text_image(rng, size) -> np.ndarray:
    h, w = size
    background = tuple(int(v) for v in rng.integers(180, 256, 3))
    picture = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(picture)
    words = ["Lorem ipsum dolor sit amet", "Invoice #4711", "Skin lesion?", "ERROR 404", "Total: 12.50 EUR",
             "The quick brown fox", "def main():", "Meeting at 10:30"]
    for y in range(5, h - 10, int(rng.integers(12, 24))):
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        draw.text((int(rng.integers(2, 20)), y), str(rng.choice(words)), fill=ink)
    return np.asarray(picture)


def _ui_image(rng, size) -> np.ndarray:
    """A screenshot-like picture: title bar, panels, buttons and lines of text."""
    h, w = size
    picture = Image.new("RGB", (w, h), (245, 245, 247))
    draw = ImageDraw.Draw(picture)
    accent = tuple(int(v) for v in rng.integers(0, 220, 3))
    draw.rectangle([0, 0, w, 18], fill=accent)
    draw.text((6, 3), "Settings - App", fill=(255, 255, 255))
    for _ in range(int(rng.integers(3, 7))):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(22, h - 20))
        x1, y1 = min(w - 1, x0 + int(rng.integers(30, 90))), min(h - 1, y0 + int(rng.integers(12, 40)))
        draw.rectangle([x0, y0, x1, y1], fill=tuple(int(v) for v in rng.integers(150, 256, 3)), outline=(120, 120, 120))
        draw.text((x0 + 3, y0 + 2), "OK", fill=(20, 20, 20))
    return np.asarray(picture)


def non_lesion_images(size, seed: int = 0, crops_per_photo: int = 3) -> tuple[np.ndarray, list[str]]:
    """(images float32 (n, h, w, 3) 0-255 at `size`, kind of each) of pictures that are not lesions."""
    rng = np.random.default_rng(seed)
    h, w = size
    pictures, kinds = [], []
    for name, photo in sample_photos().items():
        pictures.append(photo)
        kinds.append(f"photo:{name}")
        for _ in range(crops_per_photo):
            pictures.append(_random_crop(rng, photo))
            kinds.append(f"crop:{name}")
    for _ in range(8):
        pictures.append(rng.uniform(0, 255, (h, w, 3)))
        kinds.append("noise:uniform")
        smooth = rng.normal(0, 1, (h // 8, w // 8, 3))
        pictures.append(np.kron(smooth, np.ones((8, 8, 1))) * 40 + rng.uniform(60, 200))
        kinds.append("noise:blocky")
        pictures.append(np.broadcast_to(rng.integers(0, 256, 3), (h, w, 3)))
        kinds.append("flat colour")
        pictures.append(_text_image(rng, size))
        kinds.append("text")
        pictures.append(_ui_image(rng, size))
        kinds.append("screenshot")
    images = np.stack([fit_to_input(_to_rgb_uint8(np.clip(p, 0, 255).astype("uint8")), size) for p in pictures])
    return images.astype("float32"), kinds
