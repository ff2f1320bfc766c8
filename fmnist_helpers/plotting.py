"""Presentation helpers: saving figures under fixed names, image grids, learning curves, confusion matrices."""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from fmnist_helpers import paths
from fmnist_helpers.config import active_profile, publishes_figures
from fmnist_helpers.data import CLASS_NAMES, atomic_write

FIGURE_DPI = 110
_FIGURE_NAME = re.compile(r"^\d\d_[a-z0-9_]+$")
# One colour per model family, the same in every notebook.
MODEL_COLORS = {
    "logistic_regression": "#7f7f7f", "random_forest": "#bcbd22", "svm_rbf": "#17becf", "human": "#000000",
    "seed001_tyler": "#ff9896", "seed001_tyler_l2": "#c5585a", "seed001_jackson": "#d62728",
    "seed001_jackson_l2": "#8c1c13", "seed002_mlp": "#ff7f0e", "workbook_mlp": "#9467bd",
    "seed000_cnn": "#1f77b4", "seed003_cnn": "#2ca02c", "seed004_cnn": "#8c564b", "seed004_cnn_untuned": "#c49c94",
    "workbook_cnn": "#e377c2",
}


def color_for(model: str) -> str:
    """A stable colour for ``model``: that of the longest name in ``MODEL_COLORS`` it starts with (so
    ``seed001_jackson_l2`` keeps its own colour and ``workbook_mlp_float32`` gets ``workbook_mlp``'s), or a fixed
    pick from tab20 by name."""
    families = [family for family in MODEL_COLORS if model.startswith(family)]
    if families:
        return MODEL_COLORS[max(families, key=len)]
    palette = plt.get_cmap("tab20").colors
    return "#%02x%02x%02x" % tuple(int(255 * c) for c in palette[zlib.crc32(model.encode()) % len(palette)])


def figure_path(name: str, profile: str | None = None) -> Path:
    """Where :func:`save_fig` writes the figure ``name`` in ``profile`` (default: the active profile).

    Only a full-profile run without ``-p`` changes publishes to ``figures/`` (see :func:`publishes_figures`)."""
    if not _FIGURE_NAME.match(name):
        raise ValueError(f"figure name must look like '03_cnn_learning_curves' (two digits, '_', lowercase), got {name!r}")
    profile = profile or active_profile()
    publish = publishes_figures() or profile != active_profile()
    return paths.figures_dir(profile, publish) / f"{name}.png"


def save_fig(name: str, fig: plt.Figure | None = None, profile: str | None = None) -> None:
    """Save ``fig`` (default: the current figure) as ``<figures>/<name>.png``.

    ``name`` starts with the notebook number, e.g. ``"03_cnn_learning_curves"``. A full-profile run with the
    profile's own parameters writes to the published ``figures/``; every other run writes to
    ``runs/<profile>/figures/``, so quick, default and partial full runs never overwrite published figures.
    The figure still shows inline in Jupyter.
    """
    target = figure_path(name, profile)
    fig = fig or plt.gcf()
    fig.tight_layout()
    atomic_write(target, lambda handle: fig.savefig(handle, format="png", dpi=FIGURE_DPI, bbox_inches="tight"))


def plot_image_grid(images: np.ndarray, labels: Sequence[int] | None, titles: Sequence[str] | None = None,
                    ncols: int = 10, title_colors: Sequence[str] | None = None, size: float = 1.3) -> plt.Figure:
    """Show images in a grid, each titled with its class name (or ``titles``)."""
    images = np.asarray(images).reshape(len(images), 28, 28)
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 1.15 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i], cmap="binary")
            ax.set_title(titles[i] if titles is not None else CLASS_NAMES[labels[i]], fontsize=8,
                         color=title_colors[i] if title_colors is not None else "black")
    return fig


def plot_history(histories: Mapping[str, Mapping[str, list]], metric: str = "accuracy",
                 ax: plt.Axes | None = None) -> plt.Axes:
    """Overlay training (dashed) and validation (solid) curves of several models for one metric."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    for model, history in histories.items():
        epochs = np.arange(1, len(history[metric]) + 1)
        colour = color_for(model)
        ax.plot(epochs, history[metric], "--", color=colour, alpha=0.7, label=f"{model} train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "-", color=colour, label=f"{model} validation")
    ax.set(xlabel="epoch", ylabel=metric, title=f"Training (dashed) vs validation (solid) {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, normalize: bool = False,
                          ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """A seaborn heatmap of the confusion matrix with class names; ``normalize`` shows row fractions (recall)."""
    import seaborn as sns
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=range(len(CLASS_NAMES)),
                              normalize="true" if normalize else None)
    ax = ax or plt.subplots(figsize=(7, 6))[1]
    sns.heatmap(matrix, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax,
                xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES, annot_kws={"fontsize": 7})
    ax.set(xlabel="predicted", ylabel="true", title=title or ("Confusion matrix (row-normalized)" if normalize
                                                               else "Confusion matrix (counts)"))
    ax.tick_params(axis="x", rotation=45)
    return ax
