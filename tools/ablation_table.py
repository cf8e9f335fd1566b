"""The ablation table of docs/ablation.md: validation numbers of training runs, one row per model folder.

    python tools/ablation_table.py FOLDER [FOLDER ...] [--write docs/ablation.md]

Every number comes from the folder's skin_demo.json, written by `python -m skin_demo train`
(ablation runs use --no-test, so no test-split number exists to look at). Rows show the recipe
elements that differ between runs, the kept epoch, and validation metrics as served (after the
decision rule), plus the plain argmax numbers (tau = 0) when a logit adjustment was chosen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_demo.classes import CLASSES  # noqa: E402
from skin_demo.metrics import fmt  # noqa: E402
from skin_demo.model_folder import ModelInfo  # noqa: E402
from skin_demo.training.augment import Augmentation  # noqa: E402

START, END = "<!-- ablation:start -->", "<!-- ablation:end -->"
RECIPE = ("balance", "lr", "epochs", "ema", "label_smoothing", "extra_data", "logit_adjustment")


def recipe(info: ModelInfo) -> str:
    training = info.training
    parts = [f"{key}={training.get(key)}" for key in RECIPE if training.get(key) not in (None, False, 0, 0.0)]
    if "augmentation" in training:  # only what differs from the default augmentation (docs/ablation.md lists it)
        default = Augmentation().to_dict()
        changed = {k: v for k, v in Augmentation.from_dict(training["augmentation"]).to_dict().items() if v != default[k]}
        parts.append("aug: " + (", ".join(f"{k}={v}" for k, v in changed.items()) if changed else "default"))
    return "; ".join(parts)


def row(folder: Path) -> str:
    info = ModelInfo.read(folder)
    val = info.metrics["val"]
    per_class = val["per_class"]
    grid = {g["tau"]: g for g in (info.logit_adjustment or {}).get("grid", [])}
    plain = grid.get(0.0)
    speeds = sorted(h["images_per_second"] for h in info.history if h.get("images_per_second"))
    kept = info.selection["epoch"] if info.selection else "–"
    tau = info.logit_adjustment["tau"] if info.logit_adjustment else "–"
    plain_text = f"{plain['balanced_accuracy']:.3f} / {plain['accuracy']:.3f}" if plain else "–"
    name = folder.parent.name if folder.name == "model" else folder.name  # tools/run_ablation.sh's layout
    return (f"| {name} | {info.backbone} | {recipe(info)} | {info.epochs_run} (kept {kept}) | "
            f"{fmt(val['balanced_accuracy'], '.3f')} | {fmt(val['accuracy'], '.3f')} | {fmt(val['macro_auc'], '.3f')} | "
            f"{per_class['nv']['recall']:.2f} | {per_class['mel']['recall']:.2f} | {tau} | {plain_text} | "
            f"{speeds[len(speeds) // 2] if speeds else 0:.0f} | {info.training_seconds / 60:.0f} |")


def recall_row(folder: Path) -> str:
    info = ModelInfo.read(folder)
    name = folder.parent.name if folder.name == "model" else folder.name
    per_class = info.metrics["val"]["per_class"]
    return f"| {name} | " + " | ".join(f"{per_class[code]['recall']:.2f}" for code in CLASSES) + " |"


def table(folders) -> str:
    lines = ["| run | backbone | recipe | epochs | val bal. acc. | val acc. | val macro AUC | val nv recall | "
             "val mel recall | tau | tau = 0: bal. acc. / acc. | images/s | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    recalls = ["", "Validation recall per class, as served:", "",
               "| run | " + " | ".join(CLASSES) + " |", "|---|" + "---|" * len(CLASSES)]
    return "\n".join(lines + [row(Path(folder)) for folder in folders]
                     + recalls + [recall_row(Path(folder)) for folder in folders])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--write", help="replace the table between the ablation markers of this Markdown file")
    args = parser.parse_args(argv)
    text = table(args.folders)
    print(text)
    if args.write:
        path = Path(args.write)
        doc = path.read_text() if path.exists() else ""
        block = f"{START}\n{text}\n{END}"
        doc = (doc[:doc.index(START)] + block + doc[doc.index(END) + len(END):] if START in doc and END in doc
               else doc.rstrip() + "\n\n" + block + "\n")
        path.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
