"""The launched app in a real headless Chromium, used as a person would: upload, Predict, Explain, Compare.

Chromium is Debian's (tests/install_browser.sh), driven by Playwright for Python; Playwright's own
browser download is never used. Selectors are the app's elem_ids plus the Gradio 6 DOM inside them
(`data-testid`s and roles, checked against the real page). Screenshots go to the test's tmp dir.
"""

import os
from pathlib import Path

import pytest
from PIL import Image

from skin_demo import CLASSES, display_name
from skin_demo.serving.ui import EXAMPLES_DIR

CHROMIUM = Path(os.environ.get("SKIN_DEMO_CHROMIUM", "/usr/bin/chromium"))
# without the background-networking flags Chromium's own connections are refused on a closed network
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLE = EXAMPLES_DIR / "mel_ISIC_0024315.jpg"
COMPARE_EXAMPLE = "bkl ISIC_0024338"  # an example button's label
TARGET = "bcc"  # the class Compare is asked to explain
LIME_SAMPLES = "100"  # a cap below the default design (lime.TYPICAL_SAMPLES): quick, and the count is exactly it
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


def use_few_lime_samples(page, slider="#samples"):
    box = page.locator(f"{slider} input[type=number]")
    box.fill(LIME_SAMPLES)
    box.press("Enter")
    expect(box).to_have_value(LIME_SAMPLES)


def choose(page, dropdown, option):
    """Pick `option` (its label) in the Gradio dropdown with elem_id `dropdown`."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"{dropdown} input")).to_have_value(option)


def test_classify_tab_predicts_seven_labels_and_shows_an_explanation(page, tmp_path):
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
    summary = page.locator("#explain-summary")
    expect(summary).to_contain_text(f"LIME for {top}", timeout=WAIT_MS)
    expect(summary).to_contain_text(f"{LIME_SAMPLES} perturbed samples")
    expect(summary).to_contain_text("Numbered regions, weight ± standard error")
    expect(summary).to_contain_text("± is one standard error")
    assert wait_for_image(page, "#overlay img") == Image.open(EXAMPLE).size  # drawn on the upload, at its size
    wait_for_image(page, "#weights-chart img")  # the bar chart of the region weights
    expect(page.locator("#weights-chart img")).to_be_visible()
    page.screenshot(path=tmp_path / "classify.png", full_page=True)


def test_compare_tab_explains_one_chosen_class_for_two_models(page, tmp_path):
    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#compare")).to_be_visible()
    page.get_by_text("More settings").click()
    use_few_lime_samples(page, "#compare-samples")

    page.locator("button.gallery-item").filter(visible=True).filter(has_text=COMPARE_EXAMPLE).click()
    wait_for_image(page, "#compare-image img")

    models = page.locator("#compare-models")
    for name in ("Tiny A", "Tiny B"):
        models.get_by_role("checkbox", name=name).uncheck()
        expect(models.get_by_role("checkbox", name=name)).not_to_be_checked()
    for name in ("Tiny A", "Tiny B"):
        models.get_by_role("checkbox", name=name).check()
        expect(models.get_by_role("checkbox", name=name)).to_be_checked()
    choose(page, "#compare-target", display_name(TARGET))

    page.locator("#compare").click()
    gallery = page.locator("#compare-gallery img")
    expect(gallery).to_have_count(2, timeout=WAIT_MS)
    wait_for_image(page, "#compare-gallery img")
    captions = page.locator("#compare-gallery .caption-label").all_inner_texts()
    assert captions == [f"Tiny A · {TARGET}", f"Tiny B · {TARGET}"], "both models explain the class chosen"
    expect(page.locator("#compare-summary")).to_contain_text(
        f"Both models explain {display_name(TARGET)}, the class chosen.")

    table = page.locator("#compare-table")
    headers = table.locator("[role=columnheader] .header-content")  # without the cell-menu button
    expect(headers).to_have_text(["model", *CLASSES, "top", "samples"])
    expect(table.locator("[role=gridcell][data-col='0']")).to_have_text(["Tiny A", "Tiny B"])
    columns = [table.locator(f"[role=gridcell][data-col='{col}']").all_inner_texts() for col in range(1, 10)]
    for row in range(2):
        assert sum(float(column[row]) for column in columns[:7]) == pytest.approx(100, abs=0.5), "a row is in %"
    assert columns[8] == [LIME_SAMPLES, LIME_SAMPLES]
    # every column is in view, not pushed off to the right by the model names
    box, last = table.bounding_box(), headers.last.bounding_box()
    assert last["x"] + last["width"] <= box["x"] + box["width"] + 1

    agreement = page.locator("#compare-agreement")
    expect(agreement.locator("[role=columnheader] .header-content")).to_have_text(["model", "1", "2"])
    expect(agreement.locator("[role=gridcell][data-col='0']")).to_have_text(["1 · Tiny A", "2 · Tiny B"])
    files = page.locator("#compare-files")  # a name is drawn as stem and suffix
    for stem in ("probabilities", "agreement", f"1_tiny_a_{TARGET}_lime", f"2_tiny_b_{TARGET}_lime"):
        expect(files).to_contain_text(stem)
    page.screenshot(path=tmp_path / "compare.png", full_page=True)
