"""The launched app in a real headless Chromium, used as a person would: upload, Predict, Explain, Compare.

Chromium is Debian's (tests/install_browser.sh), driven by Playwright for Python; Playwright's own
browser download is never used. Selectors are the app's elem_ids plus the Gradio 6 DOM inside them
(`data-testid`s and roles, checked against the real page). Screenshots go to the test's tmp dir.
"""

import os
from pathlib import Path

import pytest

from skin_demo import CLASSES, display_name
from skin_demo.serving.ui import EXAMPLES_DIR

CHROMIUM = Path(os.environ.get("SKIN_DEMO_CHROMIUM", "/usr/bin/chromium"))
# without the background-networking flags Chromium's own connections are refused on a closed network
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLE = EXAMPLES_DIR / "mel_ISIC_0024315.jpg"
COMPARE_EXAMPLE = "bkl ISIC_0024338"  # an example button's label
LIME_SAMPLES = "200"  # the slider's minimum: keeps LIME quick
WAIT_MS = 90_000  # LIME on a shared, busy CPU

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium with tests/install_browser.sh",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh tab on the app, failing the test on any uncaught JavaScript error."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(app_url)
    expect(page.locator("#predict")).to_be_visible(timeout=30_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_for_image(page, selector):
    """Wait until the <img> matched by selector has really loaded; return its natural (width, height)."""
    page.wait_for_function("s => [...document.querySelectorAll(s)].every(i => i.complete && i.naturalWidth > 0)",
                           arg=selector, timeout=WAIT_MS)
    return tuple(page.locator(selector).first.evaluate("i => [i.naturalWidth, i.naturalHeight]"))


def use_few_lime_samples(page):
    box = page.get_by_label("number input for Max LIME samples")
    box.fill(LIME_SAMPLES)
    box.press("Enter")
    expect(box).to_have_value(LIME_SAMPLES)


def test_classify_tab_predicts_seven_labels_and_shows_an_explanation(page, tmp_path, tiny_classifier):
    # Predict with no image: the readable message reaches the person, as a toast
    page.locator("#predict").click()
    toast = page.get_by_test_id("toast-body")
    expect(toast).to_contain_text("Upload an image first", timeout=30_000)
    toast.get_by_test_id("toast-close").click()
    expect(toast).to_have_count(0)

    page.locator("#input-image input[type=file]").set_input_files(EXAMPLE)
    wait_for_image(page, "#input-image img")
    expect(page.get_by_role("combobox", name="Model")).to_have_value("Tiny A")

    page.locator("#predict").click()
    confidences = page.locator("#label [data-testid$='-confidence-set']")
    expect(confidences).to_have_count(7, timeout=WAIT_MS)
    assert set(page.locator("#label dt").all_inner_texts()) == {display_name(c) for c in CLASSES}
    top = page.locator("#label [data-testid=label-output-value]").inner_text()
    assert top == page.locator("#label dt").first.inner_text()  # the headline is the top-ranked class
    percents = [int(p.rstrip("%")) for p in page.locator("#label dd").all_inner_texts()]
    assert percents == sorted(percents, reverse=True) and 93 <= sum(percents) <= 107  # rounded to whole %

    use_few_lime_samples(page)
    page.locator("#explain").click()
    expect(page.locator("#explain-summary")).to_contain_text(f"LIME for {top}", timeout=WAIT_MS)
    expect(page.locator("#explain-summary")).to_contain_text(f"{LIME_SAMPLES} perturbed samples")
    height, width = tiny_classifier.input_size
    assert wait_for_image(page, "#overlay img") == (width, height)  # the overlay at the model's input size
    page.screenshot(path=tmp_path / "classify.png", full_page=True)


def test_compare_tab_shows_a_column_and_an_overlay_per_ticked_model(page, tmp_path):
    use_few_lime_samples(page)  # the Explanation settings are shared with the Compare tab
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare")).to_be_visible()

    page.locator("button.gallery-item").filter(visible=True).filter(has_text=COMPARE_EXAMPLE).click()
    wait_for_image(page, "#compare-image img")

    models = page.locator("#compare-models")
    for name in ("Tiny A", "Tiny B"):
        models.get_by_role("checkbox", name=name).uncheck()
        expect(models.get_by_role("checkbox", name=name)).not_to_be_checked()
    for name in ("Tiny A", "Tiny B"):
        models.get_by_role("checkbox", name=name).check()
        expect(models.get_by_role("checkbox", name=name)).to_be_checked()

    page.locator("#compare").click()
    gallery = page.locator("#compare-gallery img")
    expect(gallery).to_have_count(2, timeout=WAIT_MS)
    wait_for_image(page, "#compare-gallery img")
    captions = page.locator("#compare-gallery .caption-label").all_inner_texts()
    assert [c.split(":")[0] for c in captions] == ["Tiny A", "Tiny B"]
    assert all(f"{LIME_SAMPLES} perturbed samples" in c for c in captions)

    table = page.locator("#compare-table")
    headers = table.locator("[role=columnheader] .header-content")  # without the cell-menu button
    expect(headers).to_have_text(["class", "Tiny A", "Tiny B"])
    for col in (1, 2):
        cells = table.locator(f"[role=gridcell][data-col='{col}']")
        expect(cells).to_have_count(7)
        assert sum(float(v) for v in cells.all_inner_texts()) == pytest.approx(1.0, abs=2e-3)
    # the model columns are in view, not pushed off to the right by the long class names
    box, last = table.bounding_box(), headers.last.bounding_box()
    assert last["x"] + last["width"] <= box["x"] + box["width"] + 1
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
