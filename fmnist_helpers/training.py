"""Training runs that survive interruption and record themselves as soon as they finish.

:func:`train_and_record` is the one call the notebooks use: it fits a compiled model with validation data,
resumes from a Keras ``BackupAndRestore`` checkpoint after an interruption, evaluates the test set once,
saves the model as ``.keras`` and writes its results record. A model whose record and file already exist
is loaded instead of retrained, so a re-run picks up where the last one stopped; one recorded with other
settings (epochs, batch size, training-set size or any of its ``params``) is trained again.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np

from fmnist_helpers import paths
from fmnist_helpers.config import PRECISIONS, RunConfig, native_precision, one_of
from fmnist_helpers.data import FashionMNIST, atomic_write
from fmnist_helpers.evaluation import predict_probabilities, translate
from fmnist_helpers.results import load_record, record_result, run_seed


def use_precision(mode: str = "auto") -> str:
    """Set Keras' global dtype policy and return its name.

    ``"auto"`` picks ``mixed_bfloat16`` on CPUs with native bf16 (AVX512_BF16 or AMX), where it trains small
    models 1.3-2x faster, and ``float32`` elsewhere. Keep the last layer in float32
    (``layers.Activation("softmax", dtype="float32")``) so probabilities stay exact.
    """
    mode = one_of(PRECISIONS)("precision", mode)
    if mode == "auto":
        mode = native_precision()
    keras.mixed_precision.set_global_policy(mode)
    return mode


class EpochLog(keras.callbacks.Callback):
    """Adds the learning rate and the epoch's wall time to the history, one entry per epoch."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            logs["epoch_time_s"] = time.perf_counter() - self._start


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """When training ends, recompute every BatchNorm layer's moving mean and variance for the final weights.

    The statistics BatchNorm keeps during training describe the activations of the weights as they were
    step by step. Anything that replaces the weights afterwards leaves them stale; in particular a moving average
    of the weights (``use_ema=True``), which ``fit`` copies into the model just before ``on_train_end``. This
    callback then passes ``batches`` random batches of ``images`` through the model in training mode and sets
    each layer's momentum so that every batch weighs the same (the k-th batch 1/k), whatever the layer's own
    momentum, which is restored afterwards. No gradient step is taken. Augmentation and dropout layers are
    active in training mode too, so the statistics describe augmented images, as during training (in the
    workbook CNN the only dropout follows the last BatchNorm); besides the statistics, only the random layers'
    seed states change.
    """

    def __init__(self, images: np.ndarray, batches: int = 50, batch_size: int = 128, seed: int = 0) -> None:
        super().__init__()
        self.images, self.batches, self.batch_size, self.seed = images, batches, batch_size, seed

    def on_train_end(self, logs: dict | None = None) -> None:
        norms = [layer for layer in _nested_layers(self.model) if isinstance(layer, keras.layers.BatchNormalization)]
        momenta, rng = [norm.momentum for norm in norms], np.random.default_rng(self.seed)
        try:
            for k in range(self.batches):
                for norm in norms:  # keeps k/(k+1) of the mean of the k batches before: an equal-weight mean
                    norm.momentum = k / (k + 1)
                batch = rng.choice(len(self.images), size=min(self.batch_size, len(self.images)), replace=False)
                self.model(self.images[np.sort(batch)], training=True)
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum


def _nested_layers(model: keras.Model) -> list:
    """Every layer of ``model``, including the layers of models nested in it, in order."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found += _nested_layers(layer)
    return found


def augmentation_layers(flip: bool = True, shift_erase: bool = False) -> list:
    """Keras augmentation layers for 28×28×1 images in [0, 1], active only in training: horizontal flips, and with
    ``shift_erase`` also shifts by whole pixels, up to 2 in each direction, and random erasing of 2–15 % of the image
    (zero-filled). The shifts use nearest-neighbour sampling: with Keras' default bilinear sampling a random
    translation lands between pixels and blurs the image, and the network would train on blurred images but be
    tested on sharp ones.

    The flip layer is created even with ``flip=False``: it draws its seed from the random stream that also seeds
    the weight initializers, so a model built after this call starts from the same weights with or without it.
    """
    from keras import layers

    flip_layer = layers.RandomFlip("horizontal")
    stack = [flip_layer] if flip else []
    if shift_erase:
        stack += [layers.RandomTranslation(2 / 28, 2 / 28, fill_mode="constant", fill_value=0.0,
                                          interpolation="nearest"),
                  layers.RandomErasing(factor=(0.5, 0.5), scale=(0.02, 0.15), fill_value=0.0, value_range=(0.0, 1.0))]
    return stack


AUGMENTATION_SETTINGS = {"RandomFlip": ("mode",), "RandomErasing": ("factor", "scale", "fill_value"),
                         "RandomTranslation": ("height_factor", "width_factor", "interpolation", "fill_mode")}


def augmentation_description(stack: Sequence) -> list[dict]:
    """The settings of Keras augmentation layers that decide what a model trains on, for a results record.

    One entry per layer of ``stack`` (such as :func:`augmentation_layers`' list), in order: its class and the
    settings listed in :data:`AUGMENTATION_SETTINGS`, e.g. ``{"layer": "RandomTranslation", ...,
    "interpolation": "nearest"}``. A run recorded with other augmentation is then never mistaken for this one.
    """
    description = []
    for layer in stack:
        kind, config = type(layer).__name__, layer.get_config()
        description.append({"layer": kind, **{key: config[key] for key in AUGMENTATION_SETTINGS.get(kind, ())}})
    return description


def shuffled_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Training batches as a ``tf.data.Dataset``, reshuffled every epoch in an order that ``seed`` fixes.

    ``model.fit`` builds a similar pipeline itself from numpy arrays, with tf.data's autotuning on. Autotuning
    runs a background thread that wakes up less and less often, and a new epoch must wait for the thread of the
    last epoch's pipeline to finish; on a 2-core CPU that held up the start of most long epochs by seconds (the
    per-epoch times in the records show it). This pipeline does the same work, a gather of each shuffled batch
    from the arrays in memory, with autotuning off, so every epoch starts at once. With the same seed, a new
    pipeline gives the same sequence of epoch orders.
    """
    import tensorflow as tf

    order = tf.data.Dataset.range(len(labels)).shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    arrays = tf.data.Dataset.from_tensors((images, labels)).repeat()
    batches = tf.data.Dataset.zip((order.batch(batch_size), arrays)).map(
        lambda rows, pair: (tf.gather(pair[0], rows), tf.gather(pair[1], rows)), num_parallel_calls=2,
        deterministic=True).prefetch(2)
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.with_options(options)


@dataclass
class TrainedModel:
    """A trained model with its results record and its test-set probabilities."""

    name: str
    model: keras.Model
    record: dict
    test_probabilities: np.ndarray

    @property
    def history(self) -> dict[str, list]:
        return self.record["history"]

    @property
    def test_predictions(self) -> np.ndarray:
        return self.test_probabilities.argmax(axis=1)


def _run_paths(cfg: RunConfig, name: str, seed: int) -> tuple[Path, Path, Path]:
    stem = f"{cfg.notebook}__{name}__seed{seed}"
    return (paths.models_dir(cfg.profile) / f"{stem}.keras",
            paths.models_dir(cfg.profile) / f"{stem}.test_probabilities.npy",
            paths.checkpoints_dir(cfg.profile) / stem)


def model_path(cfg: RunConfig, name: str, seed: int | None = None) -> Path:
    """Where :func:`train_and_record` saves the ``.keras`` file of ``name``."""
    return _run_paths(cfg, name, cfg.seed if seed is None else seed)[0]


def _save_atomically(save, target: Path) -> Path:
    """Call ``save(tmp)`` on a temporary name beside ``target`` (same suffix), then rename it into place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".weights.h5" if target.name.endswith(".weights.h5") else target.suffix
    tmp = target.with_name(f".{target.name[:-len(suffix)]}.{os.getpid()}.part{suffix}")
    try:
        save(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def save_model_atomically(model: keras.Model, target: Path) -> None:
    """Save a ``.keras`` file so readers never see a half-written one."""
    _save_atomically(model.save, target)


def save_weights_atomically(model: keras.Model, target: Path | str) -> Path:
    """``model.save_weights(target)`` through a temporary file, so readers never see a half-written file."""
    if not Path(target).name.endswith(".weights.h5"):
        raise ValueError(f"a Keras weights file must end in .weights.h5, got {Path(target).name!r}")
    return _save_atomically(model.save_weights, Path(target))


def initial_weights_path(profile: str, notebook: str, tag: str, seed: int) -> Path:
    """``runs/<profile>/<notebook>/initial_<tag>_seed<seed>.weights.h5``: where every run of ``seed`` starts."""
    from fmnist_helpers.config import non_negative_int

    if not tag or not all(c.isalnum() or c in "-_." for c in tag):
        raise ValueError(f"tag must be letters, digits, '-', '_' or '.', got {tag!r}")
    return paths.runs_dir(profile) / notebook / f"initial_{tag}_seed{non_negative_int('seed', seed)}.weights.h5"


def changed_settings(record: Mapping[str, Any] | None, settings: Mapping[str, Any],
                     train_size: int | None = None, split_seed: int | None = None) -> list[str]:
    """The settings in which a finished ``record`` differs from ``settings`` (``[]``: the run can be reused).

    Values are compared as the JSON record stores them (tuples as lists); a setting the record lacks counts as
    changed (unless :data:`IMPLIED_SETTINGS` says which value records made before it existed were made with), and
    so does another training-set size, or a data split drawn by another run's seed (``run_seed``, see
    :func:`fmnist_helpers.results.run_seed`).
    """
    if record is None:
        return []
    recorded, missing = recorded_settings(record), object()
    wanted = json.loads(json.dumps(dict(settings), default=str))
    changed = [name for name, value in wanted.items() if recorded.get(name, missing) != value]
    if train_size is not None and record.get("train_size") != train_size:
        changed.append("train_size")
    if split_seed is not None and run_seed(record) != split_seed:
        changed.append("run_seed")
    return changed


def recorded_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a results record was made with: its ``params``, plus the :data:`IMPLIED_SETTINGS` of records
    made before a setting was recorded (a record without ``pipeline`` was fed by Keras' own pipeline)."""
    return {**IMPLIED_SETTINGS, **record.get("params", {})}


def _discard_checkpoint_of_other_settings(backup_dir: Path, settings: Mapping[str, Any], label: str) -> None:
    """Delete the checkpoint and epoch log an interrupted run left in ``backup_dir`` if that run used other
    ``settings`` (say ``-p epochs 50`` after an interrupted 10-epoch run): resuming it would continue another
    schedule, or fail on other weight shapes. Then note this run's settings beside its checkpoint."""
    stamp = backup_dir / "settings.json"
    wanted = json.loads(json.dumps(dict(settings), default=str))
    if backup_dir.exists():
        try:
            previous = {**IMPLIED_SETTINGS, **json.loads(stamp.read_text())}
        except (OSError, ValueError):
            previous = {}
        if previous != wanted:
            changed = sorted(k for k in wanted.keys() | previous.keys() if previous.get(k) != wanted.get(k))
            print(f"{label}: the interrupted run found in {backup_dir} used other settings "
                  f"({', '.join(changed)}); it is discarded and training starts from epoch 1")
            shutil.rmtree(backup_dir)
    atomic_write(stamp, lambda handle: handle.write(json.dumps(wanted, indent=1).encode()))


def train_and_record(
    cfg: RunConfig,
    name: str,
    build_model,
    data: FashionMNIST,
    epochs: int,
    batch_size: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int | None = None,
    train_inputs: Any = None,
    params: dict | None = None,
    retrain: bool = False,
    tta: Sequence[str] = (),
    pipeline: str = "keras",
    **fit_kwargs: Any,
) -> TrainedModel:
    """Fit, evaluate once on the test set, save and record one model; reuse it if it finished earlier with the
    same settings (``epochs``, ``batch_size``, the training-set size and ``params``), else train it again.

    Args:
        cfg: the notebook's resolved parameters.
        name: the model's short name in records and file names, e.g. ``"seed000_cnn"``.
        build_model: a function returning a freshly **compiled** model; it is called after seeding.
        data: the split from :func:`fmnist_helpers.load_fashion_mnist`.
        epochs, batch_size: the training schedule.
        callbacks: extra Keras callbacks (``ReduceLROnPlateau``, ``EarlyStopping``, ...).
        seed: seed for this model (default: the run's seed); weights and shuffling follow from it.
        train_inputs: an alternative training input (such as an augmenting ``tf.data.Dataset``);
            default ``(data.x_train, data.y_train)``.
        params: settings to store in the record next to the run's parameters; a finished run recorded with
            other values is trained again.
        retrain: ignore a finished record and train again in any case.
        tta: test-time augmentations to consider, from :data:`TTA_VIEWS` (e.g. ``("flip", "flip_shift")``);
            the test set is scored with whichever of them, or none, gives the highest validation accuracy.
        pipeline: how the training arrays reach ``fit``: ``"keras"`` passes them as they are, and Keras shuffles
            and batches them; ``"shuffled_batches"`` passes :func:`shuffled_batches` with this model's seed,
            which avoids the stall at the start of every epoch that Keras' own pipeline has, and is recorded.
        **fit_kwargs: passed to ``model.fit``.
    """
    from fmnist_helpers.config import set_seed

    seed = cfg.seed if seed is None else seed
    pipeline = one_of(PIPELINES)("pipeline", pipeline)
    if pipeline != "keras" and train_inputs is not None:
        raise ValueError(f"pipeline={pipeline!r} builds the training input itself; pass either it or train_inputs")
    tta = [one_of(TTA_VIEWS)("tta", choice) for choice in ([tta] if isinstance(tta, str) else tta)]  # before training
    saved, probabilities_file, backup_dir = _run_paths(cfg, name, seed)
    settings = {"epochs": epochs, "batch_size": batch_size, **(params or {}), "pipeline": pipeline}
    record = None if retrain else load_record(cfg, name, seed)
    changed = changed_settings(record, settings, len(data.y_train), split_seed=cfg.seed)
    if changed:
        print(f"{name} (seed {seed}): recorded with other settings ({', '.join(changed)}); training again")
        record = None
    if record is not None and saved.is_file() and probabilities_file.is_file():
        saved_probabilities = np.load(probabilities_file)
        if len(saved_probabilities) == len(data.y_test):
            print(f"{name} (seed {seed}): finished earlier, loading {saved.name} "
                  f"(test accuracy {record['metrics']['test_accuracy']:.4f})")
            return TrainedModel(name, keras.models.load_model(saved), record, saved_probabilities)
        print(f"{name} (seed {seed}): recorded on {len(saved_probabilities):,} test images, this run has "
              f"{len(data.y_test):,}; training again")

    set_seed(seed)
    model = build_model()
    train_size = len(data.y_train)
    _discard_checkpoint_of_other_settings(backup_dir, {**settings, "train_size": train_size}, f"{name} (seed {seed})")
    epoch_log = backup_dir / "history.csv"  # survives interruptions, so the record keeps every epoch
    # double_checkpoint: a run killed while saving its checkpoint resumes from the copy of the epoch before
    all_callbacks = [EpochLog(), keras.callbacks.CSVLogger(str(epoch_log), append=True),
                     keras.callbacks.BackupAndRestore(str(backup_dir / "state"), double_checkpoint=True),
                     keras.callbacks.TerminateOnNaN(), *callbacks]
    if pipeline == "shuffled_batches":
        train_inputs = shuffled_batches(data.x_train, data.y_train, batch_size, seed)
    start = time.perf_counter()
    if train_inputs is None:
        history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                            batch_size=batch_size, callbacks=all_callbacks, verbose=2, **fit_kwargs)
    else:
        history = model.fit(train_inputs, validation_data=(data.x_val, data.y_val), epochs=epochs,
                            callbacks=all_callbacks, verbose=2, **{"shuffle": False, **fit_kwargs})  # shuffled
    wall_time = time.perf_counter() - start
    epochs_run = len(history.history.get("loss", []))
    full_history = _read_epoch_log(epoch_log) or history.history
    finite_loss = np.isfinite(full_history.get("loss", []))
    diverged = not finite_loss.all()
    if diverged:
        print(f"{name} (seed {seed}): training diverged (the loss became NaN or infinite in epoch "
              f"{int(np.argmin(finite_loss)) + 1}), which usually means the learning rate is too high for this model; "
              f"it is recorded as diverged, scored as a model that knows nothing (equal probabilities)")
        full_history = {k: [float(v) if np.isfinite(v) else None for v in values] for k, values in full_history.items()}
    metrics: dict[str, Any] = {}
    chosen_tta = "none"
    if tta:  # decided on validation data: the test set is scored once, with the choice made here
        choices = ("none", *tta)
        views = _view_probabilities(model, data.x_val, {view for choice in choices for view in TTA_VIEWS[choice]})
        val_scores = {choice: float((_average(views, choice).argmax(1) == data.y_val).mean()) for choice in choices}
        chosen_tta = max(val_scores, key=val_scores.get)  # on a tie the first, i.e. the cheaper, choice
        metrics.update(val_accuracy_plain=val_scores.pop("none"),
                       **{f"val_accuracy_{choice}_tta": score for choice, score in val_scores.items()})
    # The test set, once, at the end.
    probabilities = uniform_where_not_finite(predict(model, data.x_test, tta=chosen_tta)).astype(np.float32)
    metrics.update(score_probabilities(data.y_test, probabilities), tta_used=chosen_tta)
    metrics["best_val_accuracy"] = float(np.nanmax(np.array(full_history.get("val_accuracy", [np.nan]), float)))
    metrics["final_val_accuracy"] = float(full_history.get("val_accuracy", [np.nan])[-1])
    metrics["final_train_accuracy"] = float(full_history.get("accuracy", [np.nan])[-1])
    save_model_atomically(model, saved)
    atomic_write(probabilities_file, lambda handle: np.save(handle, probabilities))
    # Training time over every session of a resumed run, not just the last one.
    total_time = float(sum(full_history.get("epoch_time_s", []))) or wall_time
    record = record_result(
        cfg, name, metrics, total_time, history=full_history, seed=seed,
        params=settings,
        params_count=int(model.count_params()), epochs_run=len(full_history.get("loss", [])),
        epochs_in_last_session=epochs_run, train_size=train_size,
        images_per_s=round(train_size * epochs_run / wall_time, 1) if epochs_run else None,
        last_session_wall_time_s=round(wall_time, 3),
        precision=keras.mixed_precision.global_policy().name, model_file=paths.repo_relative(saved),
        **({"diverged": True} if diverged else {}),
    )
    shutil.rmtree(backup_dir, ignore_errors=True)
    print(f"{name} (seed {seed}): test accuracy {metrics['test_accuracy']:.4f} · {total_time / 60:.1f} min · "
          f"recorded in {record.name}")
    return TrainedModel(name, model, load_record(cfg, name, seed), probabilities)


PIPELINES = ("keras", "shuffled_batches")
IMPLIED_SETTINGS = {"pipeline": "keras"}  # settings records lack that were made before the setting existed
TTA_VIEWS = {  # test-time augmentation: the views of each image whose predictions are averaged, as (mirror, dx, dy)
    "none": [(False, 0, 0)],
    "flip": [(False, 0, 0), (True, 0, 0)],
    "flip_shift": [(mirror, dx, dy) for mirror in (False, True)
                   for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))],
}


def predict(model: keras.Model, images: np.ndarray, tta: str = "none", batch_size: int = 1024) -> np.ndarray:
    """Class probabilities (float64), averaged over the views of test-time augmentation ``tta``: ``"none"``;
    ``"flip"``, the image and its horizontal mirror; ``"flip_shift"``, both of those and their one-pixel shifts
    left, right, up and down (10 views; suits a model trained with flips and shifts)."""
    views = TTA_VIEWS[one_of(TTA_VIEWS)("tta", tta)]
    return _average(_view_probabilities(model, images, views, batch_size), tta)


def _view_probabilities(model: keras.Model, images: np.ndarray, views, batch_size: int = 1024) -> dict:
    """Class probabilities for each view ``(mirror, dx, dy)`` of the images, each view predicted once."""
    def view_of(mirror: bool, dx: int, dy: int) -> np.ndarray:
        view = images[:, :, ::-1] if mirror else images
        return translate(view, dx=dx, dy=dy) if dx or dy else view

    return {view: predict_probabilities(model, view_of(*view), batch_size) for view in views}


def _average(view_probabilities: dict, tta: str) -> np.ndarray:
    """The mean of the view probabilities that test-time augmentation ``tta`` averages."""
    return sum(view_probabilities[view] for view in TTA_VIEWS[tta]) / len(TTA_VIEWS[tta])


def _read_epoch_log(path: Path) -> dict[str, list[float]]:
    """The per-epoch history written by ``CSVLogger``; a repeated epoch (after a resume) keeps its last row."""
    import csv

    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    keys = [k for k in next(iter(rows.values()), {}) if k != "epoch"]
    return {k: [float(rows[e][k]) for e in sorted(rows)] for k in keys}


def uniform_where_not_finite(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities`` with every row that holds a NaN or an infinity (the output of a diverged network)
    replaced by equal probabilities for all classes: the prediction of a model that knows nothing."""
    probabilities = np.asarray(probabilities)
    finite = np.isfinite(probabilities).all(axis=1, keepdims=True)
    return np.where(finite, probabilities, 1.0 / probabilities.shape[1])


def score_probabilities(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy and cross-entropy of predicted probabilities, from ``sklearn.metrics``."""
    from sklearn.metrics import accuracy_score, log_loss

    probabilities = np.clip(probabilities, 1e-7, 1)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # bf16 softmax sums drift from 1
    return {"test_accuracy": float(accuracy_score(y_true, probabilities.argmax(axis=1))),
            "test_loss": float(log_loss(y_true, probabilities, labels=range(probabilities.shape[1])))}
