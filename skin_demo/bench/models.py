"""The README model table: size, speed (serving and training) and test metrics of every folder under weights/.

Speed is measured here, in this run, on this machine; metrics of a folder come from its skin_demo.json
(computed once by the training code on the lesion-disjoint test split). Composite registry entries
(TTA, ensembles) have no folder: they are scored on the same test split here, by `evaluate_split`.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from ..metrics import fmt
from ..model_folder import INFO_FILE, WEIGHTS_FILE
from ..serving.classifier import Classifier
from ..serving.store import ModelStore
from ..training.evaluate import evaluate_split

START, END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"


def model_folders(weights_dir) -> list[Path]:
    return sorted(p.parent for p in Path(weights_dir).glob(f"*/{INFO_FILE}"))


def measure(classifier, repeats: int = 30, batch: int = 64) -> dict:
    """Median single-image latency (ms) and batch throughput (images/s) of the compiled forward pass."""
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, *classifier.input_size, 3)).astype("float32")
    many = rng.uniform(0, 255, (batch, *classifier.input_size, 3)).astype("float32")
    classifier(one), classifier(many)  # trace once
    latencies = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier(one)
        latencies.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    for _ in range(3):
        classifier(many)
    throughput = 3 * batch / (time.perf_counter() - start)
    return {"latency_ms": statistics.median(latencies), "throughput": throughput}


def composite_rows(registry=None) -> list[dict]:
    """TTA and ensemble entries of the registry, scored on the test split in this run."""
    store = ModelStore(registry, lazy=True)
    rows = []
    for name, entry in store.entries.items():
        if not (entry.members or entry.tta):
            continue
        try:
            classifier = store.get(name)
        except Exception as exc:  # an unavailable member: say so in the log, keep the table
            print(f"skipping {name}: {exc}")
            continue
        test = evaluate_split(classifier, "test")
        rows.append({
            "name": name, "backbone": entry.location, "parameters": None, "size_mib": None,
            "input": "x".join(map(str, classifier.input_size)), **measure(classifier),
            "balanced_accuracy": test["balanced_accuracy"], "macro_auc": test["macro_auc"],
            "accuracy": test["accuracy"], "ece": test["ece"], "training_min": None, "training_speed": None,
        })
    return rows


def benchmark_rows(weights_dir) -> list[dict]:
    rows = []
    for folder in model_folders(weights_dir):
        classifier = Classifier.from_folder(folder)
        info = classifier.info
        test = info.test_metrics
        rows.append({
            "name": folder.name, "backbone": info.backbone, "parameters": info.parameters,
            "size_mib": (folder / WEIGHTS_FILE).stat().st_size / 2**20,
            "input": "x".join(map(str, info.input_size)), **measure(classifier),
            "balanced_accuracy": test.get("balanced_accuracy"), "macro_auc": test.get("macro_auc"),
            "accuracy": test.get("accuracy"),
            "ece": info.served_test_ece,
            "training_min": info.total_training_seconds / 60, "training_speed": training_speed(info),
        })
    return rows


def training_speed(info) -> float | None:
    """Median training images/s of the run's epochs that train the whole network (not the head alone), on the
    machine that trained it; None for runs that did not record it."""
    speeds = sorted(h["images_per_second"] for h in info.history
                    if h.get("images_per_second") and h.get("phase") != "head")
    return speeds[len(speeds) // 2] if speeds else None


def render_table(rows: list[dict]) -> str:
    lines = ["| model | backbone | params | weights MiB | input | latency ms (1 image) | images/s (batch 64) "
             "| test bal. acc. | test macro AUC | test acc. | ECE | training min (all runs) | training images/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['backbone']} | {fmt(r['parameters'], ',')} | {fmt(r['size_mib'], '.1f')} | "
                     f"{r['input']} | {r['latency_ms']:.1f} | {r['throughput']:.0f} | {fmt(r['balanced_accuracy'], '.3f')} | "
                     f"{fmt(r['macro_auc'], '.3f')} | {fmt(r['accuracy'], '.3f')} | {fmt(r['ece'], '.3f')} | "
                     f"{fmt(r['training_min'], '.0f')} | {fmt(r.get('training_speed'), '.0f')} |")
    return "\n".join(lines)


def write_into_readme(table: str, readme) -> None:
    """Replace the text between the benchmark markers (append the block when they are missing)."""
    readme = Path(readme)
    text = readme.read_text() if readme.exists() else ""
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)
