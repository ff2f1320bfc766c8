"""Evaluating trained classifiers: calibration, temperature scaling, confusions, paired tests, robustness probes.

Metrics come from ``sklearn.metrics`` where it has them (``log_loss``, ``brier_score_loss``, ``confusion_matrix``);
the rest are short functions with hand-checked unit tests in ``tests/test_evaluation.py``. Notebook 06 uses them.
Probabilities are arrays of shape ``(n_samples, n_classes)`` whose rows sum to 1 (softmax outputs, not logits).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fmnist_helpers.data import CLASS_NAMES

SUM_TOLERANCE = 1e-3  # bf16/float32 softmax rows drift from 1 by up to ~1e-4


# ---------------------------------------------------------------- input checks
def check_probabilities(probabilities: Any, y_true: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``(n, k)`` probabilities (and labels); return them as float64 rows renormalized to sum to 1."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (n_samples, n_classes) with n_classes >= 2, got {p.shape}; "
                         f"pass model.predict(x) for the whole batch, not one row")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must be finite and in [0, 1]; if these are logits, "
                         "apply scipy.special.softmax(logits, axis=1) first")
    sums = p.sum(axis=1)
    worst = sums[np.abs(sums - 1).argmax()]
    if abs(worst - 1) > SUM_TOLERANCE:
        raise ValueError(f"each row of probabilities must sum to 1 (worst row sums to {worst:.4f}); "
                         f"pass softmax outputs, or normalize with p / p.sum(axis=1, keepdims=True)")
    p = p / sums[:, None]
    if y_true is None:
        return p, None
    y = np.asarray(y_true)
    if y.shape != (len(p),):
        raise ValueError(f"y_true must have shape ({len(p)},) to match the probabilities, got {y.shape}; "
                         f"pass integer class labels, not one-hot rows")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true must hold integer class indices in 0..{p.shape[1] - 1}")
    return p, y.astype(np.int64)


def _check_predictions(y_true: Any, *predictions: Any) -> list[np.ndarray]:
    arrays = [np.asarray(a) for a in (y_true, *predictions)]
    if any(a.ndim != 1 for a in arrays) or len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError(f"labels and predictions must be non-empty 1-D arrays of equal length, got shapes "
                         f"{[a.shape for a in arrays]}; pass probabilities.argmax(axis=1), not probabilities")
    return arrays


def _check_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1 (15 is usual), got {n_bins!r}")
    return int(n_bins)


# ---------------------------------------------------------------- calibration
def reliability_curve(y_true: Any, probabilities: Any, n_bins: int = 15) -> pd.DataFrame:
    """Confidence vs accuracy in ``n_bins`` equal-width bins of the top-class probability.

    Bin ``i`` holds confidences in ``(i/n_bins, (i+1)/n_bins]`` (the first bin also holds 0). Returns one row per
    bin: ``bin_lower, bin_upper, count, confidence`` (mean top probability), ``accuracy`` and ``gap``
    (accuracy - confidence; negative means over-confident). Empty bins have NaN confidence and accuracy.
    """
    n_bins = _check_bins(n_bins)
    p, y = check_probabilities(probabilities, y_true)
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, correct, minlength=n_bins) / count
    return pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": count,
                         "confidence": mean_conf, "accuracy": accuracy, "gap": accuracy - mean_conf})


def expected_calibration_error(y_true: Any, probabilities: Any, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean of |accuracy - confidence| over the bins of :func:`reliability_curve`."""
    curve = reliability_curve(y_true, probabilities, n_bins)
    filled = curve[curve["count"] > 0]
    return float((filled["count"] * filled["gap"].abs()).sum() / filled["count"].sum())


def negative_log_likelihood(y_true: Any, probabilities: Any) -> float:
    """Mean cross-entropy (NLL) from ``sklearn.metrics.log_loss``, with every class listed."""
    from sklearn.metrics import log_loss

    p, y = check_probabilities(probabilities, y_true)
    return float(log_loss(y, p, labels=range(p.shape[1])))


def brier_score(y_true: Any, probabilities: Any) -> float:
    """Multiclass Brier score: mean over samples of sum over classes of (p - one_hot)^2, in [0, 2].

    ``sklearn.metrics.brier_score_loss`` handles the multiclass case since scikit-learn 1.7 (``labels=``).
    """
    from sklearn.metrics import brier_score_loss

    p, y = check_probabilities(probabilities, y_true)
    return float(brier_score_loss(y, p, labels=range(p.shape[1]), scale_by_half=False))


def calibration_metrics(y_true: Any, probabilities: Any, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, ECE, NLL and Brier score of one set of predictions, as a flat dict for records and tables."""
    from sklearn.metrics import accuracy_score

    p, y = check_probabilities(probabilities, y_true)
    return {"accuracy": float(accuracy_score(y, p.argmax(axis=1))), "ece": expected_calibration_error(y, p, n_bins),
            "nll": negative_log_likelihood(y, p), "brier": brier_score(y, p)}


# ---------------------------------------------------------------- temperature scaling
def apply_temperature(probabilities: Any, temperature: float) -> np.ndarray:
    """Rescale probabilities by a temperature: ``softmax(log(p) / T)``. T > 1 softens, T < 1 sharpens.

    ``log(p)`` equals the model's logits up to a per-row constant, which softmax ignores, so this is exactly
    temperature scaling of the logits. The predicted class never changes.
    """
    from scipy.special import softmax

    if isinstance(temperature, bool) or not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    p, _ = check_probabilities(probabilities)
    return softmax(np.log(np.clip(p, 1e-12, 1.0)) / float(temperature), axis=1)


def fit_temperature(y_val: Any, val_probabilities: Any, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimizes the validation NLL (Guo et al., 2017), searched over log T.

    Fit it on the **validation** split, never on the test set; then report test metrics with
    :func:`apply_temperature`. One parameter cannot overfit 5,000 images in a meaningful way.
    """
    from scipy.optimize import minimize_scalar

    if not 0 < bounds[0] < 1 < bounds[1]:
        raise ValueError(f"bounds must satisfy 0 < low < 1 < high, got {bounds!r}")
    p, y = check_probabilities(val_probabilities, y_val)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(y, apply_temperature(p, np.exp(log_t))),
                             bounds=np.log(bounds), method="bounded", options={"xatol": 1e-5})
    temperature = float(np.exp(result.x))
    if min(abs(result.x - np.log(bounds[0])), abs(result.x - np.log(bounds[1]))) < 1e-3:
        warnings.warn(f"the fitted temperature {temperature:.3g} sits at a bound of its search {bounds}: the "
                      f"validation NLL still falls beyond it, so the model's probabilities are too far off for one "
                      f"temperature to fix (is it trained, and are these its validation images?)", stacklevel=2)
    return temperature


# ---------------------------------------------------------------- errors
def most_confused_pairs(y_true: Any, y_pred: Any, top: int = 5,
                        class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """The class pairs mixed up most often, both directions counted, from ``sklearn.metrics.confusion_matrix``.

    Columns: ``class_a, class_b`` (names), ``a, b`` (indices, a < b), ``a_as_b`` and ``b_as_a`` (errors each way),
    ``errors`` (their sum) and ``share_of_errors`` (fraction of all misclassifications). Ties keep class order.
    """
    from sklearn.metrics import confusion_matrix

    y, pred = _check_predictions(y_true, y_pred)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    k = len(class_names)
    matrix = confusion_matrix(y, pred, labels=range(k))
    rows = [{"class_a": class_names[a], "class_b": class_names[b], "a": a, "b": b, "a_as_b": int(matrix[a, b]),
             "b_as_a": int(matrix[b, a]), "errors": int(matrix[a, b] + matrix[b, a])}
            for a in range(k) for b in range(a + 1, k)]
    table = pd.DataFrame(rows).sort_values("errors", ascending=False, kind="stable").head(top)
    total = int(matrix.sum() - np.trace(matrix))
    table["share_of_errors"] = table["errors"] / total if total else 0.0
    return table[table["errors"] > 0].reset_index(drop=True)


def top_k_table(probabilities: Any, k: int = 3, class_names: Sequence[str] = CLASS_NAMES,
                index: Any = None) -> pd.DataFrame:
    """The ``k`` most likely classes per row with their probabilities: columns ``top1, p1, top2, p2, ...``."""
    p, _ = check_probabilities(probabilities)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= p.shape[1]:
        raise ValueError(f"k must be an integer in 1..{p.shape[1]}, got {k!r}")
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    table = pd.DataFrame(index=index if index is not None else range(len(p)))
    for j in range(k):
        table[f"top{j + 1}"] = [class_names[c] for c in order[:, j]]
        table[f"p{j + 1}"] = p[np.arange(len(p)), order[:, j]]
    return table


def top_k_titles(table: pd.DataFrame, k: int = 3, short: int = 11) -> list[str]:
    """Image titles from :func:`top_k_table`, one line per class: ``"Shirt 0.61"``; names cut to ``short`` chars."""
    return ["\n".join(f"{row[f'top{j}'][:short]} {row[f'p{j}']:.2f}" for j in range(1, k + 1))
            for _, row in table.iterrows()]


# ---------------------------------------------------------------- comparing two models
def mcnemar_test(y_true: Any, pred_a: Any, pred_b: Any, exact: bool = True) -> dict[str, Any]:
    """McNemar's test of equal error rates for two classifiers on the same test images.

    Only the discordant images count: ``a_only`` (A right, B wrong) and ``b_only`` (B right, A wrong).
    ``exact=True`` uses the two-sided binomial test of ``a_only`` out of ``a_only + b_only`` at p = 0.5
    (``scipy.stats.binomtest``); ``exact=False`` uses chi-square with continuity correction,
    ``(|a_only - b_only| - 1)^2 / (a_only + b_only)`` with 1 degree of freedom.
    """
    from scipy import stats

    y, a, b = _check_predictions(y_true, pred_a, pred_b)
    a_right, b_right = a == y, b == y
    a_only, b_only = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    n = a_only + b_only
    if n == 0:
        statistic, pvalue = 0.0, 1.0
    elif exact:
        statistic, pvalue = float(a_only), float(stats.binomtest(a_only, n, 0.5).pvalue)
    else:
        statistic = (abs(a_only - b_only) - 1) ** 2 / n
        pvalue = float(stats.chi2.sf(statistic, df=1))
    return {"a_only": a_only, "b_only": b_only, "both_right": int(np.sum(a_right & b_right)),
            "both_wrong": int(np.sum(~a_right & ~b_right)), "statistic": float(statistic), "pvalue": pvalue,
            "method": "exact binomial" if exact else "chi-square, continuity-corrected"}


def paired_bootstrap(y_true: Any, pred_a: Any, pred_b: Any, n_resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, float]:
    """Accuracy of A minus accuracy of B with a percentile bootstrap interval over resampled test images.

    Resampling images with replacement and scoring both models on the same resample is equivalent to drawing
    multinomial counts of the three per-image outcomes (A-only right, tie, B-only right), which is what this
    does, so 10,000 resamples of 10,000 images take milliseconds.
    """
    y, a, b = _check_predictions(y_true, pred_a, pred_b)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    diff = (a == y).astype(int) - (b == y).astype(int)
    n, shares = len(diff), np.array([np.mean(diff == 1), np.mean(diff == 0), np.mean(diff == -1)])
    counts = np.random.default_rng(seed).multinomial(n, shares, size=n_resamples)
    samples = (counts[:, 0] - counts[:, 2]) / n
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return {"difference": float(diff.mean()), "ci_low": float(low), "ci_high": float(high),
            "confidence": confidence, "share_a_not_better": float(np.mean(samples <= 0))}


# ---------------------------------------------------------------- robustness probes
def translate(images: Any, dx: int = 0, dy: int = 0) -> np.ndarray:
    """Shift images by whole pixels (``dx`` right, ``dy`` down), filling the uncovered border with zeros.

    Works on ``(n, h, w)`` and ``(n, h, w, channels)``. Unlike ``np.roll`` nothing wraps around.
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"images must have shape (n, height, width) or (n, height, width, channels), got {x.shape}")
    if not all(isinstance(d, (int, np.integer)) and abs(d) < s for d, s in ((dx, x.shape[2]), (dy, x.shape[1]))):
        raise ValueError(f"dx and dy must be integers smaller than the image size, got dx={dx!r}, dy={dy!r}")
    out = np.zeros_like(x)
    src_y, dst_y = slice(max(0, -dy), x.shape[1] - max(0, dy)), slice(max(0, dy), x.shape[1] - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), x.shape[2] - max(0, dx)), slice(max(0, dx), x.shape[2] - max(0, -dx))
    out[:, dst_y, dst_x] = x[:, src_y, src_x]
    return out


def add_gaussian_noise(images: Any, sigma: float, seed: int = 0) -> np.ndarray:
    """Images plus N(0, sigma^2) pixel noise, clipped back to [0, 1]; the same seed gives the same noise."""
    if isinstance(sigma, bool) or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a number >= 0 (pixel scale is [0, 1]), got {sigma!r}")
    x = np.asarray(images, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=x.shape).astype(np.float32)
    return np.clip(x + noise, 0.0, 1.0)


def has_layer(model: Any, layer_type: type) -> bool:
    """True if ``model`` (or any nested model) contains a layer of ``layer_type``, e.g. ``keras.layers.RandomFlip``."""
    return any(isinstance(layer, layer_type) or (hasattr(layer, "layers") and has_layer(layer, layer_type))
               for layer in getattr(model, "layers", []))


# ---------------------------------------------------------------- saved models
def find_model_file(notebook: str, names: Sequence[str], seed: int, profile: str,
                    profiles: Sequence[str] = ("full", "default", "quick")) -> tuple[Path, str, str] | None:
    """The first saved ``.keras`` model among ``names``: each name is searched in ``profile``, then ``profiles``.

    Returns ``(path, name, profile)`` or None. Paths follow :func:`fmnist_helpers.training.model_path`.
    """
    from fmnist_helpers.config import RunConfig
    from fmnist_helpers.training import model_path

    if not names:
        raise ValueError("names must list at least one model name, e.g. ['workbook_cnn', 'seed000_cnn']")
    order = [profile, *[p for p in profiles if p != profile]]
    for name in names:
        for candidate in order:
            path = model_path(RunConfig(notebook, candidate, {"seed": seed}), name)
            if path.is_file():
                return path, name, candidate
    return None


def predict_probabilities(model: Any, images: Any, batch_size: int = 1024) -> np.ndarray:
    """``model.predict`` as float64 rows that sum to 1, with images reshaped to the model's input shape."""
    x = np.asarray(images, dtype=np.float32)
    x = x.reshape((len(x), *model.input_shape[1:]))
    p = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    p = np.clip(p, 0.0, 1.0)
    return p / p.sum(axis=1, keepdims=True)
