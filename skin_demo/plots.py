"""Figures that training (model folders) and serving (Model info, Leaderboard) draw alike."""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from .classes import CLASSES


def confusion_figure(y_true, y_pred, title: str, normalize: str | None = "true") -> Figure:
    """A confusion matrix over the 7 classes (row-normalised by default), as the model folders and the Model
    info tab show it; a figure outside pyplot's registry, so requests may draw it at once."""
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=range(len(CLASSES)), display_labels=CLASSES, normalize=normalize,
        values_format=".2f" if normalize else "d", ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(textwrap.fill(f"{title} confusion matrix" + (" (row-normalised)" if normalize else ""), 60))
    return fig
