"""Support code for the hyperparameter search of notebook 07: seed 004's split, the search space's parameters,
a resumable KerasTuner project, the trial table, and KerasTuner's distributed mode.

The model and the ``kt.HyperModel`` the search tunes are taught, and defined, in
``notebooks/07_hyperparameter_search.ipynb``. This module holds what is reused or is presentation:

- :func:`load_split`: seed 004's 40:20:10 split (40,000 training and 20,000 validation images carved, stratified,
  from the official 60,000 training images; the official 10,000 test images as the test set);
- :func:`search_space` and the validators: the search space's parameters, checked with a ``ValueError`` that says
  how to fix them;
- :func:`project_name`: a fingerprint of everything that defines a search, so that ``overwrite=False`` resumes
  the *same* search and never silently continues a different one;
- :class:`BayesianOptimizationWithHistory`: KerasTuner's Bayesian optimization that also writes each trial's
  per-epoch history next to its checkpoint;
- :func:`trials_frame`, :func:`trial_history`, :func:`plot_hyperparameter_effects`: what a learner looks at;
- :func:`distributed_role` and ``python -m fmnist_helpers.tuning worker``: KerasTuner's distributed mode.

Import as ``from fmnist_helpers import tuning``.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import keras
import keras_tuner as kt
import numpy as np

from fmnist_helpers import paths
from fmnist_helpers.config import list_of, positive_int
from fmnist_helpers.data import FashionMNIST, load_fashion_mnist, stratified_indices
from fmnist_helpers.training import EpochLog

NOTEBOOK = "07_hyperparameter_search"
SPLIT_SIZES = {"train": 40_000, "validation": 20_000, "test": 10_000}  # seed 004's 40:20:10
OPTIMIZERS = ("adam", "sgd", "rmsprop")
HYPERPARAMETERS = ("learning_rate", "batch_size", "optimizer", "dropout", "l2", "augment")
LOG_SCALE = ("learning_rate", "l2")
SEARCH_MARKER = "tuner.search("  # the notebook cell that runs the search; workers run the notebook up to it


# ---------------------------------------------------------------- the data
def load_split(seed: int, train_size: int | None = None, validation_size: int | None = None,
               test_size: int | None = None, channel_axis: bool = True,
               data_dir: Path | str | None = None) -> FashionMNIST:
    """Seed 004's 40:20:10 split of the real Fashion-MNIST, stratified and seeded.

    20,000 validation images are carved (stratified by class, seeded) from the official 60,000 training images;
    the other 40,000 are the training set; the official 10,000 test images are the test set. ``train_size``,
    ``validation_size`` and ``test_size`` keep stratified subsets of those three (quick mode); None keeps all.
    """
    for name, value, limit in (("train_size", train_size, SPLIT_SIZES["train"]),
                               ("validation_size", validation_size, SPLIT_SIZES["validation"]),
                               ("test_size", test_size, SPLIT_SIZES["test"])):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or not 0 < value <= limit):
            raise ValueError(f"{name} must be an integer between 1 and {limit:,} (or None for all), got {value!r}")
    data = load_fashion_mnist(validation_size=SPLIT_SIZES["validation"], seed=seed, channel_axis=channel_axis,
                              train_size=train_size, test_size=test_size, data_dir=data_dir)
    return subset(data, validation_size=validation_size, seed=seed)


def subset(data: FashionMNIST, train_size: int | None = None, validation_size: int | None = None,
           seed: int = 0) -> FashionMNIST:
    """Stratified, seeded subsets of the training and validation images (None keeps all); the test set is kept."""
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    if train_size is not None and train_size < len(y_train):
        keep = stratified_indices(y_train, train_size, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    if validation_size is not None and validation_size < len(y_val):
        keep = stratified_indices(y_val, validation_size, seed)
        x_val, y_val = x_val[keep], y_val[keep]
    return dataclasses.replace(data, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)


# ---------------------------------------------------------------- the search space
def positive_int_list(name: str, value: Any) -> list[int]:
    """Validator for a non-empty list of distinct positive integers, such as ``"64,128,256"`` or ``[64, 128]``."""
    numbers = list_of(positive_int, "positive integers such as '64,128,256'")(name, value)
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{name} lists a value twice ({value!r}); give each value once, e.g. '64,128,256'")
    return sorted(numbers)


def upper_bound(high: float) -> Any:
    """Validator for a number in ``(0, high]``, such as the largest dropout rate the search may try."""
    def check(name: str, value: Any) -> float:
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError):
            number = float("nan")
        if not 0 < number <= high:
            raise ValueError(f"{name} must be a number in (0, {high}], got {value!r}")
        return number
    return check


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The ranges and choices the search explores; the architecture is not part of it."""

    learning_rate_min: float
    learning_rate_max: float
    batch_sizes: tuple[int, ...]
    dropout_max: float
    l2_min: float
    l2_max: float
    augment_max: float
    optimizers: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def ranges(self) -> dict[str, tuple[float, float, bool]]:
        """The numeric hyperparameters: ``{name: (low, high, sampled on a log scale)}``."""
        return {"learning_rate": (self.learning_rate_min, self.learning_rate_max, True),
                "dropout": (0.0, self.dropout_max, False), "l2": (self.l2_min, self.l2_max, True),
                "augment": (0.0, self.augment_max, False)}

    def edges(self, values: dict[str, Any], tolerance: float = 0.01) -> dict[str, str]:
        """The hyperparameters of ``values`` (one trial's) that sit at an end of their range or list, within
        ``tolerance`` of the range (measured on the log scale for log-uniform ones): ``{name: "upper end 0.01"}``.
        A winner at an upper end may do better beyond it; one at zero preferred none of that regularizer."""
        found = {}
        for name, (low, high, log) in self.ranges().items():
            if values.get(name) is None:
                continue
            scale = np.log if log else float
            position = (scale(max(float(values[name]), low)) - scale(low)) / (scale(high) - scale(low))
            if position <= tolerance:
                found[name] = f"lower end {low:g}"
            elif position >= 1 - tolerance:
                found[name] = f"upper end {high:g}"
        if len(self.batch_sizes) > 1 and values.get("batch_size") in (min(self.batch_sizes), max(self.batch_sizes)):
            end = "smallest" if values["batch_size"] == min(self.batch_sizes) else "largest"
            found["batch_size"] = f"{end} choice {values['batch_size']}"
        return found

    def describe(self) -> "Any":
        """A small table: one row per hyperparameter, with its range or choices and how it is sampled."""
        import pandas as pd

        rows = {name: (f"{low:g} to {high:g}", "log-uniform" if log else "uniform")
                for name, (low, high, log) in self.ranges().items()}
        rows.update(batch_size=(", ".join(map(str, self.batch_sizes)), "choice"),
                    optimizer=(", ".join(self.optimizers), "choice"))
        order = ["learning_rate", "batch_size", "optimizer", "dropout", "l2", "augment"]
        return pd.DataFrame([(name, *rows[name]) for name in order],
                            columns=["hyperparameter", "range", "sampling"]).set_index("hyperparameter")


def search_space(learning_rate_min: float, learning_rate_max: float, batch_sizes: Sequence[int],
                 dropout_max: float, l2_min: float, l2_max: float, augment_max: float,
                 optimizers: Sequence[str]) -> SearchSpace:
    """Check the search space as a whole (each value is checked by the notebook's rules) and return it.

    Raises ``ValueError`` with the fix when a range is empty or reversed or a choice is unknown.
    """
    for low_name, low, high_name, high in (("learning_rate_min", learning_rate_min, "learning_rate_max",
                                            learning_rate_max), ("l2_min", l2_min, "l2_max", l2_max)):
        if not 0 < low < high:
            if 0 < high < low:
                fix = f"swap them: -p {low_name} {high:g} -p {high_name} {low:g}"
            elif 0 < high == low:
                fix = f"the range is empty; widen it, e.g. -p {low_name} {high / 10:g}"
            else:
                fix = f"both ends must be positive, e.g. -p {low_name} 1e-4 -p {high_name} 1e-2"
            raise ValueError(f"{low_name} ({low!r}) must be a positive number smaller than {high_name} ({high!r}); "
                             + fix)
    if learning_rate_max > 1:
        raise ValueError(f"learning_rate_max must be at most 1, got {learning_rate_max!r}; try 0.01 or 0.1")
    if not 0 < dropout_max < 1:
        raise ValueError(f"dropout_max must be in (0, 1), got {dropout_max!r}; 0.5 is a common upper end")
    if not 0 < augment_max <= 0.5:
        raise ValueError(f"augment_max must be in (0, 0.5] (a fraction of the image size), got {augment_max!r}")
    unknown = [name for name in optimizers if name not in OPTIMIZERS]
    if not optimizers or unknown:
        raise ValueError(f"unknown optimizer(s) {unknown or optimizers!r}; choose among {', '.join(OPTIMIZERS)}")
    batch_sizes = positive_int_list("batch_sizes", list(batch_sizes))
    return SearchSpace(float(learning_rate_min), float(learning_rate_max), tuple(batch_sizes), float(dropout_max),
                       float(l2_min), float(l2_max), float(augment_max), tuple(dict.fromkeys(optimizers)))


def project_name(space: SearchSpace, **settings: Any) -> str:
    """A folder name that fingerprints the search space and ``settings`` (epochs per trial, data sizes, seed, ...).

    Leave the budget (``max_trials``) out of ``settings``: raising it must resume the same project. Any change to
    the space or the settings gives another name, so ``overwrite=False`` never continues a different search.
    """
    payload = json.dumps({"space": space.as_dict(), **settings}, sort_keys=True, default=str)
    return f"search_{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def initial_points(max_trials: int) -> int:
    """Random trials before the Gaussian process proposes: half the budget, at least 2.

    KerasTuner's default is 3 per hyperparameter (18 here), more than a CPU budget allows.
    """
    return max(2, math.ceil(positive_int("max_trials", max_trials) / 2))


# ---------------------------------------------------------------- the tuner
class TrialHistoryMixin:
    """Tuner mix-in: each trial's per-epoch history goes to ``history.csv`` in the trial's folder.

    The oracle keeps only the metrics of a trial's best epoch; the CSV (loss, accuracy, validation metrics,
    learning rate and seconds per epoch) sits next to the trial's checkpoint. The mix-in also lets keras-tuner
    1.4.8 run without the ``tensorboard`` package, which it otherwise imports for every trial.
    """

    def run_trial(self, trial, *args, **kwargs):
        log = Path(self.get_trial_dir(trial.trial_id)) / "history.csv"
        log.unlink(missing_ok=True)  # a trial re-run after an interruption starts its log afresh
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), EpochLog(), keras.callbacks.CSVLogger(str(log))]
        return super().run_trial(trial, *args, **kwargs)

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        # keras-tuner 1.4.8 imports tensorboard for every trial on the TensorFlow backend, even without a
        # TensorBoard callback; TensorFlow 2.21 no longer installs tensorboard, so every trial would fail
        # ("No module named 'tensorboard'") and be marked FAILED. Only go there when the callback is used.
        if any(type(callback).__name__ == "TensorBoard" for callback in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)


class BayesianOptimizationWithHistory(TrialHistoryMixin, kt.BayesianOptimization):
    """``kt.BayesianOptimization`` with per-trial ``history.csv`` files (see :class:`TrialHistoryMixin`).

    With a handful of trials the Gaussian process's length scales often end at their bounds, and scikit-learn
    warns about it at every proposal; that is expected with so few points, so the warning is not shown.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        oracle = self.oracle
        if hasattr(oracle, "populate_space"):  # the chief's or a single process's oracle, not a worker's client
            propose = oracle.populate_space

            def populate_space_quietly(trial_id):
                from sklearn.exceptions import ConvergenceWarning

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    return propose(trial_id)

            oracle.populate_space = populate_space_quietly


class RandomSearchWithHistory(TrialHistoryMixin, kt.RandomSearch):
    """``kt.RandomSearch`` with per-trial ``history.csv`` files (see :class:`TrialHistoryMixin`)."""


class HyperbandWithHistory(TrialHistoryMixin, kt.Hyperband):
    """``kt.Hyperband`` with per-trial ``history.csv`` files (see :class:`TrialHistoryMixin`)."""


def tuner_directory(profile: str) -> Path:
    """The git-ignored folder of the profile's KerasTuner projects: ``runs/<profile>/tuner``."""
    return paths.runs_dir(profile) / "tuner"


def completed_trials(tuner) -> list:
    """The trials of ``tuner`` that finished (reloaded from an earlier session or run in this one).

    A distributed worker does not hold the trials (the chief does): for it the list is empty.
    """
    trials = getattr(tuner.oracle, "trials", None) if not type(tuner.oracle).__name__ == "OracleClient" else None
    return [t for t in (trials or {}).values() if t.status == "COMPLETED"]


def trial_history(tuner, trial_id: str) -> dict[str, list[float]]:
    """The per-epoch history of a trial, read from its ``history.csv`` ({} when the file is elsewhere)."""
    log = Path(tuner.project_dir) / f"trial_{trial_id}" / "history.csv"
    if not log.is_file():
        return {}
    with open(log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    return {k: [float(row[k]) for row in rows] for k in keys}


def trials_frame(tuner, objective: str = "val_accuracy"):
    """One row per trial: its id, status, hyperparameters, the objective at its best epoch, that epoch and time.

    Sorted best first; unfinished or failed trials come last with an empty score.
    """
    import pandas as pd

    rows = []
    for trial in tuner.oracle.trials.values():
        history = trial_history(tuner, trial.trial_id)
        row = {"trial": trial.trial_id, "status": trial.status, **trial.hyperparameters.values,
               objective: trial.score if trial.status == "COMPLETED" else np.nan,
               "best_epoch": (trial.best_step + 1) if trial.best_step is not None and trial.score is not None
               else np.nan,
               "epochs": len(history.get("loss", [])) or np.nan,
               "minutes": sum(history.get("epoch_time_s", [])) / 60 if history else np.nan}
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(objective, ascending=False, na_position="last").set_index("trial")


def plot_hyperparameter_effects(frame, objective: str = "val_accuracy", baseline: float | None = None,
                                names: Sequence[str] = HYPERPARAMETERS):
    """One panel per hyperparameter: the objective of every finished trial against that hyperparameter's value.

    Log scale for the learning rate and L2, categories for the optimizer; the best trial is a star, and the
    dashed line (if ``baseline`` is given) marks a reference such as the untuned configuration.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import NullFormatter

    done = frame.dropna(subset=[objective])
    if done.empty:
        raise ValueError("no finished trials to plot; run the search first")
    ncols = 3
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.3 * nrows), sharey=True, squeeze=False)
    best = done[objective].idxmax()
    for ax, name in zip(axes.flat, names):
        values = done[name]
        if not pd.api.types.is_numeric_dtype(values):  # categories, such as the optimizer
            categories = sorted(values.unique())
            x = values.map({c: i for i, c in enumerate(categories)}).astype(float)
            ax.set_xticks(range(len(categories)), categories)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        else:
            x = values.astype(float)
            if name in LOG_SCALE:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # label the powers of ten only
            elif name == "batch_size":
                ax.set_xscale("log", base=2)
                ax.set_xticks(sorted(x.unique()), [str(int(v)) for v in sorted(x.unique())])
                ax.minorticks_off()
        ax.scatter(x, done[objective], s=40, color="#1f77b4", alpha=0.8, label="trial")
        ax.scatter(x[best], done.loc[best, objective], s=180, marker="*", color="#d62728", label="best trial",
                   zorder=3)
        if baseline is not None:
            ax.axhline(baseline, ls="--", color="#7f7f7f", lw=1, label="untuned")
        ax.set(xlabel=name, title=name)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(f"{objective} (best epoch)")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"Each hyperparameter against {objective}, one point per trial")
    return fig


# ---------------------------------------------------------------- comparisons
def seed_to_seed_verdict(tuned: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Does the tuned configuration beat the baseline by more than the seeds move their difference?

    ``tuned[i]`` and ``baseline[i]`` are scores of models trained from the same seed (the same initial weights),
    so the test is paired: the mean of the per-seed differences against their sample standard deviation
    (:func:`fmnist_helpers.regularization.paired_verdicts`). One seed gives no verdict. Returns the mean
    difference, its standard deviation (None with one seed), both means, the number of seeds, ``beats``
    (True, False, or None without a verdict) and a sentence saying so.
    """
    import pandas as pd

    from fmnist_helpers.regularization import paired_verdicts

    tuned, baseline = [float(t) for t in tuned], [float(b) for b in baseline]
    if not baseline or len(tuned) != len(baseline):
        raise ValueError(f"tuned and baseline need one score per seed, for the same seeds in the same order; "
                         f"got {len(tuned)} and {len(baseline)} scores")
    seeds = len(baseline)
    runs = pd.DataFrame({"variant": ["baseline"] * seeds + ["tuned"] * seeds, "seed": [*range(seeds)] * 2,
                         "score": baseline + tuned})
    row = paired_verdicts(runs, "score", higher_is_better=True, baseline="baseline").loc["tuned"]
    difference, std = float(row["difference"]), (float(row["seed_std"]) if seeds >= 2 else None)
    if std is None:
        verdict = (f"no verdict: with one seed there is no seed-to-seed spread to compare the difference of "
                   f"{100 * difference:+.2f} points with; run with -p baseline_seeds 3")
        beats = None
    else:
        beats = row["verdict"] == "better"
        spread = (f"{100 * difference:+.2f} points on average over {seeds} seeds, against a standard deviation of "
                  f"the per-seed differences of {100 * std:.2f} points")
        verdict = {"better": f"the tuned model beats the untuned baseline: {spread}",
                   "worse": f"the tuned model is WORSE than the untuned baseline: {spread}"}.get(
            row["verdict"], f"the tuned model does NOT beat the untuned baseline by more than the seed-to-seed "
                            f"spread: {spread}")
    return {"difference": difference, "difference_std": std, "tuned_mean": float(np.mean(tuned)),
            "baseline_mean": float(np.mean(baseline)), "seeds": seeds, "beats": beats, "verdict": verdict}


SEED004_LABELS = {  # how seed 004's write-up labels its numbers (each followed by ':' and the value)
    "best_val_accuracy": "Maximum Validation Accuracy Achieved",
    "train_accuracy_at_best": "Training Accuracy at this Epoch",
    "test_accuracy": "Test Accuracy achieved",
    "test_loss": "Test Loss achieved",
}


def parse_reported(text: str, labels: Mapping[str, str] = SEED004_LABELS) -> dict[str, float]:
    """Read labelled numbers such as ``**Test Accuracy achieved**</mark>: 91.17%`` out of a write-up.

    Percentages become fractions; labels that are not found are left out.
    """
    found = {}
    for key, label in labels.items():
        match = re.search(re.escape(label) + r"[^:\d]*:\s*([0-9]*\.?[0-9]+)\s*(%?)", text, flags=re.I)
        if match:
            found[key] = round(float(match.group(1)) / (100 if match.group(2) else 1), 10)
    return found


def seed004_reported() -> dict[str, float]:
    """What seed 004 reports: the test accuracy from :mod:`fmnist_helpers.reference`, and the other numbers read
    from the write-up in ``../shared/seeds/`` when that folder is present (else they are missing)."""
    from fmnist_helpers import reference

    ref = reference.references_for("seed004_cnn")[0]
    reported = {"test_accuracy": ref.test_accuracy}
    path = reference.SEEDS_DIR / ref.file
    if path.is_file():
        parsed = parse_reported(path.read_text(encoding="utf-8", errors="replace"))
        if "test_accuracy" in parsed and ref.test_accuracy is not None \
                and abs(parsed["test_accuracy"] - ref.test_accuracy) > 1e-9:
            raise ValueError(f"{path.name} reports test accuracy {parsed['test_accuracy']}, but "
                             f"fmnist_helpers.reference says {ref.test_accuracy}; fix SEED_REFERENCES")
        reported.update(parsed)
    return reported


# ---------------------------------------------------------------- distributed mode
def distributed_role(environ: Mapping[str, str] | None = None) -> str:
    """``"single"``, ``"chief"`` or ``"worker"``, from KerasTuner's environment variables.

    ``KERASTUNER_ORACLE_IP`` switches distributed mode on; it then needs ``KERASTUNER_ORACLE_PORT`` and
    ``KERASTUNER_TUNER_ID``. KerasTuner treats every id that *contains* ``chief`` as the chief, so a worker id
    such as ``mischief`` is refused here.
    """
    env = os.environ if environ is None else environ
    ip, port, tuner_id = (env.get(k) for k in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT",
                                                "KERASTUNER_TUNER_ID"))
    if not ip:
        if port:
            raise ValueError("KERASTUNER_ORACLE_PORT is set but KERASTUNER_ORACLE_IP is not; set both "
                             "(e.g. KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000) or neither")
        return "single"
    if not port or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"KERASTUNER_ORACLE_PORT must be a port number 1-65535 when KERASTUNER_ORACLE_IP is set, "
                         f"got {port!r}; e.g. KERASTUNER_ORACLE_PORT=8000")
    if not tuner_id:
        raise ValueError("KERASTUNER_TUNER_ID must be set in distributed mode: 'chief' for the process that runs "
                         "the oracle, and tuner0, tuner1, ... for the workers")
    if tuner_id == "chief":
        return "chief"
    if "chief" in tuner_id:
        raise ValueError(f"KERASTUNER_TUNER_ID {tuner_id!r} contains 'chief', so KerasTuner would treat it as the "
                         f"chief; use exactly 'chief' for the chief and tuner0, tuner1, ... for workers")
    return "worker"


def notebook_prefix(notebook: Path, marker: str = SEARCH_MARKER):
    """The notebook's cells up to and including the first code cell that contains ``marker``."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and marker in cell.source:
            nb.cells = nb.cells[: i + 1]
            return nb
    raise ValueError(f"{notebook.name} has no code cell containing {marker!r}")


def run_worker(papermill_args: Sequence[str], output: Path | str | None = None,
               notebook: Path | None = None) -> int:
    """Run the notebook's search as a KerasTuner worker: its cells up to the search, executed by papermill.

    The chief runs the whole notebook; a worker only needs the data, the hypermodel and ``tuner.search``,
    which asks the chief's oracle for trials until the chief says the budget is spent.
    """
    role = distributed_role()
    if role != "worker":
        raise ValueError(f"this process is not a worker (role {role!r}); set KERASTUNER_TUNER_ID=tuner0 (any id "
                         f"but 'chief'), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT of the chief")
    notebook = notebook or paths.NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb"
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    output = Path(output) if output else paths.runs_dir("distributed") / f"{NOTEBOOK}__worker_{tuner_id}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / f"{NOTEBOOK}__search_only.ipynb"
        nbformat.write(notebook_prefix(notebook), prefix)
        command = [sys.executable, "-m", "papermill", str(prefix), str(output), *papermill_args]
        print("worker", tuner_id, "->", os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"],
              ":", " ".join(command), flush=True)
        return subprocess.call(command)


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m fmnist_helpers.tuning worker [papermill options such as -p max_trials 20]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "worker" or argv[1:2] in (["-h"], ["--help"]):
        print(main.__doc__.strip("`") + "\n\nRuns notebook 07 up to its search as a KerasTuner worker; set "
              "KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT first. Give the workers the "
              "same -p values as the chief.")
        return 0 if argv[1:2] in (["-h"], ["--help"]) else 2
    output = None
    if "--output" in argv:
        i = argv.index("--output")
        output, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    try:
        return run_worker(argv[1:], output=output)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
