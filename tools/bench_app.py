"""Round trips through the running app against Gradio's own floor, measured in the same run.

    python tools/bench_app.py [--registry FILE] [--images 5] [--repeats 20] [--no-browser]

Starts `python app.py` (the bundled registry, or --registry) on a free loopback port and, in this
process, a floor app: the same image input and `gr.Label` output around a function that does nothing.
Through `gradio_client` it times, on the example images (from the lesion-disjoint test split):
- `/predict` of the floor and of the app's first model (their difference is our overhead);
- `/explain` at the app's defaults (LIME, detail 25, the first model's top class);
- `/compare` of every served network (entries with their own weights) and of every served entry, with
  LIME explanations;
- the Leaderboard in headless Chromium: from the tab click until the table and both plots are drawn
  (the first opening, which reads the stored predictions, and a second one).
Waits until the app has moved its models to onnxruntime (as a user's app has, a few seconds after
start) before timing. Prints one JSON object with medians and the ratios to the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from load_test import EXAMPLES, REPO, first_model, start_app, stop_app  # noqa: E402  (beside this script)
from ports import free_port  # noqa: E402

sys.path.insert(0, str(REPO))
from skin_demo.serving.catalog import load_registry  # noqa: E402

CHROMIUM = os.environ.get("SKIN_DEMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGETS = {"explain_s": 1.5, "compare_networks_s": 4.0, "leaderboard_render_s": 1.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", help="registry file for the app (default: the bundled one)")
    parser.add_argument("--images", type=int, default=5, help="example images for /explain and /compare")
    parser.add_argument("--repeats", type=int, default=20, help="/predict round trips of each app")
    parser.add_argument("--no-browser", action="store_true", help="skip the Leaderboard timing in Chromium")
    return parser.parse_args(argv)


def floor_app() -> gr.Blocks:
    """The app's /predict without the model: what Gradio, the upload and the client cost alone."""
    with gr.Blocks() as floor:
        image = gr.Image(type="filepath", image_mode=None)
        label = gr.Label(num_top_classes=7)
        button = gr.Button()
        button.click(lambda path: {"nothing": 1.0}, image, label, api_name="predict", preprocess=False)
    return floor


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def median(values) -> float:
    return round(statistics.median(values), 4)


def round_trips(client: Client, api_name: str, arguments, repeats: int) -> list[float]:
    client.predict(*arguments(0), api_name=api_name)  # warm: upload path, compiled graphs
    return [timed(lambda i=i: client.predict(*arguments(i), api_name=api_name)) for i in range(repeats)]


def served_entries(registry: str | None) -> tuple[list[str], list[str]]:
    """(networks, every entry) the registry serves: networks have weights of their own, not TTA or members."""
    entries = load_registry(registry)
    names = [entry.name for entry in entries]
    return [entry.name for entry in entries if not (entry.tta or entry.members)], names


def wait_for_onnxruntime(client: Client, models: list[str], timeout: float = 600.0) -> None:
    """The app converts its models in the background at start: wait until /model_info says onnxruntime
    for every network."""
    deadline = time.monotonic() + timeout
    waiting = list(models)
    while waiting and time.monotonic() < deadline:
        waiting = [name for name in waiting if "onnxruntime" not in client.predict(name, api_name="/model_info")[0]]
        time.sleep(2 if waiting else 0)
    if waiting:
        print(f"warning: {', '.join(waiting)} still on Keras after {timeout:.0f} s; timing anyway", file=sys.stderr)


def leaderboard_render(url: str, entries: int, openings: int = 3) -> list[float]:
    """Seconds from clicking the Leaderboard tab until its table has a row per entry and both plots are drawn,
    in Chromium, each time on a freshly loaded page: the first opening (the server reads the stored
    predictions), then later ones (as the next visitors see it)."""
    from playwright.sync_api import expect, sync_playwright

    seconds = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(openings):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            expect(page.locator("#predict")).to_be_visible(timeout=120_000)
            start = time.perf_counter()
            page.get_by_role("tab", name="Leaderboard").click()
            cells = page.locator("#leaderboard-table [role=gridcell][data-col='0']")
            expect(cells).to_have_count(entries, timeout=60_000)
            for plot in ("#leaderboard-roc img", "#leaderboard-reliability img"):
                page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && "
                                       "i.naturalWidth > 0 }", arg=plot, timeout=60_000)
            seconds.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    images = [handle_file(str(path)) for path in EXAMPLES[:max(1, args.images)]]
    networks, entries = served_entries(args.registry)
    floor = floor_app()
    floor_port = free_port()
    floor.queue().launch(server_name="127.0.0.1", server_port=floor_port, prevent_thread_lock=True, quiet=True)
    with tempfile.TemporaryDirectory() as cache:
        server, url = start_app(args.registry, cache)
        try:
            client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
            floor_client = Client(f"http://127.0.0.1:{floor_port}/", verbose=False, analytics_enabled=False,
                                  download_files=False)
            model = first_model(client)
            wait_for_onnxruntime(client, networks)
            picture = lambda i: images[i % len(images)]  # noqa: E731
            floor_s = round_trips(floor_client, "/predict", lambda i: (picture(i),), args.repeats)
            predict_s = round_trips(client, "/predict", lambda i: (picture(i), model), args.repeats)
            explain_s = round_trips(client, "/explain", lambda i: (picture(i), model), len(images))
            compare_networks_s = round_trips(client, "/compare", lambda i: (picture(i), networks), len(images))
            compare_all_s = round_trips(client, "/compare", lambda i: (picture(i), entries), len(images))
            render_s = [] if args.no_browser else leaderboard_render(url, len(entries))
        finally:
            stop_app(server)
    with contextlib.redirect_stdout(sys.stderr):  # Gradio says it is closing on stdout; the report is the JSON
        floor.close()
    floor_median = median(floor_s)
    report = {
        "model": model, "networks": networks, "entries": entries, "images": len(images),
        "floor_predict_s": floor_median,
        "predict_s": median(predict_s), "predict_overhead_s": round(median(predict_s) - floor_median, 4),
        "explain_s": median(explain_s), "explain_over_floor": round(median(explain_s) / floor_median, 1),
        "compare_networks_s": median(compare_networks_s), "compare_all_s": median(compare_all_s),
        "leaderboard_first_render_s": round(render_s[0], 3) if render_s else None,
        "leaderboard_render_s": round(median(render_s[1:]), 3) if len(render_s) > 1 else None,
        "per_call": {"floor_predict": floor_s, "predict": predict_s, "explain": explain_s,
                     "compare_networks": compare_networks_s, "compare_all": compare_all_s, "leaderboard": render_s},
    }
    report["targets_met"] = {key: report[key] is not None and report[key] <= limit for key, limit in TARGETS.items()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
