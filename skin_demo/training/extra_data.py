"""BCN_20000 (Hospital Clínic de Barcelona, 84x84 JPEGs): an optional second clinic, for training only.

Why: HAM10000 comes from two clinics and has few melanomas and carcinomas; BCN_20000 more than doubles
them and brings other cameras. Why training only: it has no lesion ids, so images of one lesion cannot
be kept together, and every reported number stays on the HAM10000 lesion-disjoint split. The shortcut
it invites (blurry 84 px or round black border -> Barcelona -> melanoma) is handled by applying the same
resolution and border augmentation to every image, elsewhere. See ../shared/data/bcn20000_84/SOURCES.md.

Ids: HAM10000 runs ISIC_0024306..ISIC_0034320, BCN_20000 ISIC_0053454..ISIC_0073254; `assert_disjoint`
still checks the ids themselves, not the ranges. There is no lesion-level guard because there are no
lesion ids to guard with: the only protection is that these images never enter validation or test,
which `load_bcn` ensures by returning training arrays only and checking the ids against every split.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..classes import CLASSES
from ..paths import SHARED
from . import data

ENV_VAR = "SKIN_DEMO_EXTRA_DATA"
METADATA = "metadata.csv"
COLUMNS = ("image_id", "dx", "isic2019_label", "in_7_classes", "source_folder", "git_blob")
NO_OUTPUT_CLASS = "scc"  # squamous cell carcinoma: in ISIC 2019, not among the 7 HAM10000 classes
SCC_REFUSED = ("scc (squamous cell carcinoma) has no output among the 7 classes, so it cannot be a training "
               "label; relabelling it as akiec or bcc would teach a wrong diagnosis, so leave include_scc off.")


def bcn_dir(override=None) -> Path:
    """BCN_20000 folder: argument, else $SKIN_DEMO_EXTRA_DATA, else ../shared/data/bcn20000_84 beside the repo.

    Raises `data.DataUnavailable` (one sentence naming the path) if the folder or its metadata.csv is missing.
    """
    path = Path(override or os.environ.get(ENV_VAR, SHARED / "data" / "bcn20000_84"))
    if not path.is_dir():
        raise data.DataUnavailable(
            f"BCN_20000 not found: {path} does not exist (pass its folder or set {ENV_VAR}).")
    if not (path / METADATA).is_file():
        raise data.DataUnavailable(
            f"BCN_20000 not found: {path / METADATA} does not exist (pass its folder or set {ENV_VAR}).")
    return path


def _drop_duplicates(metadata: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical files under two ids (same git_blob): keep the lower id if the labels agree, drop
    every copy if they disagree (the real set has 47 such pairs, 2 of them labelled mel in one copy and
    nv in the other, which would be pure label noise)."""
    conflicting = metadata.groupby("git_blob")["dx"].transform("nunique").fillna(1) > 1
    kept = metadata[~conflicting].sort_values("image_id")
    repeat = kept["git_blob"].notna() & kept["git_blob"].duplicated(keep="first")  # a missing blob is no match
    return kept[~repeat]


def read_bcn(directory=None, include_scc: bool = False, dedupe: bool = True) -> pd.DataFrame:
    """The BCN_20000 table: image_id, dx, path (sorted by image_id).

    `scc` rows are left out unless `include_scc=True`. With it they are listed with dx 'scc' (to look at,
    or to use as an unseen class), but no function here turns them into training labels: `load_bcn`
    refuses `include_scc=True` because there is no output class for them. Every other dx must be one
    of CLASSES. `dedupe` drops byte-identical copies (see `_drop_duplicates`): 11,901 of the 11,950 images
    in the 7 classes remain; `dedupe=False` gives the metadata's counts exactly.
    """
    root = bcn_dir(directory)
    metadata = pd.read_csv(root / METADATA, dtype=str)
    missing = [c for c in COLUMNS if c not in metadata.columns]
    if missing:
        raise ValueError(f"{root / METADATA} lacks the column(s) {', '.join(missing)}.")
    unknown = sorted(set(metadata["dx"]) - set(CLASSES) - {NO_OUTPUT_CLASS})
    if unknown:
        raise ValueError(f"{root / METADATA} has diagnoses outside the 7 classes and scc: {', '.join(map(str, unknown))}.")
    if metadata["image_id"].duplicated().any():
        raise ValueError(f"{root / METADATA} lists an image_id more than once.")
    if dedupe:
        metadata = _drop_duplicates(metadata)
    if not include_scc:
        metadata = metadata[metadata["dx"] != NO_OUTPUT_CLASS]
    table = metadata[["image_id", "dx"]].sort_values("image_id").reset_index(drop=True)
    table["path"] = [str(root / f"{image_id}.jpg") for image_id in table["image_id"]]
    return table


def _class_seed(seed: int, dx: str) -> list[int]:
    return [int(seed), zlib.crc32(dx.encode())]


def sample_bcn(table: pd.DataFrame, per_class: dict[str, int] | int | None, seed: int = 0) -> pd.DataFrame:
    """At most `per_class` rows of each dx, drawn at random; the same seed gives the same rows.

    `per_class`: None keeps everything; an int caps every class; a dict caps the classes it names
    (others are kept whole; 0 drops a class), e.g. {"nv": 1000} since all BCN images would more than
    double an epoch and nevi dominate. Each class draws from its own stream (seed, class), so changing
    one class's cap leaves the others' samples unchanged, and a smaller cap keeps a subset of a larger one.
    Rows come back sorted by image_id.
    """
    if per_class is None:
        return table.sort_values("image_id").reset_index(drop=True)
    if isinstance(per_class, dict):
        unknown = sorted(set(per_class) - set(CLASSES) - {NO_OUTPUT_CLASS})
        if unknown:
            raise ValueError(f"per_class names unknown classes: {', '.join(map(str, unknown))}.")
        caps = dict(per_class)
    else:
        caps = {dx: per_class for dx in set(table["dx"])}
    if any(int(cap) != cap or cap < 0 for cap in caps.values()):
        raise ValueError(f"per_class caps must be whole numbers of at least 0, not {per_class!r}.")
    keep = []
    for dx, rows in table.sort_values("image_id").groupby("dx", sort=True):
        cap = caps.get(dx)
        if cap is None or cap >= len(rows):
            keep.append(rows)
        else:
            order = np.random.default_rng(_class_seed(seed, dx)).permutation(len(rows))
            keep.append(rows.iloc[np.sort(order[:int(cap)])])
    if not keep:
        return table.iloc[:0].reset_index(drop=True)
    return pd.concat(keep).sort_values("image_id").reset_index(drop=True)


def assert_disjoint(extra_ids, ham_table) -> None:
    """Raise ValueError if any extra image id is also a HAM10000 image id, in any split.

    `ham_table`: a table with an image_id column (data.load_split(), or the committed split file
    data.SPLIT_FILE with image_id and split), or any iterable of ids.
    """
    ham_ids = ham_table["image_id"] if isinstance(ham_table, pd.DataFrame) else ham_table
    shared = sorted(set(map(str, extra_ids)) & set(map(str, ham_ids)))
    if shared:
        raise ValueError(f"{len(shared)} extra training image(s) are also HAM10000 images (first: {shared[0]}), "
                         f"and extra images must never reach validation or test.")


def load_bcn(size, per_class=None, seed: int = 0, directory=None, include_scc: bool = False,
             ham_table=None) -> tuple[np.ndarray, np.ndarray]:
    """Training arrays only: (uint8 images (n, height, width, 3) at `size`, int32 class indices into CLASSES).

    There is deliberately no validation or test part. Images are decoded and fitted by `data.load_images`,
    exactly as the app does: each 84x84 square is centre-cropped to the model's aspect ratio (63x84 for a
    150x200 model, a quarter of the rows lost) and upsampled to `size` by `images.fit_to_input`.
    Before decoding, the ids are checked against every HAM10000 split (`ham_table`, by default the
    committed split file). All 11,901 at 150x200 take 1.07 GB, so sample with `per_class` (`sample_bcn`).
    `include_scc=True` raises ValueError: scc has no output class.
    """
    if include_scc:
        raise ValueError(SCC_REFUSED)
    table = sample_bcn(read_bcn(directory), per_class, seed)
    assert_disjoint(table["image_id"], pd.read_csv(data.SPLIT_FILE) if ham_table is None else ham_table)
    absent = [path for path in table["path"] if not Path(path).is_file()]
    if absent:
        raise data.DataUnavailable(f"BCN_20000 is incomplete: {len(absent)} of the {len(table)} images to load "
                                   f"are missing (first: {Path(absent[0]).name}).")
    index = {dx: i for i, dx in enumerate(CLASSES)}
    labels = table["dx"].map(index).to_numpy("int32")
    return data.load_images(list(table["path"]), size), labels


def describe(labels) -> dict[str, int]:
    """Images per class, in CLASSES order (zeros included), for the training log and the model card."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"labels must be class indices 0..{len(CLASSES) - 1}.")
    counts = np.bincount(labels.astype("int64").ravel(), minlength=len(CLASSES))
    return {dx: int(n) for dx, n in zip(CLASSES, counts)}
