"""Regenerate docs/screenshot.png, the README's picture of the app, in headless Chromium.

Run by hand from the repo root (needs Debian's chromium: `sh tests/install_browser.sh`):

    python tools/screenshot.py                                  # the bundled models (weights/, default registry)
    python tools/screenshot.py --registry path/to/models.json   # any registry
    python tools/screenshot.py --model-dir /tmp/mnv2_dev --display-name "MobileNetV2 (α 1.0)"   # one model folder
    python tools/screenshot.py --compare 6 --out /tmp/compare.png   # the Compare tab with the first 6 models

It serves the app on a free local port, uploads an example image, clicks Predict, then Explain
(LIME with --samples, default the app's 1000; --target CLASS and --detail N as in the app), waits
for the overlay and the chart, and saves the Classify tab's main area (title to the chart, 1200 px
wide) to --out. The first model in the registry is used. With --compare N it instead ticks the
first N models on the Compare tab, clicks Compare and saves the whole page. Takes a minute or two
on a busy CPU. Gradio analytics are off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from ports import free_port  # noqa: E402  (beside this script)

CHROMIUM = os.environ.get("SKIN_DEMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 1200


def one_model_registry(folder: Path, display_name: str | None) -> Path:
    """A throwaway registry serving just the model folder given."""
    folder = folder.resolve()
    path = Path(tempfile.mkdtemp(prefix="skin_demo_screenshot_")) / "models.json"
    path.write_text(json.dumps({"models": [{
        "name": folder.name, "display_name": display_name or folder.name, "source": str(folder),
        "description": f"Model folder {folder}"}]}))
    return path


def parse_args(argv=None):
    from skin_demo.serving.ui import EXAMPLES_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--registry", help="registry file (default: $SKIN_DEMO_REGISTRY, else the bundled one)")
    which.add_argument("--model-dir", help="serve this one model folder instead of a registry")
    parser.add_argument("--display-name", help="with --model-dir: the name shown in the Model dropdown")
    parser.add_argument("--example", default=str(EXAMPLES_DIR / "mel_ISIC_0024315.jpg"), help="image to upload")
    parser.add_argument("--method", choices=["lime", "gradcam"], default="lime")
    parser.add_argument("--samples", type=int, default=1000, help="max LIME samples (200-2000)")
    parser.add_argument("--target", help="class to explain: a code such as mel (default: the top class)")
    parser.add_argument("--detail", type=int, help="regions in the LIME map (default: the app's)")
    parser.add_argument("--compare", type=int, metavar="N", help="screenshot the Compare tab with the first N models")
    parser.add_argument("--out", default=str(REPO_ROOT / "docs" / "screenshot.png"))
    parser.add_argument("--full-page", action="store_true", help="the whole page instead of the main area")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} not found: run `sh tests/install_browser.sh` first.")
    from playwright.sync_api import expect, sync_playwright

    from skin_demo.serving.store import ModelStore
    from skin_demo.serving.service import SkinDemo
    from skin_demo.serving.ui import CSS, build_app

    registry = one_model_registry(Path(args.model_dir), args.display_name) if args.model_dir else args.registry
    demo = SkinDemo(ModelStore(registry))
    if not demo.model_names():
        sys.exit("No model of the registry loaded (weights/ not there yet?); pass --registry or --model-dir.\n"
                 + demo.unavailable_report())
    if demo.unavailable_report():
        print("warning: the screenshot will list unavailable models:\n" + demo.unavailable_report(), file=sys.stderr)

    app = build_app(demo)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS)
    start = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.locator("#predict")).to_be_visible(timeout=60_000)
            if args.compare:
                _compare(page, expect, args, demo)
                page.mouse.move(0, 0)  # no hover effects in the picture
                page.screenshot(path=out, full_page=True)
                print(page.locator("#compare-summary").inner_text())
            else:
                _classify(page, expect, args)
                page.mouse.move(0, 0)
                if args.full_page:
                    page.screenshot(path=out, full_page=True)
                else:
                    boxes = [page.locator(sel).bounding_box()  # in the viewport: add how far the page scrolled
                             for sel in ("#explain", "#explain-summary", "#weights-chart")]
                    bottom = max(box["y"] + box["height"] for box in boxes) + page.evaluate("window.scrollY")
                    page.screenshot(path=out, full_page=True,
                                    clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom + 24})
                print(page.locator("#explain-summary").inner_text())
            browser.close()
    finally:
        app.close()
    print(f"saved {out} in {time.perf_counter() - start:.0f} s")
    return 0


def _settings(page, args, scope: str, samples: str) -> None:
    """Target class, detail and max samples in the settings of one tab (`scope`: "" or "compare-")."""
    from skin_demo.classes import display_name

    if args.target:
        page.locator(f"#{scope}target input").click()
        page.get_by_role("option", name=display_name(args.target), exact=True).click()
    if args.detail:
        detail = page.locator(f"#{scope}detail input[type=number]")
        detail.fill(str(args.detail))
        detail.press("Enter")
    box = page.locator(f"#{samples} input[type=number]")
    box.fill(str(args.samples))
    box.press("Enter")


def _classify(page, expect, args) -> None:
    page.locator("#input-image input[type=file]").set_input_files(args.example)
    expect(page.locator("#input-image img")).to_be_visible(timeout=30_000)
    page.locator("#predict").click()
    expect(page.locator("#label [data-testid$='-confidence-set']")).to_have_count(7, timeout=120_000)
    page.locator("#method").get_by_role("radio", name=args.method).check()
    _settings(page, args, "", "samples")
    page.locator("#explain").click()
    expect(page.locator("#explain-summary")).to_contain_text(f"{args.method.upper()} for", timeout=600_000)
    page.wait_for_function("() => { const i = document.querySelector('#overlay img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    if args.method == "lime":
        expect(page.locator("#weights-chart img")).to_be_visible(timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('#weights-chart img');"
                               " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    page.wait_for_timeout(500)  # layout settles after the pictures load


def _compare(page, expect, args, demo) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-image input[type=file]").set_input_files(args.example)
    expect(page.locator("#compare-image img")).to_be_visible(timeout=30_000)
    models = page.locator("#compare-models")
    for index, (label, _) in enumerate(demo.model_choices()):
        box = models.get_by_role("checkbox", name=label, exact=True)
        box.uncheck()
        if index < args.compare:
            box.check()
    page.locator("#compare-method").get_by_role("radio", name=args.method).check()
    page.get_by_text("More settings").click()
    _settings(page, args, "compare-", "compare-samples")
    page.locator("#compare").click()
    count = min(args.compare, len(demo.model_choices()))
    expect(page.locator("#compare-gallery img")).to_have_count(count, timeout=600_000)
    page.wait_for_function("() => [...document.querySelectorAll('#compare-gallery img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=60_000)


if __name__ == "__main__":
    sys.exit(main())
