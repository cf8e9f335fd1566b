"""BCN_20000 as a training-only extra source, on a tiny fake folder: scc, duplicates, sampling, loading, guards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from unit_helpers import assert_one_sentence, synthetic_lesion, write_image

from skin_demo.classes import CLASSES
from skin_demo.training import data
from skin_demo.training import extra_data as extra

NOWHERE = "/nonexistent/skin_demo_unit_tier_extra"
COUNTS = {"akiec": 3, "bcc": 4, "bkl": 3, "df": 2, "mel": 6, "nv": 10, "vasc": 2, "scc": 3}
LABEL = {"akiec": "AK", "scc": "SCC"}


@pytest.fixture(autouse=True)
def no_extra_data(monkeypatch):
    """As for HAM10000: the default BCN location points nowhere while a unit test runs."""
    monkeypatch.setenv(extra.ENV_VAR, NOWHERE)


def _write_fake_bcn(folder, duplicates=True):
    """84x84 JPEGs with ids from ISIC_0053000 and a metadata.csv with the real columns.

    With `duplicates`, two more rows share a git_blob with an earlier row: one with the same label
    (ISIC_0053900 copies the first nv), one with another label (ISIC_0053901, mel, copies the second nv)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, number = [], 53000
    for dx, count in COUNTS.items():
        for _ in range(count):
            image_id = f"ISIC_{number:07d}"
            label = LABEL.get(dx, dx.upper())
            rows.append({"image_id": image_id, "dx": dx, "isic2019_label": label, "in_7_classes": dx != "scc",
                         "source_folder": f"Train/{label}", "git_blob": f"{number:040x}"})
            number += 1
    if duplicates:
        nevi = [row for row in rows if row["dx"] == "nv"]
        rows.append({**nevi[0], "image_id": "ISIC_0053900"})
        rows.append({**nevi[1], "image_id": "ISIC_0053901", "dx": "mel", "isic2019_label": "MEL",
                     "source_folder": "Train/MEL"})
    for i, row in enumerate(rows):
        write_image(folder / f"{row['image_id']}.jpg", synthetic_lesion(84, 84, seed=i), quality=90)
    pd.DataFrame(rows, columns=extra.COLUMNS).to_csv(folder / "metadata.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def bcn(tmp_path_factory):
    return _write_fake_bcn(tmp_path_factory.mktemp("bcn20000_84"))


@pytest.fixture(scope="module")
def plain_bcn(tmp_path_factory):
    return _write_fake_bcn(tmp_path_factory.mktemp("bcn_plain"), duplicates=False)


# ------------------------------------------------------------------ where the folder is
def test_folder_from_argument_then_environment(bcn, monkeypatch):
    assert extra.bcn_dir(bcn) == bcn
    monkeypatch.setenv(extra.ENV_VAR, str(bcn))
    assert extra.bcn_dir() == bcn
    assert len(extra.read_bcn()) == len(extra.read_bcn(bcn))


def test_missing_folder_is_one_sentence_naming_it(tmp_path):
    with pytest.raises(data.DataUnavailable) as error:
        extra.read_bcn(tmp_path / "nowhere")
    assert_one_sentence(str(error.value), str(tmp_path / "nowhere"), extra.ENV_VAR)
    with pytest.raises(data.DataUnavailable) as error:
        extra.load_bcn((48, 64))  # the default location, which the fixture points nowhere
    assert_one_sentence(str(error.value), NOWHERE)


def test_missing_metadata_is_one_sentence_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataUnavailable) as error:
        extra.bcn_dir(tmp_path / "empty")
    assert_one_sentence(str(error.value), str(tmp_path / "empty" / "metadata.csv"))


def test_missing_image_is_data_unavailable(tmp_path):
    folder = _write_fake_bcn(tmp_path / "bcn", duplicates=False)
    (folder / "ISIC_0053000.jpg").unlink()
    with pytest.raises(data.DataUnavailable) as error:
        extra.load_bcn((48, 64), directory=folder)
    assert_one_sentence(str(error.value), "1 of the", "ISIC_0053000.jpg")


# ------------------------------------------------------------------ the table: scc, labels, duplicates
def test_scc_is_left_out_unless_asked(plain_bcn):
    table = extra.read_bcn(plain_bcn)
    assert list(table.columns) == ["image_id", "dx", "path"]
    assert set(table["dx"]) <= set(CLASSES) and "scc" not in set(table["dx"])
    assert len(table) == sum(COUNTS.values()) - COUNTS["scc"]
    with_scc = extra.read_bcn(plain_bcn, include_scc=True)
    assert (with_scc["dx"] == "scc").sum() == COUNTS["scc"] and len(with_scc) == sum(COUNTS.values())
    assert table["image_id"].is_monotonic_increasing
    assert all(path.endswith(f"{image_id}.jpg") for image_id, path in zip(table["image_id"], table["path"]))


def test_scc_is_never_a_training_label(plain_bcn):
    with pytest.raises(ValueError, match="no output among the 7 classes"):
        extra.load_bcn((48, 64), directory=plain_bcn, include_scc=True)
    _, labels = extra.load_bcn((48, 64), directory=plain_bcn)
    assert extra.describe(labels) == {dx: n for dx, n in COUNTS.items() if dx != "scc"}


def test_unknown_diagnosis_is_refused(tmp_path):
    folder = _write_fake_bcn(tmp_path / "bcn", duplicates=False)
    table = pd.read_csv(folder / "metadata.csv")
    table.loc[0, "dx"] = "unk"
    table.to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="unk"):
        extra.read_bcn(folder)


def test_missing_column_is_refused(tmp_path):
    folder = _write_fake_bcn(tmp_path / "bcn", duplicates=False)
    pd.read_csv(folder / "metadata.csv").drop(columns="git_blob").to_csv(folder / "metadata.csv", index=False)
    with pytest.raises(ValueError, match="git_blob"):
        extra.read_bcn(folder)


def test_identical_files_kept_once_and_conflicting_copies_dropped(bcn):
    every = extra.read_bcn(bcn, dedupe=False)
    deduped = extra.read_bcn(bcn)
    nevi = every[every["dx"] == "nv"]["image_id"].tolist()
    assert "ISIC_0053900" in set(every["image_id"]) and "ISIC_0053901" in set(every["image_id"])
    assert "ISIC_0053900" not in set(deduped["image_id"]) and nevi[0] in set(deduped["image_id"])  # same label: once
    assert not {nevi[1], "ISIC_0053901"} & set(deduped["image_id"])  # nv in one copy, mel in the other: neither
    assert len(deduped) == len(every) - 3


# ------------------------------------------------------------------ sampling
def test_per_class_caps_are_honoured(plain_bcn):
    table = extra.read_bcn(plain_bcn)
    counts = extra.sample_bcn(table, 3, seed=0)["dx"].value_counts().to_dict()
    assert counts == {dx: min(n, 3) for dx, n in COUNTS.items() if dx != "scc"}
    capped = extra.sample_bcn(table, {"nv": 4, "mel": 0}, seed=0)["dx"].value_counts().to_dict()
    assert capped == {**{dx: n for dx, n in COUNTS.items() if dx not in ("scc", "mel")}, "nv": 4}
    assert extra.sample_bcn(table, None, seed=0).equals(table)
    assert len(extra.sample_bcn(table, 0, seed=0)) == 0


def test_sampling_is_deterministic_per_seed(plain_bcn):
    table = extra.read_bcn(plain_bcn)
    first = extra.sample_bcn(table, {"nv": 4}, seed=7)
    assert first.equals(extra.sample_bcn(table, {"nv": 4}, seed=7))
    nevi = {seed: tuple(extra.sample_bcn(table, {"nv": 4}, seed=seed).query("dx == 'nv'")["image_id"])
            for seed in range(6)}
    assert len(set(nevi.values())) > 1  # 210 ways to pick 4 of 10: six seeds do not all agree
    assert first["image_id"].is_monotonic_increasing


def test_smaller_caps_are_subsets_and_classes_are_independent(plain_bcn):
    table = extra.read_bcn(plain_bcn)
    small = set(extra.sample_bcn(table, {"nv": 3}, seed=1)["image_id"])
    large = set(extra.sample_bcn(table, {"nv": 7}, seed=1)["image_id"])
    assert small < large
    a = extra.sample_bcn(table, {"nv": 3, "mel": 2}, seed=1)
    b = extra.sample_bcn(table, {"nv": 3, "mel": 5}, seed=1)
    assert a.query("dx == 'nv'")["image_id"].tolist() == b.query("dx == 'nv'")["image_id"].tolist()


def test_bad_caps_are_refused(plain_bcn):
    table = extra.read_bcn(plain_bcn)
    with pytest.raises(ValueError, match="unknown classes"):
        extra.sample_bcn(table, {"naevus": 3}, seed=0)
    with pytest.raises(ValueError, match="whole numbers"):
        extra.sample_bcn(table, -1, seed=0)


# ------------------------------------------------------------------ loading
def test_images_come_back_at_the_requested_size_as_the_app_fits_them(plain_bcn):
    images, labels = extra.load_bcn((96, 128), per_class=2, seed=3, directory=plain_bcn)
    table = extra.sample_bcn(extra.read_bcn(plain_bcn), 2, seed=3)
    assert images.dtype == np.uint8 and images.shape == (len(table), 96, 128, 3)
    assert labels.dtype == np.int32 and labels.tolist() == [CLASSES.index(dx) for dx in table["dx"]]
    assert np.array_equal(images, data.load_images(list(table["path"]), (96, 128)))
    assert images.std() > 5  # real pictures, not an empty buffer


def test_same_seed_same_arrays(plain_bcn):
    a = extra.load_bcn((48, 64), per_class={"nv": 2, "mel": 2}, seed=5, directory=plain_bcn)
    b = extra.load_bcn((48, 64), per_class={"nv": 2, "mel": 2}, seed=5, directory=plain_bcn)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ------------------------------------------------------------------ extra images never meet validation or test
def test_ids_shared_with_ham_are_refused(plain_bcn):
    ham = pd.DataFrame({"image_id": ["ISIC_0024306", "ISIC_0053002", "ISIC_0034320"],
                        "split": ["train", "test", "val"]})
    with pytest.raises(ValueError, match="never reach validation or test") as error:
        extra.load_bcn((48, 64), directory=plain_bcn, ham_table=ham)
    assert_one_sentence(str(error.value), "ISIC_0053002")
    with pytest.raises(ValueError, match="1 extra"):
        extra.assert_disjoint(["ISIC_0053002", "ISIC_0053003"], ham["image_id"].tolist())
    extra.assert_disjoint(["ISIC_0053003"], ham)  # disjoint: no error


def test_default_guard_uses_the_committed_split(monkeypatch, plain_bcn):
    """Without a table, load_bcn checks against every id of the committed HAM10000 split file."""
    committed = pd.read_csv(data.SPLIT_FILE)
    assert set(committed["split"]) == set(data.SPLITS)
    sneaky = tuple(committed["image_id"].iloc[:1])
    monkeypatch.setattr(extra, "read_bcn", lambda directory=None: pd.DataFrame(
        {"image_id": sneaky, "dx": ["nv"], "path": [str(plain_bcn / "ISIC_0053000.jpg")]}))
    with pytest.raises(ValueError, match=sneaky[0]):
        extra.load_bcn((48, 64))


# ------------------------------------------------------------------ counts for the log and the card
def test_describe_counts_every_class_in_order():
    counts = extra.describe(np.array([0, 4, 4, 6], dtype="int32"))
    assert list(counts) == list(CLASSES)
    assert counts == {"akiec": 1, "bcc": 0, "bkl": 0, "df": 0, "mel": 2, "nv": 0, "vasc": 1}
    assert sum(extra.describe(np.array([], dtype="int32")).values()) == 0
    with pytest.raises(ValueError):
        extra.describe([7])
