"""The Leaderboard: stored test-split predictions in model folders, the table of every served entry, the plots.

A fake HAM10000 folder of synthetic images under real test-split image ids stands in for the data set, so
`store-predictions` runs end to end on the tiny model.
"""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from unit_helpers import TINY_SIZE, synthetic_lesion, write_image

from skin_demo.__main__ import main
from skin_demo.classes import CLASSES
from skin_demo.metrics import compute_metrics
from skin_demo.model_folder import (PREDICTIONS_FILE, TTA_PREDICTIONS_FILE, WEIGHTS_FILE, ModelFolderError, ModelInfo,
                                    StoredPredictions, check_safe_folder, decision_rule, file_sha256,
                                    predictions_file)
from skin_demo.serving import leaderboard as lb
from skin_demo.serving.catalog import load_registry
from skin_demo.serving.classifier import Classifier, apply_temperature
from skin_demo.serving.composite import TtaClassifier
from skin_demo.serving.service import RequestError
from skin_demo.serving.store import ModelStore
from skin_demo.training.calibrate import negative_log_likelihood
from skin_demo.training.data import SPLIT_FILE, load_images

PER_CLASS = 3
README_LATENCY = 3.5


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    """metadata.csv and JPEGs of 3 real test-split image ids per class (synthetic pictures, made-up dx)."""
    folder = tmp_path_factory.mktemp("ham10000")
    ids = pd.read_csv(SPLIT_FILE).query("split == 'test'")["image_id"].iloc[:PER_CLASS * len(CLASSES)].tolist()
    dx = [CLASSES[i % len(CLASSES)] for i in range(len(ids))]
    pd.DataFrame({"image_id": ids, "lesion_id": ids, "dx": dx}).to_csv(folder / "metadata.csv", index=False)
    for i, image_id in enumerate(ids):
        write_image(folder / f"{image_id}.jpg", synthetic_lesion(60, 80, seed=i), quality=90)
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_folder, fake_data):
    """weights/tiny with stored predictions (plain and TTA, by the CLI), weights/bare without, weights/broken with
    a corrupt file, a README whose benchmark table knows tiny, and a registry of these, tiny with TTA, two
    ensembles and a missing folder."""
    root = tmp_path_factory.mktemp("leaderboard")
    tiny = shutil.copytree(tiny_folder, root / "weights" / "tiny")
    bare = shutil.copytree(tiny_folder, root / "weights" / "bare")
    broken = shutil.copytree(tiny_folder, root / "weights" / "broken")
    (broken / PREDICTIONS_FILE).write_bytes(b"PK\x03\x04 not really a zip")
    registry = root / "models.json"
    registry.write_text(json.dumps({"models": [
        {"name": "tiny", "display_name": "Tiny", "source": str(tiny)},
        {"name": "bare", "display_name": "Bare", "source": str(bare)},
        {"name": "broken", "display_name": "Broken", "source": str(broken)},
        {"name": "tiny_tta", "display_name": "Tiny + TTA", "source": str(tiny), "tta": True},
        {"name": "both", "display_name": "Tiny ensemble", "members": ["tiny", "tiny_tta"]},
        {"name": "mixed", "display_name": "Mixed ensemble", "members": ["tiny", "bare"]},
        {"name": "gone", "display_name": "Gone", "source": str(root / "weights" / "gone")},
    ]}))
    readme = root / "README.md"
    readme.write_text("# models\n\n<!-- benchmark:start -->\n| model | backbone | params | latency ms (1 image) |\n"
                      f"|---|---|---|---|\n| tiny | custom_cnn | 1 | {README_LATENCY} |\n"
                      "| bare | another_backbone | 1 | 1.0 |\n<!-- benchmark:end -->\n")
    assert main(["store-predictions", "--model", str(tiny), "--registry", str(registry), "--data", str(fake_data)]) == 0
    store = ModelStore(registry)
    return {"tiny": tiny, "bare": bare, "registry": registry, "store": store,
            "board": lb.Leaderboard(store, readme=readme, latency_runs=2)}


@pytest.fixture(scope="module")
def board(setup):
    return setup["board"]


def test_store_predictions_keeps_plain_arrays_of_what_the_folder_serves(setup, fake_data):
    tiny = setup["tiny"]
    with np.load(tiny / PREDICTIONS_FILE, allow_pickle=False) as data:  # no pickle needed to read it
        assert {"labels", "probabilities", "image_ids"} <= set(data.files)
        assert data["probabilities"].dtype == np.float32 and data["probabilities"].shape == (PER_CLASS * 7, 7)
    stored = StoredPredictions.read(tiny / PREDICTIONS_FILE)
    with_tta = StoredPredictions.read(tiny / TTA_PREDICTIONS_FILE)
    table = pd.read_csv(fake_data / "metadata.csv")
    assert list(stored.image_ids) == list(table["image_id"]) == list(with_tta.image_ids)
    assert list(stored.labels) == [CLASSES.index(dx) for dx in table["dx"]]
    classifier = Classifier.from_folder(tiny)
    images = load_images([fake_data / f"{i}.jpg" for i in stored.image_ids], classifier.input_size).astype("float32")
    np.testing.assert_allclose(stored.probabilities, classifier(images), atol=1e-6)
    np.testing.assert_allclose(with_tta.probabilities, TtaClassifier(classifier)(images), atol=1e-6)
    assert stored.served_as == "model" and with_tta.served_as.startswith("tta")
    assert stored.stale_reason(tiny, classifier.info) is None
    assert check_safe_folder(tiny) == tiny, "the folder safety check accepts the new files"
    assert not (setup["bare"] / PREDICTIONS_FILE).exists()


def test_stale_or_malformed_predictions_are_recognised(setup, tmp_path):
    tiny = setup["tiny"]
    stored, info = StoredPredictions.read(tiny / PREDICTIONS_FILE), ModelInfo.read(tiny)
    assert "decision rule" in stored.stale_reason(tiny, info.replace(temperature=2.0))
    other = StoredPredictions(stored.labels, stored.probabilities, stored.image_ids, weights_sha256="0" * 64,
                              decision_rule=decision_rule(info))
    assert "other weights" in other.stale_reason(tiny, info)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, labels=stored.labels, probabilities=stored.probabilities,
             image_ids=np.array(list(stored.image_ids), dtype=object))
    with pytest.raises(ModelFolderError, match="not a readable predictions file"):
        StoredPredictions.read(pickled)
    partial = tmp_path / "partial.npz"
    np.savez(partial, labels=stored.labels)
    with pytest.raises(ModelFolderError, match="missing the array"):
        StoredPredictions.read(partial)
    with pytest.raises(ModelFolderError, match=r"probabilities \(n, 7\)"):
        StoredPredictions(stored.labels, stored.probabilities[:, :3], stored.image_ids)


def test_tta_predictions_served_another_way_are_not_shown_as_this_entrys(setup, tmp_path):
    """TTA predictions from an older TTA (4 views), same weights and decision rule, are stale for today's."""
    folder = shutil.copytree(setup["tiny"], tmp_path / "tiny")
    current = StoredPredictions.read(folder / TTA_PREDICTIONS_FILE)
    assert current.served_as == f"tta: {TtaClassifier(Classifier.from_folder(folder)).info.tta}"
    older = StoredPredictions(current.labels, current.probabilities, current.image_ids,
                              served_as="tta: dihedral views averaged", split=current.split,
                              split_sha256=current.split_sha256, weights_sha256=current.weights_sha256,
                              decision_rule=current.decision_rule)
    older.write(folder / TTA_PREDICTIONS_FILE)
    registry = tmp_path / "models.json"
    registry.write_text(json.dumps({"models": [
        {"name": "tiny_tta", "display_name": "Tiny + TTA", "source": str(folder), "tta": True}]}))
    board = lb.Leaderboard(ModelStore(registry), latency_runs=1)
    assert board.table().set_index("model")["bal. acc."].isna().all()
    assert "not as this entry serves" in board.notes(["tiny_tta"])


def test_the_table_has_one_row_per_served_entry_with_the_expected_columns(setup, board):
    table = board.table()
    assert list(table.columns) == lb.COLUMNS
    assert sorted(table["model"]) == sorted(["Tiny", "Bare", "Broken", "Tiny + TTA", "Tiny ensemble", "Mixed ensemble"])
    rows = table.set_index("model")
    scored = ["Tiny", "Tiny + TTA", "Tiny ensemble"]
    assert rows.loc[scored, ["bal. acc.", "macro AUC", "accuracy", "ECE (served)", "recall mel"]].notna().all().all()
    assert rows.loc[["Bare", "Broken", "Mixed ensemble"], "bal. acc."].isna().all(), "nothing stored, no card metrics"
    assert table["bal. acc."].isna().tolist() == [False] * 3 + [True] * 3, "best first, unscored last"
    assert rows.loc["Bare", "params (M)"] > 0 and rows.loc["Bare", "weights MiB"] > 0, "a row anyway"
    stored = StoredPredictions.read(setup["tiny"] / PREDICTIONS_FILE)
    expected = compute_metrics(stored.labels, stored.probabilities)
    assert rows.loc["Tiny", "bal. acc."] == round(expected["balanced_accuracy"], 3)
    assert rows.loc["Tiny", "recall nv"] == round(expected["per_class"]["nv"]["recall"], 2)
    for metric, column in lb.INTERVAL_COLUMNS.items():  # an interval around every scored row's number
        low, high = (float(x) for x in rows.loc["Tiny", column].split("–"))
        assert low <= round(expected[metric], 3) <= high and low < high
        assert rows.loc[["Bare", "Broken"], column].tolist() == ["", ""], "no predictions, no interval"
    size = (setup["tiny"] / WEIGHTS_FILE).stat().st_size / 2**20
    assert rows.loc["Tiny ensemble", "weights MiB"] == round(size, 1), "one network on disk for both members"
    # latency: the README benchmark's number for the very folder it measured, else measured here
    assert rows.loc["Tiny", "latency ms (1 image)"] == README_LATENCY
    assert rows.loc["Tiny", "latency from"] == "README benchmark (Keras)"
    assert rows.loc["Bare", "latency from"] == "measured here (keras)", "the README's bare has another backbone"
    assert (rows.loc[["Bare", "Tiny + TTA", "Tiny ensemble"], "latency ms (1 image)"] > 0).all()


def test_an_ensemble_is_scored_from_the_mean_of_its_members_stored_predictions(board):
    standings = board.standings()
    both = standings["both"]
    expected = np.mean([standings["tiny"].probabilities, standings["tiny_tta"].probabilities], axis=0)
    np.testing.assert_allclose(both.probabilities, expected, atol=1e-7)
    assert both.metrics_from == "mean of its members' stored predictions"
    assert standings["mixed"].missing == "member(s) without stored predictions: Bare"
    assert "store-predictions --model" in standings["bare"].missing and "gone" not in standings
    assert "not a readable predictions file" in standings["broken"].missing


def test_an_ensemble_gets_its_own_temperature_from_its_members_stored_validation_predictions(setup, fake_data,
                                                                                              tmp_path, capsys):
    tiny = shutil.copytree(setup["tiny"], tmp_path / "tiny")
    for tta in (False, True):  # validation predictions of two members that are right but only half sure
        stored = StoredPredictions.read(tiny / predictions_file("test", tta))
        unsure = np.full(stored.probabilities.shape, 0.5 / 6, "float32")
        unsure[np.arange(len(stored.labels)), stored.labels] = 0.5
        dataclasses.replace(stored, split="val", probabilities=unsure).write(tiny / predictions_file("val", tta))
    registry = tmp_path / "models.json"
    registry.write_text(json.dumps({"models": [
        {"name": "tiny", "source": str(tiny)}, {"name": "tiny_tta", "source": str(tiny), "tta": True},
        {"name": "both", "display_name": "Tiny ensemble", "members": ["tiny", "tiny_tta"]}]}))
    assert main(["calibrate", "--entry", "both", "--registry", str(registry)]) == 0
    assert "temperature" in capsys.readouterr().out
    entries = {entry.name: entry for entry in load_registry(registry)}
    temperature = entries["both"].temperature
    assert temperature is not None and entries["tiny"].temperature is None, "written into the ensemble's entry only"
    members = [StoredPredictions.read(tiny / predictions_file("val", tta)) for tta in (False, True)]
    mean = np.mean([m.probabilities for m in members], axis=0)
    labels = members[0].labels
    assert temperature < 0.5 and negative_log_likelihood(labels, mean, temperature) < 0.5 * negative_log_likelihood(
        labels, mean), "an under-confident mean is sharpened"

    store = ModelStore(registry)
    images = load_images([fake_data / f"{i}.jpg" for i in members[0].image_ids], TINY_SIZE).astype("float32")
    served = store.get("both")(images)
    plain_mean = np.mean([store.get("tiny")(images), store.get("tiny_tta")(images)], axis=0)
    np.testing.assert_allclose(served, apply_temperature(plain_mean, temperature), atol=1e-6)
    assert (served.argmax(axis=1) == plain_mean.argmax(axis=1)).all(), "no prediction changes class"
    standing = lb.Leaderboard(store, latency_runs=1).standings()["both"]
    np.testing.assert_allclose(standing.probabilities, apply_temperature(
        np.mean([StoredPredictions.read(tiny / predictions_file("test", tta)).probabilities for tta in (False, True)],
                axis=0), temperature), atol=1e-6)

    assert main(["calibrate", "--entry", "tiny", "--registry", str(registry)]) == 2
    assert "'tiny' is not an ensemble" in capsys.readouterr().err
    (tiny / predictions_file("val")).unlink()
    assert main(["calibrate", "--entry", "both", "--registry", str(registry)]) == 2
    assert "store-predictions --model" in capsys.readouterr().err


def test_plots_overlay_the_chosen_models_and_name_those_without_predictions(board):
    chosen = ["tiny", "tiny_tta", "both", "bare"]
    for figure in (board.roc_figure(chosen), board.roc_figure(chosen, "mel"), board.reliability_figure(chosen)):
        ax = figure.axes[0]
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert [t.split(" (")[0] for t in legend if "AUC" in t or "ECE" in t] == ["Tiny", "Tiny + TTA", "Tiny ensemble"]
        assert "not plotted (no stored predictions): Bare" in legend[-1].replace("\n", " ")
        figure.canvas.draw()  # renders without pyplot
    auc = board.standings()["tiny"].metrics["macro_auc"]
    legend = board.roc_figure(["tiny"]).axes[0].get_legend().get_texts()
    assert f"Tiny (AUC {auc:.3f})" in [text.get_text() for text in legend], "the table's macro AUC"
    notes = board.notes(chosen)
    assert "lesion-disjoint" in notes and "not plotted, Bare" in notes and "store-predictions" in notes
    assert board.roc_figure([]).axes[0].texts[0].get_text() == "Tick models to plot."


def test_a_wrong_model_or_class_is_a_request_error(board):
    with pytest.raises(RequestError, match="Unknown or unavailable model"):
        board.roc_figure(["gone"])
    with pytest.raises(RequestError, match="one class code"):
        board.roc_figure(["tiny"], "melanoma")


def test_requests_after_the_first_build_read_and_score_nothing(board, monkeypatch):
    board.table(), board.roc_figure(["tiny", "both"], "bcc"), board.reliability_figure(["tiny"])

    def forbidden(*args, **kwargs):
        raise AssertionError("re-read or re-scored during a request")

    for name in ("compute_metrics", "measure_latency", "read_benchmark"):
        monkeypatch.setattr(lb, name, forbidden)
    monkeypatch.setattr(StoredPredictions, "read", forbidden)
    assert len(board.table()) == 6
    board.roc_figure(["tiny", "both"], "bcc"), board.reliability_figure(["tiny"]), board.notes(["bare"])


def test_read_benchmark_finds_the_latency_column_or_nothing(tmp_path):
    assert lb.read_benchmark(tmp_path / "missing.md") == {}
    (tmp_path / "plain.md").write_text("# no table here\n")
    assert lb.read_benchmark(tmp_path / "plain.md") == {}
    from skin_demo.bench.models import END, START, render_table

    row = {"name": "m", "backbone": "b", "parameters": 1, "size_mib": 1.0, "input": "1x1", "latency_ms": 12.34,
           "throughput": 5.0, "balanced_accuracy": 0.5, "macro_auc": 0.5, "accuracy": 0.5, "ece": 0.1,
           "training_min": 1.0}
    (tmp_path / "bench.md").write_text(f"{START}\n{render_table([row])}\n{END}\n")
    assert lb.read_benchmark(tmp_path / "bench.md") == {("m", "b"): 12.3}
    assert (lb.BENCHMARK_START, lb.BENCHMARK_END) == (START, END)


def test_the_app_has_a_leaderboard_tab_with_a_named_endpoint(setup):
    from skin_demo.serving.service import SkinDemo
    from skin_demo.serving.ui import build_app

    app = build_app(SkinDemo(setup["store"]))
    functions = {fn.api_name: fn for fn in app.fns.values()}
    table = functions["leaderboard"].fn()
    assert list(table.columns) == lb.COLUMNS and len(table) == 6
    plots = [fn for fn in app.fns.values() if fn.name == "leaderboard_plots"]
    assert plots and all(fn.api_visibility == "private" for fn in plots)
    notes, roc, reliability = plots[0].fn(["tiny", "bare"], "macro")
    assert "not plotted, Bare" in notes and roc.axes and reliability.axes


def test_store_predictions_refuses_a_missing_folder_in_one_sentence(tmp_path, capsys):
    assert main(["store-predictions", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.count("\n") == 1


def test_weights_sha_is_what_the_file_records(setup):
    stored = StoredPredictions.read(setup["tiny"] / PREDICTIONS_FILE)
    assert stored.weights_sha256 == file_sha256(setup["tiny"] / WEIGHTS_FILE)
    assert stored.split == "test" and stored.split_sha256 == file_sha256(SPLIT_FILE)


def test_model_info_gives_every_entry_its_stored_test_numbers_with_intervals(setup):
    """Model info reads the Leaderboard's standing of one entry (before the table is built): a TTA entry and
    an ensemble have test numbers only there; a folder with unreadable predictions keeps its card's."""
    from skin_demo.serving.service import SkinDemo

    board = lb.Leaderboard(setup["store"], latency_runs=2)
    demo = SkinDemo(setup["store"])
    for name in ("tiny_tta", "both"):
        standing = board.standing(name)
        low, high = standing.intervals["balanced_accuracy"]
        text, _ = demo.model_info(name, standing)
        assert f"balanced accuracy **{standing.metrics['balanced_accuracy']:.3f}** (95% interval {low:.3f}–{high:.3f})" \
            in text, text
        assert "| class | recall | specificity | AUC |" in text
    assert board._standings is None, "one entry scored, the table not built"
    assert board.standing("both") is standing, "a second view reads the entry's numbers again, not its predictions"
    assert "test split" not in demo.model_info("both")[0], "without the Leaderboard a composite has no card"
    broken = board.standing("broken")
    assert not broken.has_predictions and "interval" not in demo.model_info("broken", broken)[0]


def test_a_model_card_gives_its_test_numbers_the_intervals_of_its_stored_predictions(setup, tmp_path):
    from skin_demo.lesions import lesion_intervals
    from skin_demo.training.card import write_model_card

    folder = shutil.copytree(setup["tiny"], tmp_path / "tiny")
    stored = StoredPredictions.read(folder / PREDICTIONS_FILE)
    info = ModelInfo.read(folder)
    info.metrics["test"] = test = compute_metrics(stored.labels, stored.probabilities)
    info.write(folder)
    low, high = lesion_intervals(stored.labels, stored.probabilities, stored.image_ids)["balanced_accuracy"]
    card = write_model_card(folder).read_text()
    assert f"balanced accuracy {test['balanced_accuracy']:.4f} (95% interval {low:.3f}–{high:.3f}, lesions resampled)" \
        in card
    (folder / PREDICTIONS_FILE).unlink()
    assert "interval" not in write_model_card(folder).read_text(), "nothing stored, no interval"


def test_model_info_draws_a_composite_entrys_confusion_matrix_from_its_stored_predictions(setup, tmp_path,
                                                                                          monkeypatch):
    """The Model info tab's picture for an entry whose folder has none (TTA, ensembles); none without predictions."""
    from skin_demo.serving.service import SkinDemo
    from skin_demo.serving.ui import build_app

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    model_info = next(fn.fn for fn in build_app(SkinDemo(setup["store"])).fns.values() if fn.api_name == "model_info")
    text, picture = model_info("both")
    assert "95% interval" in text and isinstance(picture, np.ndarray) and picture.shape[2] == 3
    board = lb.Leaderboard(setup["store"], latency_runs=2)
    image = lb.confusion_image(board.standing("both"))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.std() > 0
    assert lb.confusion_image(board.standing("bare")) is None
