"""Support code for controlled ablations (notebook 04): shared initial weights, fingerprints, seeds, weight summaries.

The regularizers themselves are taught, and defined, in ``notebooks/04_regularization.ipynb``. This module only
holds what is reused or is presentation: saving a model's initial weights atomically, copying the weights of the
layers that every variant shares, fingerprinting them, expanding a seed specification, and summarising or plotting
the kernels of several models side by side.

Import as ``from fmnist_helpers import regularization``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import matplotlib.pyplot as plt
import numpy as np

from fmnist_helpers import training
from fmnist_helpers.training import save_weights_atomically  # noqa: F401  (used by notebook 04)
from fmnist_helpers.config import non_negative_int, positive_int
from fmnist_helpers.plotting import color_for


# ---------------------------------------------------------------- seeds
def count_or_seeds(name: str, value: Any) -> int | list[int]:
    """Validator for a seed specification: a count (``3`` or ``"3"``) or explicit seeds (``[0, 5]`` or ``"0,5"``).

    A count ``n`` means the seeds ``seed, seed + 1, ..., seed + n - 1`` (see :func:`expand_seeds`).
    """
    if isinstance(value, str) and "," in value:
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{name} must be a positive count or a non-empty list of seeds >= 0, got {value!r}")
        seeds = [non_negative_int(f"{name}[{i}]", v) for i, v in enumerate(value)]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{name} must not repeat a seed, got {value!r}")
        return seeds
    try:
        return positive_int(name, value)
    except ValueError:
        raise ValueError(f"{name} must be a positive count (e.g. 3) or a list of seeds >= 0 (e.g. '0,1,2'), "
                         f"got {value!r}") from None


def expand_seeds(first: int, spec: int | Sequence[int]) -> list[int]:
    """The seeds of a sweep: ``spec`` seeds starting at ``first`` if ``spec`` is a count, else ``spec`` itself."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return [first + i for i in range(positive_int("seeds", spec))]
    return [non_negative_int("seeds", s) for s in spec]


# ---------------------------------------------------------------- initial weights
def initial_weights_path(profile: str, tag: str, seed: int) -> Path:
    """Where the initial weights of architecture ``tag`` for ``seed`` live: ``runs/<profile>/04_regularization/``."""
    return training.initial_weights_path(profile, "04_regularization", tag, seed)


def copy_shared_weights(source: keras.Model, target: keras.Model, names: Sequence[str]) -> list[str]:
    """Copy the weights of the layers called ``names`` from ``source`` to ``target`` (``set_weights`` per layer).

    Layers are matched by name, so ``target`` may hold extra layers (dropout, BatchNorm, augmentation) in between.
    Raises ``ValueError`` if a layer is missing from either model or its weights have other shapes.
    """
    if not names:
        raise ValueError("names must list at least one layer to share")
    for name in names:
        layers = []
        for role, model in (("source", source), ("target", target)):
            try:
                layers.append(model.get_layer(name))
            except ValueError:
                raise ValueError(f"{role} model {model.name!r} has no layer named {name!r}; its layers are "
                                 f"{[layer.name for layer in model.layers]}") from None
        src_weights = layers[0].get_weights()
        dst_shapes = [w.shape for w in layers[1].get_weights()]
        if [w.shape for w in src_weights] != dst_shapes:
            raise ValueError(f"layer {name!r}: source weights {[w.shape for w in src_weights]} do not fit the "
                             f"target's {dst_shapes}; build both models with the same layer sizes")
        layers[1].set_weights(src_weights)
    return list(names)


def weights_sha256(model: keras.Model, names: Sequence[str]) -> str:
    """SHA-256 of the weights of the layers ``names`` (their names, shapes and float32 bytes, in order)."""
    digest = hashlib.sha256()
    for name in names:
        for i, weights in enumerate(model.get_layer(name).get_weights()):
            array = np.ascontiguousarray(weights, dtype=np.float32)
            digest.update(f"{name}/{i}/{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- presentation
BASELINE_COLOR, INITIAL_COLOR = "#222222", "#a0a0a0"


def variant_colors(names: Sequence[str], baseline: str = "none", initial: str = "initial") -> dict[str, str]:
    """Distinct, stable colours for an ablation: dark grey for the baseline, light grey for the initial weights,
    then tab10 (and tab20 beyond nine) without their greys, in the order of ``names``. Pass every variant name,
    not a subset, so that a variant keeps its colour when only some variants run."""
    palette = [rgb for rgb in (*plt.get_cmap("tab10").colors, *plt.get_cmap("tab20").colors[1::2])
               if len(set(rgb)) > 1]  # a grey variant would read as the baseline or the initial weights
    colors, others = {}, [n for n in names if n not in (baseline, initial)]
    if len(others) > len(palette):
        raise ValueError(f"at most {len(palette)} variants besides the baseline can get distinct colours, "
                         f"got {len(others)}")
    for name, rgb in zip(others, palette):
        colors[name] = "#%02x%02x%02x" % tuple(int(round(255 * c)) for c in rgb)
    return {baseline: BASELINE_COLOR, initial: INITIAL_COLOR, **colors}


def recolor_history(ax: plt.Axes, colors: Mapping[str, str]) -> plt.Axes:
    """Recolour the curves drawn by ``fh.plot_history`` (labels ``"<model> train"``/``"<model> validation"``)."""
    for line in ax.get_lines():
        model = line.get_label().rsplit(" ", 1)[0]
        if model in colors:
            line.set_color(colors[model])
    ax.legend(fontsize=8)
    return ax


# ---------------------------------------------------------------- kernels
def kernel_summary(models: Mapping[str, keras.Model], layer_names: Sequence[str], tiny: float = 1e-3):
    """A DataFrame with, per model and layer, the L1 and L2 norms of the kernel and the share of near-zero weights."""
    import pandas as pd

    rows = []
    for model_name, model in models.items():
        for layer_name in layer_names:
            kernel = np.asarray(model.get_layer(layer_name).kernel, dtype=np.float64)
            rows.append({"model": model_name, "layer": layer_name, "l1_norm": np.abs(kernel).sum(),
                         "l2_norm": np.sqrt((kernel ** 2).sum()), "max_abs": np.abs(kernel).max(),
                         f"share_below_{tiny:g}": float((np.abs(kernel) < tiny).mean())})
    return pd.DataFrame(rows)


def plot_kernel_histograms(models: Mapping[str, keras.Model], layer_name: str, bins: int | None = None,
                           ax: plt.Axes | None = None, colors: Mapping[str, str] | None = None) -> plt.Axes:
    """Overlay histograms (log counts) of one layer's kernel values for several models.

    ``bins`` defaults to about one bin per 40 weights, between 20 and 120.
    """
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    colors = colors or {}
    kernels = {name: np.asarray(model.get_layer(layer_name).kernel).ravel() for name, model in models.items()}
    limit = max(np.abs(k).max() for k in kernels.values())
    size = max(len(k) for k in kernels.values())
    edges = np.linspace(-limit, limit, (bins or int(np.clip(size // 40, 20, 120))) + 1)
    for name, kernel in kernels.items():
        ax.hist(kernel, bins=edges, histtype="step", linewidth=1.5, color=colors.get(name, color_for(name)),
                label=name)
    ax.set(yscale="log", xlabel="weight value", ylabel="count (log scale)",
           title=f"Kernel of {layer_name!r} after training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_accuracy_vs_gap(summary, x: str = "gap", y: str = "test_accuracy", ax: plt.Axes | None = None,
                         baseline: str | None = None, colors: Mapping[str, str] | None = None) -> plt.Axes:
    """Mean ``y`` against mean ``x`` per model with ±1 std error bars, from a frame with ``<x>_mean``/``<x>_std``.

    ``summary`` is indexed by model name; dashed lines mark ``baseline`` if given. A std that is NaN (one seed)
    draws no error bar.
    """
    ax = ax or plt.subplots(figsize=(7, 5))[1]
    colors = colors or {}
    for model, row in summary.iterrows():
        ax.errorbar(row[f"{x}_mean"], row[f"{y}_mean"], xerr=np.nan_to_num(row[f"{x}_std"]),
                    yerr=np.nan_to_num(row[f"{y}_std"]), fmt="o", capsize=3, color=colors.get(model, color_for(model)),
                    label=model)
        ax.annotate(model, (row[f"{x}_mean"], row[f"{y}_mean"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    if baseline is not None and baseline in summary.index:
        ax.axhline(summary.loc[baseline, f"{y}_mean"], color="grey", linestyle="--", linewidth=0.8)
        ax.axvline(summary.loc[baseline, f"{x}_mean"], color="grey", linestyle="--", linewidth=0.8)
    ax.set(xlabel=f"{x} (mean ± std over seeds)", ylabel=f"{y} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    return ax


def paired_verdicts(runs, metric: str, higher_is_better: bool, baseline: str = "none"):
    """Per variant: the mean and the std over seeds of its ``metric`` minus the ``baseline``'s on the same seed
    (paired: both started from that seed's weights), and a verdict, ``better`` or ``worse`` when the mean
    difference is larger than that std (two seeds at least), else ``inconclusive``.

    ``runs`` has one row per run with the columns ``variant``, ``seed`` and ``metric``; the result keeps the
    variants in their first-appearance order, without the baseline.
    """
    import pandas as pd

    per_seed = runs.pivot(index="seed", columns="variant", values=metric)
    differences = per_seed.drop(columns=baseline).sub(per_seed[baseline], axis=0)
    out = pd.DataFrame({"difference": differences.mean(), "seed_std": differences.std(), "seeds": differences.count()})
    out = out.loc[[v for v in dict.fromkeys(runs["variant"]) if v != baseline]]
    clear = (out["difference"].abs() > out["seed_std"]) & (out["seeds"] >= 2)
    good = (out["difference"] > 0) == higher_is_better
    out["verdict"] = np.where(~clear, "inconclusive", np.where(good, "better", "worse"))
    return out[["difference", "seed_std", "verdict"]]
