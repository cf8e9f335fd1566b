"""Which validation and test images show the same lesion: the unit that metric intervals resample.

HAM10000 has 1.3 images per lesion on average, several of one lesion under different magnification or
light. They are not independent evidence, so a bootstrap draws a lesion with all its images
(`metrics.bootstrap_intervals(groups=...)`). The lesion ids of the evaluated splits ship with the package
(LESIONS_FILE, written with the split by `training.data.write_split`), so a deployed app without the
data set can still draw them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import bootstrap_intervals
from .paths import RESOURCES

LESIONS_FILE = RESOURCES / "ham10000_lesions.csv"  # image_id, lesion_id of the val and test splits


def lesion_groups(image_ids, path=LESIONS_FILE) -> np.ndarray:
    """One integer per image: images of the same lesion share it; an image the file does not know is its own
    group (so nothing is merged by mistake)."""
    image_ids = [str(i) for i in np.asarray(image_ids).ravel()]
    path = Path(path)
    known = _known_lesions(path, path.stat().st_mtime_ns) if path.is_file() else {}
    lesions = [known.get(image_id, f"image:{image_id}") for image_id in image_ids]
    return np.unique(lesions, return_inverse=True)[1].ravel()


def lesion_intervals(labels, probabilities, image_ids) -> dict:
    """`metrics.bootstrap_intervals` of a split's predictions, each lesion drawn with all its images."""
    return bootstrap_intervals(labels, probabilities, lesion_groups(image_ids))


@functools.lru_cache(maxsize=4)
def _known_lesions(path: Path, modified: int) -> dict[str, str]:
    """image_id -> lesion_id of a lesions file, read once per version of the file (the Leaderboard asks per entry)."""
    return dict(pd.read_csv(path, dtype=str)[["image_id", "lesion_id"]].itertuples(index=False))
