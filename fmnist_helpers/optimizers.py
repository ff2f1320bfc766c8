"""A fair optimizer comparison (notebook 05): optimizers by name, learning-rate grids, shared initial weights,
time-to-target, mean ± std curves over seeds, an interleaved step timer and rankings that respect seed noise.

The optimizers themselves are Keras' (``keras.optimizers``); the notebook explains what each one does. This module
holds the bookkeeping around them. Import as ``from fmnist_helpers import optimizers``.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fmnist_helpers import training
from fmnist_helpers.config import positive_int

# name -> (keras.optimizers class name, fixed settings). Everything else stays at Keras' defaults.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "rmsprop": ("RMSprop", {}),
    "adagrad": ("Adagrad", {}),
    "adam": ("Adam", {}),
    "adamax": ("Adamax", {}),
    "nadam": ("Nadam", {}),
    "adamw": ("AdamW", {}),
}
OPTIMIZER_NAMES: tuple[str, ...] = tuple(OPTIMIZERS)

# Centre of each optimizer's learning-rate grid: a value that usually works for a small MLP. Grids step by ~3x
# (1, 3, 10, ...) around it, so the sweep, not this guess, picks the rate. Adam, Nadam and AdamW are centred at
# Keras' default 1e-3: centred at 3e-4, their sweeps on the workbook's MLP picked rates 3-10x above the centre.
# The top of a five-point grid (10x the centre) is deliberately too large: on the workbook's MLP it trains badly
# or not at all, but without overflowing to NaN (checked for every optimizer on 10,000 images over 10 epochs).
GRID_CENTERS: dict[str, float] = {
    "sgd": 1e-1, "momentum": 1e-2, "nesterov": 1e-2, "rmsprop": 3e-4, "adagrad": 3e-2,
    "adam": 1e-3, "adamax": 3e-3, "nadam": 1e-3, "adamw": 1e-3,
}
LADDER: tuple[float, ...] = tuple(float(f"{m}e{e}") for e in range(-6, 2) for m in (1, 3))  # 1e-6, 3e-6, ..., 30

# One colour per optimizer, the same in every figure: SGD family in blues, adaptive methods in warm colours.
OPTIMIZER_COLORS: dict[str, str] = {
    "sgd": "#9ecae1", "momentum": "#4292c6", "nesterov": "#08519c", "rmsprop": "#2ca02c", "adagrad": "#bcbd22",
    "adam": "#d62728", "adamax": "#ff7f0e", "nadam": "#8c564b", "adamw": "#e377c2",
}


# ---------------------------------------------------------------- optimizers by name
def check_optimizer_name(name: Any) -> str:
    """Return ``name`` if it is one of :data:`OPTIMIZER_NAMES`; otherwise raise ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names are {', '.join(OPTIMIZER_NAMES)}")
    return name


def make_optimizer(name: str, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
                   **overrides: Any) -> keras.optimizers.Optimizer:
    """A fresh ``keras.optimizers`` instance for ``name`` with the given learning rate (a number or a schedule).

    ``momentum`` and ``nesterov`` are ``SGD(momentum=0.9)`` and ``SGD(momentum=0.9, nesterov=True)``; every
    other setting keeps Keras' default unless given in ``overrides`` (e.g. ``weight_decay=1e-3`` for AdamW).

    >>> make_optimizer("nesterov", 0.01).nesterov
    True
    """
    class_name, fixed = OPTIMIZERS[check_optimizer_name(name)]
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        try:
            value = float(learning_rate) if not isinstance(learning_rate, bool) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"learning_rate must be a positive number or a keras LearningRateSchedule, "
                             f"got {learning_rate!r}")
        learning_rate = value
    return getattr(keras.optimizers, class_name)(learning_rate=learning_rate, **{**fixed, **overrides})


def describe_optimizers(names: Sequence[str] = OPTIMIZER_NAMES, points: int = 4) -> pd.DataFrame:
    """One row per optimizer: its Keras class, the settings fixed here and its learning-rate grid."""
    rows = []
    for name in names:
        class_name, fixed = OPTIMIZERS[check_optimizer_name(name)]
        settings = ", ".join(f"{k}={v}" for k, v in fixed.items()) or "Keras defaults"
        rows.append({"optimizer": name, "keras class": f"keras.optimizers.{class_name}", "fixed settings": settings,
                     "learning rates swept": ", ".join(f"{lr:g}" for lr in learning_rate_grid(name, points))})
    return pd.DataFrame(rows).set_index("optimizer")


def learning_rate_grid(name: str, points: int = 4) -> list[float]:
    """``points`` learning rates ~3x apart (1, 3, 10, ...) around the optimizer's grid centre, ascending.

    Two points give ``[c, 3c]``, three ``[c/3, c, 3c]``, four ``[c/3, c, 3c, 10c]``, five ``[c/10, ..., 10c]``.
    """
    points = positive_int("points", points)
    center = LADDER.index(GRID_CENTERS[check_optimizer_name(name)])
    start = center - (points - 1) // 2
    if start < 0 or start + points > len(LADDER):
        raise ValueError(f"points must be at most {2 * min(center, len(LADDER) - 1 - center) + 1} for {name}, "
                         f"got {points}")
    return list(LADDER[start:start + points])


def pick_learning_rates(sweep: pd.DataFrame, metric: str = "best_val_accuracy") -> pd.DataFrame:
    """The best learning rate per optimizer by ``metric`` (validation only; averaged over seeds if several).

    ``sweep`` has columns ``optimizer``, ``learning_rate`` and ``metric``. Ties go to the smaller rate.
    ``on_edge`` flags a winner at either end of the grid: the best rate may lie outside it, so widen the grid.
    """
    missing = {"optimizer", "learning_rate", metric} - set(sweep.columns)
    if missing:
        raise ValueError(f"sweep needs the columns {sorted(missing)}; it has {list(sweep.columns)}")
    if sweep.empty:
        raise ValueError("sweep is empty: run at least one learning rate per optimizer")
    means = (sweep.groupby(["optimizer", "learning_rate"], sort=False)[metric].mean()
             .fillna(-np.inf).reset_index().sort_values(["optimizer", "learning_rate"]))
    rows = []
    for name, group in means.groupby("optimizer", sort=False):
        best = group.loc[group[metric].idxmax()]
        rates = group["learning_rate"].tolist()
        rows.append({"optimizer": name, "learning_rate": float(best["learning_rate"]), metric: float(best[metric]),
                     "grid": ", ".join(f"{lr:g}" for lr in rates),
                     "on_edge": len(rates) > 1 and best["learning_rate"] in (rates[0], rates[-1])})
    order = list(dict.fromkeys(sweep["optimizer"]))
    return pd.DataFrame(rows).set_index("optimizer").loc[order]


# ---------------------------------------------------------------- identical initial weights
def initial_weights_path(profile: str, tag: str, seed: int) -> Path:
    """``runs/<profile>/05_optimizers/initial_<tag>_seed<seed>.weights.h5``: the start of every run of ``seed``."""
    return training.initial_weights_path(profile, "05_optimizers", tag, seed)


def weights_fingerprint(model: keras.Model) -> str:
    """The first 16 hex digits of the SHA-256 of all of ``model``'s weights (shapes and float32 bytes, in order)."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        array = np.ascontiguousarray(weights, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- per-run metrics
def _series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray:
    if key not in history:
        raise ValueError(f"history has no {key!r}; it has {sorted(history)}")
    return np.asarray(history[key], dtype=float)


def cumulative_seconds(history: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Wall-clock seconds at the end of each epoch: the running sum of ``epoch_time_s``."""
    return np.cumsum(_series(history, "epoch_time_s"))


def epochs_to_target(history: Mapping[str, Sequence[float]], target: float, metric: str = "val_accuracy") -> float:
    """The first epoch (1-based) at which ``metric`` reaches ``target``, or NaN if it never does."""
    reached = np.flatnonzero(_series(history, metric) >= target)
    return float(reached[0] + 1) if reached.size else math.nan


def time_to_target(history: Mapping[str, Sequence[float]], target: float, metric: str = "val_accuracy") -> float:
    """Wall-clock seconds of training until ``metric`` first reaches ``target``, or NaN if it never does."""
    epoch = epochs_to_target(history, target, metric)
    return math.nan if math.isnan(epoch) else float(cumulative_seconds(history)[int(epoch) - 1])


def run_metrics(record: Mapping[str, Any], target: float) -> dict[str, float]:
    """The numbers the comparison needs from one results record."""
    metrics, history = record["metrics"], record["history"]
    return {"test_accuracy": metrics["test_accuracy"], "final_val_accuracy": metrics["final_val_accuracy"],
            "best_val_accuracy": metrics["best_val_accuracy"],
            "gap": metrics["final_train_accuracy"] - metrics["final_val_accuracy"],
            "seconds_to_target": time_to_target(history, target), "epochs_to_target": epochs_to_target(history, target),
            "train_seconds": float(cumulative_seconds(history)[-1]), "final_loss": float(history["loss"][-1])}


# ---------------------------------------------------------------- curves over seeds
def seed_band(histories: Sequence[Mapping[str, Sequence[float]]], metric: str, x: str = "epoch"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, mean, std)`` of ``metric`` over several seeds' histories, epoch by epoch.

    ``x="epoch"`` gives 1, 2, ...; ``x="seconds"`` gives the mean cumulative wall-clock time at each epoch.
    Histories of different lengths are cut to the shortest. The std is the sample std (0 for one seed).
    """
    if not histories:
        raise ValueError("histories is empty")
    if x not in ("epoch", "seconds"):
        raise ValueError(f"x must be 'epoch' or 'seconds', got {x!r}")
    length = min(len(h[metric]) for h in histories)
    values = np.stack([_series(h, metric)[:length] for h in histories])
    std = values.std(axis=0, ddof=1) if len(histories) > 1 else np.zeros(length)
    if x == "epoch":
        xs = np.arange(1, length + 1, dtype=float)
    else:
        xs = np.stack([cumulative_seconds(h)[:length] for h in histories]).mean(axis=0)
    return xs, values.mean(axis=0), std


def plot_bands(ax: plt.Axes, bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
               colors: Mapping[str, str] | None = None, styles: Mapping[str, str] | None = None) -> plt.Axes:
    """Draw each ``name: (x, mean, std)`` as a line with a shaded ±1 std band."""
    colors = colors or OPTIMIZER_COLORS
    for name, (xs, mean, std) in bands.items():
        colour = colors.get(name)
        ax.plot(xs, mean, (styles or {}).get(name, "-"), color=colour, label=name, marker="." if len(xs) < 30 else None)
        ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.18, linewidth=0)
    ax.grid(alpha=0.3)
    return ax


def plot_sweep(sweep: pd.DataFrame, chosen: pd.DataFrame, metric: str = "best_val_accuracy",
               ax: plt.Axes | None = None, floor: float = 0.2) -> plt.Axes:
    """Validation accuracy against learning rate (log scale), one line per optimizer, a star at the chosen rate.

    Rates that scored below ``floor`` (or NaN) failed to train; by default that is twice chance level among ten
    classes. They are left out of the lines, so that they do not squash the scale of the others, and named under
    the axis instead.
    """
    ax = ax or plt.subplots(figsize=(9, 5))[1]
    failed = []
    for name, group in sweep.groupby("optimizer", sort=False):
        group = group.groupby("learning_rate")[metric].mean()
        trained = group >= floor
        failed += [f"{name} at {lr:g} ({score:.2f})" for lr, score in group[~trained].items()]
        ax.plot(group.index[trained], group.values[trained], "-o", color=OPTIMIZER_COLORS.get(name), label=name,
                markersize=4)
        ax.plot(chosen.loc[name, "learning_rate"], chosen.loc[name, metric], "*", markersize=15,
                color=OPTIMIZER_COLORS.get(name), markeredgecolor="black")
    note = f"\nnot drawn, below {floor:g}: " + "; ".join(failed) if failed else ""
    ax.set(xscale="log", xlabel="learning rate" + note, ylabel=metric.replace("_", " "),
           title="Learning-rate sweep on the validation split (star: chosen rate)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncols=3)
    return ax


# ---------------------------------------------------------------- rankings that respect seed noise
def combined_std(std_a: float, std_b: float) -> float:
    """The spread of the difference between two single runs, ``sqrt(std_a² + std_b²)``, from each side's std over
    seeds; NaN if unknown. As a bar for comparing means it is conservative: it does not shrink with more seeds."""
    return float(math.hypot(std_a, std_b)) if np.isfinite(std_a) and np.isfinite(std_b) else math.nan


def verdict_against_best(means: pd.Series, stds: pd.Series) -> pd.DataFrame:
    """Per entry: how far it is behind the best mean, the combined seed std, and a verdict.

    ``behind`` when the difference exceeds the combined seed std, ``tied with best`` when it does not,
    ``no verdict (one seed)`` when a std is unknown and ``no value`` for a NaN mean. Higher means are better.
    """
    if means.empty:
        raise ValueError("means is empty")
    best = means.idxmax()
    rows = {}
    for name in means.index:
        difference = float(means[best] - means[name])
        noise = combined_std(float(stds.get(best, math.nan)), float(stds.get(name, math.nan)))
        if name == best:
            verdict = "best"
        elif not np.isfinite(means[name]):
            verdict = "no value"
        elif math.isnan(noise):
            verdict = "no verdict (one seed)"
        else:
            verdict = "behind" if difference > noise else "tied with best"
        rows[name] = {"behind_best": difference, "combined_std": noise, "verdict": verdict}
    return pd.DataFrame.from_dict(rows, orient="index")


def pairwise_verdicts(means: pd.Series, stds: pd.Series) -> pd.DataFrame:
    """A matrix: ``>`` where the row's mean beats the column's by more than their combined seed std, ``<`` for
    the reverse, ``≈`` within the noise and ``?`` when a std is unknown. Ordered by mean, best first."""
    order = means.sort_values(ascending=False).index
    table = pd.DataFrame("", index=order, columns=order)
    for a in order:
        for b in order:
            if a == b:
                continue
            noise = combined_std(float(stds.get(a, math.nan)), float(stds.get(b, math.nan)))
            difference = float(means[a] - means[b])
            table.loc[a, b] = "?" if math.isnan(noise) else (">" if difference > noise else
                                                              "<" if -difference > noise else "≈")
    return table


# ---------------------------------------------------------------- cost per step, measured fairly
def time_steps(models: Mapping[str, keras.Model], x: np.ndarray, y: np.ndarray, batch_size: int = 128,
               steps: int = 20, rounds: int = 5) -> pd.DataFrame:
    """Milliseconds per training step of each compiled model, measured **interleaved**: round after round,
    every model takes ``steps`` steps in turn, so a burst of load from other processes hits all of them alike.

    Returns the median over rounds of the wall-clock and the process CPU time per step, and the wall-clock
    spread (interquartile range). The models are trained in place; pass throwaway copies.
    """
    steps, rounds, batch_size = (positive_int("steps", steps), positive_int("rounds", rounds),
                                 positive_int("batch_size", batch_size))
    if len(x) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} images, got {len(x)}")
    batches = [(x[i * batch_size % (len(x) - batch_size + 1):][:batch_size],
                y[i * batch_size % (len(x) - batch_size + 1):][:batch_size]) for i in range(steps)]
    for model in models.values():  # trace the train step before timing it
        model.train_on_batch(*batches[0])
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for xb, yb in batches:
                model.train_on_batch(xb, yb)
            wall[name].append(1000 * (time.perf_counter() - start) / steps)
            cpu[name].append(1000 * (time.process_time() - start_cpu) / steps)
    return pd.DataFrame({name: {"ms_per_step": float(np.median(wall[name])),
                                "cpu_ms_per_step": float(np.median(cpu[name])),
                                "ms_per_step_iqr": float(np.subtract(*np.percentile(wall[name], [75, 25])))}
                         for name in models}).T


def mean_pm_std(mean: float, std: float, fmt: str = "{:.4f}") -> str:
    """``"0.8712 ± 0.0031"``, or ``"0.8712 ± n/a"`` with one seed, or ``"not reached"`` when the mean is NaN."""
    if not np.isfinite(mean):
        return "not reached"
    return f"{fmt.format(mean)} ± " + (fmt.format(std) if np.isfinite(std) else "n/a")
