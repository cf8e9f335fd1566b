"""Exploratory plots of the HAM10000 metadata and of our split (docs/eda/*.png)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd

from ..classes import CLASSES
from .data import SPLITS, load_split

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def write_eda_plots(out_dir, data=None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = load_split(data)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)

    fig, ax = plt.subplots(figsize=(7, 4))
    counts = pd.crosstab(table["dx"], table["split"]).reindex(CLASSES)[list(SPLITS)]
    counts.plot.bar(stacked=True, ax=ax)
    ax.set_title(f"Images per class and split ({len(table)} images, {table['lesion_id'].nunique()} lesions)")
    ax.set_ylabel("images")
    save(fig, "class_by_split.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    for code in CLASSES:
        ax.hist(table.loc[table["dx"] == code, "age"].dropna(), bins=range(0, 95, 5), histtype="step",
                density=True, label=code, lw=1.5)
    ax.set_title("Age by diagnosis (density)")
    ax.set_xlabel("age")
    ax.legend()
    save(fig, "age_by_class.png")

    for column, title in (("sex", "Sex"), ("localization", "Body site"), ("dx_type", "How the diagnosis was confirmed")):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        shares = pd.crosstab(table[column], table["dx"], normalize="columns").reindex(columns=CLASSES)
        shares.T.plot.bar(stacked=True, ax=ax, legend=True, colormap="tab20")
        ax.set_title(f"{title} within each diagnosis")
        ax.set_ylabel("share")
        ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.0, 1.0))
        save(fig, f"{column}_by_class.png")
    return written
