"""The Leaderboard over the bundled models: the stored predictions are the test split the cards report on,
composite entries serve what their stored predictions say, and the tab renders in the launched app."""

import os
from pathlib import Path

import numpy as np
import pytest
from ports import free_port

from skin_demo.lesions import lesion_intervals
from skin_demo.metrics import compute_metrics, expected_calibration_error
from skin_demo.model_folder import (PREDICTIONS_FILE, TTA_PREDICTIONS_FILE, ModelInfo, StoredPredictions,
                                    check_safe_folder)
from skin_demo.paths import REPO_ROOT
from skin_demo.serving.catalog import DEFAULT_REGISTRY, load_registry
from skin_demo.serving.leaderboard import COLUMNS, Leaderboard
from skin_demo.training import data as dataset

ENTRIES = load_registry(DEFAULT_REGISTRY)
FOLDERS = [entry.source for entry in ENTRIES if not entry.members and not entry.tta]
FOLDERS_BY_ENTRY = [entry.name for entry in ENTRIES if not entry.members and not entry.tta]
TTA_FOLDERS = sorted({entry.source for entry in ENTRIES if entry.tta})
SUBSET = 48  # test images run through the composite entries to check their stored predictions


@pytest.fixture(scope="module")
def test_split():
    paths, labels = dataset.labelled_split("test")
    return [Path(path).stem for path in paths], labels, paths


@pytest.fixture(scope="module")
def store():
    from skin_demo.serving.store import ModelStore

    return ModelStore(DEFAULT_REGISTRY)


@pytest.mark.parametrize("source", FOLDERS)
def test_stored_predictions_are_the_test_split_and_reproduce_the_model_card(source, test_split):
    folder = REPO_ROOT / source
    stored, info = StoredPredictions.read(folder / PREDICTIONS_FILE), ModelInfo.read(folder)
    ids, labels, _ = test_split
    assert list(stored.image_ids) == ids and np.array_equal(stored.labels, labels)
    assert stored.served_as == "model" and stored.stale_reason(folder, info) is None
    card, scores = info.test_metrics, compute_metrics(stored.labels, stored.probabilities)
    assert scores["balanced_accuracy"] == pytest.approx(card["balanced_accuracy"], abs=1e-6)
    assert scores["accuracy"] == pytest.approx(card["accuracy"], abs=1e-6)
    assert {c: v["recall"] for c, v in scores["per_class"].items()} == pytest.approx(
        {c: v["recall"] for c, v in card["per_class"].items()}, abs=1e-6)
    served_ece = info.metrics["test_calibrated"]["ece_after"]
    assert expected_calibration_error(stored.labels, stored.probabilities) == pytest.approx(served_ece, abs=1e-6)
    assert (folder / PREDICTIONS_FILE).stat().st_size < 100 * 1024
    check_safe_folder(folder)
    low, high = lesion_intervals(stored.labels, stored.probabilities, stored.image_ids)["balanced_accuracy"]
    assert f"(95% interval {low:.3f}–{high:.3f}, lesions resampled)" in (folder / "README.md").read_text(), \
        "the card shows the interval of what the folder stores (python -m skin_demo store-predictions)"


@pytest.mark.parametrize("source", TTA_FOLDERS)
def test_tta_predictions_are_stored_beside_the_base_model(source, test_split):
    folder = REPO_ROOT / source
    stored = StoredPredictions.read(folder / TTA_PREDICTIONS_FILE)
    ids, labels, _ = test_split
    assert list(stored.image_ids) == ids and np.array_equal(stored.labels, labels)
    assert stored.served_as.startswith("tta") and stored.stale_reason(folder, ModelInfo.read(folder)) is None


def test_composite_entries_serve_what_their_stored_predictions_say(store, test_split):
    """TTA from its own stored file, an ensemble as the mean of its members' stored predictions: both checked
    against the served entry on a random subset of the test split."""
    ids, _, paths = test_split
    board = Leaderboard(store)
    keep = np.sort(np.random.default_rng(0).choice(len(ids), SUBSET, replace=False))
    composites = [entry.name for entry in ENTRIES if entry.tta or entry.members]
    assert composites
    for name in composites:
        classifier = store.get(name)
        images = dataset.load_images([paths[i] for i in keep], classifier.input_size).astype("float32")
        standing = board.standings()[name]
        assert standing.has_predictions, standing.missing
        np.testing.assert_allclose(standing.probabilities[keep], classifier(images), atol=1e-5, err_msg=name)


def test_the_leaderboard_covers_every_served_entry_from_stored_numbers(store):
    board = Leaderboard(store)
    table = board.table()
    assert list(table.columns) == COLUMNS and len(table) == len(store.available) == len(ENTRIES)
    assert table[COLUMNS[1:-1]].notna().all().all(), "every bundled entry has every number"
    standings = board.standings()
    assert all(s.has_predictions for s in standings.values()), [s.missing for s in standings.values()]
    figures = board.roc_figure(list(standings)), board.roc_figure(list(standings), "mel"), \
        board.reliability_figure(list(standings))
    for figure in figures:
        assert len([t for t in figure.axes[0].get_legend().get_texts() if "(AUC" in t.get_text() or "(ECE" in
                    t.get_text()]) == len(standings)



def test_model_info_shows_every_entry_the_leaderboard_numbers_and_intervals(store):
    """A researcher reading one entry's test numbers (a TTA entry and the ensemble included) sees how far this
    test split pins them down: the Leaderboard's numbers, and for a network the same as its card."""
    from skin_demo.serving.service import SkinDemo

    demo, board = SkinDemo(store), Leaderboard(store)
    for entry in ENTRIES:
        standing = board.standing(entry.name)
        text, _ = demo.model_info(entry.name, standing)
        low, high = standing.intervals["balanced_accuracy"]
        assert f"**{standing.metrics['balanced_accuracy']:.3f}** (95% interval {low:.3f}–{high:.3f})" in text, text
        if entry.name in FOLDERS_BY_ENTRY:
            card = demo.model_info(entry.name)[0]
            assert f"**{standing.metrics['balanced_accuracy']:.3f}**" in card, "the card says the same"

@pytest.fixture(scope="module")
def bundled_app_url(store):
    from skin_demo.serving.service import SkinDemo
    from skin_demo.serving.ui import build_app

    app = build_app(SkinDemo(store))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_the_launched_app_serves_the_leaderboard_table(bundled_app_url, store):
    from gradio_client import Client

    client = Client(bundled_app_url, verbose=False, analytics_enabled=False)
    table = client.predict(api_name="/leaderboard")
    assert table["headers"] == COLUMNS
    assert sorted(row[0] for row in table["data"]) == sorted(e.display_name for e in ENTRIES)


CHROMIUM = Path(os.environ.get("SKIN_DEMO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # as test_browser


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (tests/install_browser.sh)")
def test_the_leaderboard_tab_renders_a_table_and_two_plots_in_a_browser(bundled_app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(bundled_app_url)
        page.get_by_role("tab", name="Leaderboard").click()
        table = page.locator("#leaderboard-table")
        sync_api.expect(table.locator("[role=gridcell][data-col='0']")).to_have_count(len(ENTRIES), timeout=60_000)
        names = table.locator("[role=gridcell][data-col='0']").all_inner_texts()
        assert sorted(name.strip() for name in names) == sorted(e.display_name for e in ENTRIES)
        for plot in ("#leaderboard-roc img", "#leaderboard-reliability img"):
            page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && "
                                   "i.naturalWidth > 0 }", arg=plot, timeout=60_000)
        sync_api.expect(page.locator("#leaderboard-notes")).to_contain_text("lesion-disjoint")
        page.screenshot(path=tmp_path / "leaderboard.png", full_page=True)
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
