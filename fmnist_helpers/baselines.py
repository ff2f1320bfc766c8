"""Baselines and reproductions: reference numbers, scikit-learn runs and settings-aware reuse of Keras runs.

Notebook 02 uses it as ``from fmnist_helpers import baselines``. The models themselves (the estimators and
the Keras networks) are defined in the notebook; this module only holds the bookkeeping around them.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

import keras
import numpy as np
from threadpoolctl import threadpool_limits

from fmnist_helpers.config import RunConfig, fraction, list_of, positive_float, positive_int
from fmnist_helpers.data import NUM_CLASSES, FashionMNIST, stratified_subset
from fmnist_helpers.results import load_record, record_result, train_seconds
from fmnist_helpers.training import changed_settings

# Reported accuracies: reference constants quoted from their sources, never our results.
FASHION_MNIST_PAPER = "Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747, Table 3"
FASHION_MNIST_README = "zalandoresearch/fashion-mnist README, benchmark table"
REPORTED_ACCURACY: dict[str, dict[str, Any]] = {
    "logistic_regression": {"accuracy": 0.842, "source": FASHION_MNIST_PAPER},
    "random_forest": {"accuracy": 0.873, "source": FASHION_MNIST_PAPER},
    "svm_rbf": {"accuracy": 0.897, "source": FASHION_MNIST_PAPER},
    "human": {"accuracy": 0.835, "source": FASHION_MNIST_README
              + " (crowd-sourced, no fashion expertise; 1,000 test images, 3 labels each, majority vote)"},
    "seed001_tyler": {"accuracy": 0.88, "source": "seed 001 (Tyler/Jackson MLPs): 'approximately ~88%'"},
    "seed001_tyler_l2": {"accuracy": 0.88, "source": "seed 001 (Tyler/Jackson MLPs): 'approximately ~88%'"},
    "seed001_jackson": {"accuracy": 0.88, "source": "seed 001 (Tyler/Jackson MLPs): 'approximately ~88%'"},
    "seed001_jackson_l2": {"accuracy": 0.88, "source": "seed 001 (Tyler/Jackson MLPs): 'approximately ~88%'"},
    "seed002_mlp": {"accuracy": 0.8871, "source": "seed 002 (256-128-32 MLP, SGD 0.02, 30 epochs): '88.71%'"},
}


def reported_accuracy(model: str) -> float | None:
    """The accuracy a paper or seed reported for ``model``, or None if there is no reference."""
    entry = REPORTED_ACCURACY.get(model)
    return None if entry is None else float(entry["accuracy"])


# ---------------------------------------------------------------- parameter validators
float_list = list_of(positive_float, "positive numbers")  # e.g. learning rates
fraction_list = list_of(fraction, "numbers in [0, 1)")  # e.g. dropout rates
positive_int_list = list_of(positive_int, "positive integers")  # e.g. batch sizes


def _estimator_settings(estimator) -> dict[str, Any]:
    return {k: v for k, v in estimator.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))}


def predict_in_threads(estimator, x: np.ndarray, threads: int = 2) -> np.ndarray:
    """``estimator.predict(x)`` on ``threads`` chunks at once.

    libsvm predicts one image at a time on one core but releases the GIL, so an SVM's prediction of the
    10,000 test images runs twice as fast on two threads. Other estimators give the same answer either way.
    """
    from concurrent.futures import ThreadPoolExecutor

    chunks = np.array_split(x, max(1, min(threads, len(x))))
    with ThreadPoolExecutor(len(chunks)) as pool:
        return np.concatenate(list(pool.map(estimator.predict, chunks)))


def run_sklearn_baseline(cfg: RunConfig, name: str, estimator, data: FashionMNIST, train_size: int | None = None,
                         seed: int | None = None) -> dict:
    """Fit ``estimator`` on (a stratified subset of) the training images, score the validation set, then the test
    set once, and record it.

    Images are flattened to 784 features in [0, 1]. A record with the same estimator settings and training
    size (and a validation score) is reused instead of refitting. Returns the record (metrics ``test_accuracy``
    and ``final_val_accuracy``, the name the Keras records use, so that the report can pick the best classical
    model on validation; ``per_class_accuracy``, fit time as ``wall_time_s``, test prediction time as
    ``predict_time_s``).
    """
    seed = cfg.seed if seed is None else seed
    subset = stratified_subset(data, train_size, seed)
    settings = {"estimator": type(estimator).__name__, **_estimator_settings(estimator)}
    record = load_record(cfg, name, seed)
    if (record is not None and not changed_settings(record, settings, len(subset.y_train), split_seed=cfg.seed)
            and "final_val_accuracy" in record["metrics"]):
        print(f"{name}: finished earlier (test accuracy {record['metrics']['test_accuracy']:.4f}, "
              f"{len(subset.y_train):,} training images)")
        return record
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    # One BLAS thread: these matrix products are small, and with two threads OpenBLAS spins and waits far
    # longer than it computes (10x slower on a busy 2-core machine); libsvm and the forest do not use BLAS.
    with threadpool_limits(1, user_api="blas"):
        start = time.perf_counter()
        estimator.fit(flat(subset.x_train), subset.y_train)
        wall_time = time.perf_counter() - start
        start = time.perf_counter()
        test_pred = predict_in_threads(estimator, flat(subset.x_test))
        predict_time = time.perf_counter() - start
        val_pred = predict_in_threads(estimator, flat(subset.x_val))
    metrics = {"test_accuracy": float(np.mean(test_pred == subset.y_test)),
               "final_val_accuracy": float(np.mean(val_pred == subset.y_val))}
    per_class = [float(np.mean(test_pred[subset.y_test == c] == c)) for c in range(NUM_CLASSES)]
    path = record_result(cfg, name, metrics, wall_time, seed=seed, params=settings, train_size=len(subset.y_train),
                         predict_time_s=round(predict_time, 3), per_class_accuracy=per_class)
    print(f"{name}: validation accuracy {metrics['final_val_accuracy']:.4f} · test accuracy "
          f"{metrics['test_accuracy']:.4f} · fit {wall_time:.1f} s on "
          f"{len(subset.y_train):,} images · recorded in {path.name}")
    return load_record(cfg, name, seed)


# ---------------------------------------------------------------- label smoothing with integer labels
@keras.saving.register_keras_serializable(package="fmnist_helpers")
class SparseLabelSmoothingCrossentropy(keras.losses.Loss):
    """Cross-entropy with label smoothing for integer labels (Keras' sparse loss has no ``label_smoothing``).

    The true class gets ``1 - smoothing + smoothing / classes`` and every other class ``smoothing / classes``.
    """

    def __init__(self, label_smoothing: float = 0.1, num_classes: int = 10,
                 name: str = "sparse_label_smoothing_crossentropy", **kwargs: Any) -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        super().__init__(name=name, **kwargs)
        self.label_smoothing, self.num_classes = float(label_smoothing), int(num_classes)

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        one_hot = keras.ops.one_hot(labels, self.num_classes)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "num_classes": self.num_classes}


# ---------------------------------------------------------------- tables and figures from records
def comparison_table(records: list[dict], models: Iterable[str]):
    """One row per model: test accuracy (mean ± std over seeds), final validation accuracy (Keras models), the
    reported value and our difference to it, training images, epochs, parameters and training time."""
    import pandas as pd

    rows = []
    for model in models:
        runs = [r for r in records if r["model"] == model]
        if not runs:
            continue
        accuracy = np.array([r["metrics"]["test_accuracy"] for r in runs])
        reported = reported_accuracy(model)
        rows.append({
            "model": model, "seeds": len(runs), "test accuracy": accuracy.mean(),
            "± std": accuracy.std(ddof=1) if len(runs) > 1 else np.nan,
            "validation accuracy": np.mean([r["metrics"].get("final_val_accuracy", np.nan) for r in runs]),
            "reported": reported, "difference (points)": None if reported is None else 100 * (accuracy.mean() - reported),
            "training images": runs[0].get("train_size"), "epochs": runs[0].get("epochs_run"),
            "parameters": runs[0].get("params_count"), "training time (s)": np.mean([train_seconds(r) for r in runs]),
        })
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def measure_throughput(build_model, x: np.ndarray, y: np.ndarray, batch_size: int, images: int = 8192) -> float:
    """Training images per second of a freshly built, compiled model, timed on a second pass over ``images`` images.

    The first pass pays for tracing and graph building, so only the second one is timed.
    """
    model = build_model()
    images = min(images, len(y))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x[:images], y[:images], epochs=2, batch_size=batch_size, verbose=0, callbacks=[Timer()])
    return images / times[-1]


def plot_prediction_gallery(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                            class_names: Iterable[str], ncols: int = 3):
    """Each image next to a bar chart of its predicted probabilities; wrong predictions are marked in red.

    The bar of the true class is blue, a wrongly predicted class is red, and the title of a wrong
    prediction is red and says what the true class was.
    """
    import matplotlib.pyplot as plt

    class_names = list(class_names)
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(4.2 * ncols, 1.9 * nrows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.6] * ncols})
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, label, probs) in enumerate(zip(images, labels, probabilities)):
        image_ax, bar_ax = axes[i // ncols, 2 * (i % ncols)], axes[i // ncols, 2 * (i % ncols) + 1]
        predicted = int(np.argmax(probs))
        wrong = predicted != int(label)
        image_ax.imshow(np.asarray(image).reshape(28, 28), cmap="binary")
        title = f"{class_names[predicted]} {probs[predicted]:.0%}" + (f"\n(true: {class_names[label]})" if wrong else "")
        image_ax.set_title(title, fontsize=8, color="red" if wrong else "black")
        if wrong:
            for spine in image_ax.spines.values():
                spine.set(visible=True, color="red", linewidth=2)
            image_ax.axis("on")
            image_ax.set(xticks=[], yticks=[])
        colours = ["#bbbbbb"] * len(class_names)
        colours[int(label)] = "#1f77b4"
        if wrong:
            colours[predicted] = "red"
        bar_ax.axis("on")
        bar_ax.bar(range(len(class_names)), probs, color=colours)
        bar_ax.set(ylim=(0, 1), xticks=range(len(class_names)), yticks=[0, 0.5, 1])
        bar_ax.set_xticklabels(class_names, rotation=90, fontsize=6)
        bar_ax.tick_params(axis="y", labelsize=6)
    return fig
