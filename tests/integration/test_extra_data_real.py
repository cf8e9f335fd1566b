"""BCN_20000 on the real files of ../shared/data/bcn20000_84: counts as SOURCES.md gives them, no shared ids, loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skin_demo.classes import CLASSES
from skin_demo.training import data
from skin_demo.training import extra_data as extra

SOURCES_COUNTS = {"nv": 4206, "mel": 2857, "bcc": 2809, "bkl": 1138, "akiec": 705, "df": 124, "vasc": 111}


@pytest.fixture(scope="module")
def bcn_dir():
    try:
        return extra.bcn_dir()
    except data.DataUnavailable as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def metadata(bcn_dir):
    return pd.read_csv(bcn_dir / "metadata.csv")


def test_counts_match_sources(bcn_dir):
    table = extra.read_bcn(dedupe=False)
    assert len(table) == 11_950
    assert table["dx"].value_counts().to_dict() == SOURCES_COUNTS
    with_scc = extra.read_bcn(include_scc=True, dedupe=False)
    assert len(with_scc) == 12_381 and (with_scc["dx"] == "scc").sum() == 431


def test_every_listed_image_is_there(bcn_dir, metadata):
    files = {path.stem for path in Path(bcn_dir).glob("*.jpg")}
    assert files == set(metadata["image_id"])


def test_metadata_columns_agree(metadata):
    assert (metadata["in_7_classes"] == metadata["dx"].isin(CLASSES)).all()
    assert (metadata["source_folder"].str.split("/").str[1] == metadata["isic2019_label"]).all()


def test_duplicates_by_blob(metadata):
    """47 byte-identical pairs under two ids; 2 of them are labelled mel in one copy and nv in the other.
    The default table keeps one copy of each agreeing pair and neither copy of a disagreeing one."""
    repeated = metadata[metadata["git_blob"].duplicated(keep=False)]
    sizes = repeated.groupby("git_blob").size()
    assert len(sizes) == 47 and set(sizes) == {2}
    labels = repeated.groupby("git_blob")["dx"].agg(lambda dx: "/".join(sorted(dx)))
    assert (labels == "mel/nv").sum() == 2
    deduped = extra.read_bcn()
    assert len(deduped) == 11_950 - 45 - 4 == 11_901
    assert not deduped["image_id"].isin(repeated[repeated["git_blob"].isin(labels[labels == "mel/nv"].index)]
                                        ["image_id"]).any()


def test_no_bcn_id_is_a_ham10000_id(bcn_dir, metadata):
    ham = data.load_split()
    extra.assert_disjoint(metadata["image_id"], ham)  # every split, scc included
    extra.assert_disjoint(metadata["image_id"], pd.read_csv(data.SPLIT_FILE))
    assert metadata["image_id"].min() > ham["image_id"].max()  # and far apart: ...34320 vs ...53454


def test_small_sample_loads_at_model_size(bcn_dir):
    images, labels = extra.load_bcn((150, 200), per_class=5, seed=0, ham_table=data.load_split())
    assert images.shape == (35, 150, 200, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    assert extra.describe(labels) == dict.fromkeys(CLASSES, 5)
    assert 20 < images.mean() < 235 and images.std() > 10
    again, same = extra.load_bcn((150, 200), per_class=5, seed=0)
    assert np.array_equal(images, again) and np.array_equal(labels, same)
