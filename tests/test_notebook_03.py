"""Notebook 03 in quick mode: records, resume after a real interruption, determinism, bad parameters."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from notebook_support import execute_notebook, quick_run as run_quick, resolve_notebook_parameters

from fmnist_helpers import paths

NOTEBOOK = paths.NOTEBOOKS_DIR / "03_cnn.ipynb"


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("FMNIST_QUICK", "1")


def execute(tmp_path, **parameters):
    return execute_notebook("03_cnn", tmp_path, **parameters)


def records(output_dir):
    folder = output_dir / "quick" / "results" / "03_cnn"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The output folder of one quick run of every model (the design's `-p epochs 1`), with the full profile's
    augmentation for the workbook CNN (its ablation runs keep the flip-only default)."""
    return run_quick(tmp_path_factory, "03_cnn", epochs=1, augment="flip_shift_erase")[0]


def test_quick_run_records_every_model(quick_run):
    found = records(quick_run)
    ablations = ("workbook_cnn_short_recipe", "workbook_cnn_short_bn_momentum_0.99",  # the quick profile's variants
                 "workbook_cnn_short_weight_ema", "workbook_cnn_short_weight_ema_stale_bn")
    assert set(found) == {f"{m}__seed0.json" for m in ("seed000_cnn", "seed003_cnn", "workbook_cnn", *ablations)} | {
        "workbook_cnn_short_recipe_next_seed__seed1.json"}  # the recipe again with the next seed: the noise yardstick
    recipe, variant, ema, stale = (found[f"{m}__seed0.json"] for m in ablations)
    other_seed = found["workbook_cnn_short_recipe_next_seed__seed1.json"]
    assert recipe["params"]["ablation"] == "recipe" and variant["params"]["bn_momentum"] == 0.99
    assert found["workbook_cnn__seed0.json"]["params"]["augment"] == "flip_shift_erase"
    assert recipe["train_size"] == variant["train_size"] == other_seed["train_size"] == 1000
    assert recipe["metrics"] != variant["metrics"] and recipe["history"]["loss"] != other_seed["history"]["loss"]
    assert ema["params"]["weight_ema"] is True and ema["params"]["recalibrated_batchnorm"] is True
    assert "weight_ema" not in recipe["params"] and "recalibrated_batchnorm" not in recipe["params"]
    assert stale["params"]["weight_ema"] is True and "recalibrated_batchnorm" not in stale["params"]
    for record in found.values():
        # Better than chance on the test set or, with batch statistics, on the training batches: after the 16 steps
        # of the workbook CNN, BatchNorm's moving averages still mostly hold their initial values, so its test
        # predictions can sit at chance although it learns. The short runs' 8 steps may not learn at all.
        best = max(record["metrics"]["test_accuracy"], record["metrics"]["final_train_accuracy"])
        learned = "_short_" in record["model"] or best > 0.1
        assert record["epochs_run"] == 1 and learned and record["images_per_s"] > 0
        assert record["params"]["pipeline"] == "shuffled_batches"  # every model: no wait at the start of an epoch
        assert record["command"].startswith("FMNIST_QUICK=1 papermill notebooks/03_cnn.ipynb")
        assert (quick_run / "quick" / "models" / f"03_cnn__{record['model']}__seed{record['seed']}.keras").is_file()
    assert (quick_run / "quick" / "figures" / "03_accuracy_vs_cost.png").is_file()


def test_weight_ema_variant_is_scored_and_saved_with_the_averaged_weights(quick_run):
    def saved(variant):
        models = quick_run / "quick" / "models"
        return keras.saving.load_model(models / f"03_cnn__workbook_cnn_short_{variant}__seed0.keras")

    model, stale = saved("weight_ema"), saved("weight_ema_stale_bn")
    averages = [v for v in model.optimizer.variables if v.path.endswith("_average")]  # EMA slots, saved with it
    assert model.optimizer.use_ema and len(averages) == len(model.trainable_weights) > 0
    for weight, average, stale_weight in zip(model.trainable_weights, averages, stale.trainable_weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), average.numpy(), err_msg=weight.path)
        np.testing.assert_array_equal(weight.numpy(), stale_weight.numpy(), err_msg=weight.path)  # same training
    moving_means = [(a.moving_mean.numpy(), b.moving_mean.numpy()) for a, b in zip(model.layers, stale.layers)
                    if isinstance(a, keras.layers.BatchNormalization)]
    assert moving_means and all(not np.allclose(a, b) for a, b in moving_means)  # recomputed for the average
    assert not saved("recipe").optimizer.use_ema


def test_same_seed_gives_same_metrics(quick_run, tmp_path, monkeypatch):
    """A second run of seed 003's CNN alone, in a fresh output folder, repeats the quick run's numbers exactly."""
    monkeypatch.setenv("FMNIST_OUTPUT_DIR", str(tmp_path / "again"))
    execute(tmp_path, models="seed003_cnn", epochs=1)
    first, again = records(quick_run)["seed003_cnn__seed0.json"], records(tmp_path / "again")["seed003_cnn__seed0.json"]
    assert again["metrics"] == first["metrics"]
    assert again["history"]["loss"] == first["history"]["loss"]


def test_interrupted_run_resumes(tmp_path, isolated_outputs):
    command = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "out.ipynb"),
               "-p", "models", "seed003_cnn", "-p", "epochs", "4"]
    epoch_log = isolated_outputs / "quick" / "checkpoints" / "03_cnn__seed003_cnn__seed0" / "history.csv"
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (epoch_log.is_file() and len(epoch_log.read_text().splitlines()) >= 3):
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the whole session: papermill and its kernel
    process.wait()
    assert not records(isolated_outputs), "the run was killed before it finished"
    execute(tmp_path, models="seed003_cnn", epochs=4)
    record = records(isolated_outputs)["seed003_cnn__seed0.json"]
    assert record["epochs_run"] == 4 and record["epochs_in_last_session"] < 4
    assert len(record["history"]["val_accuracy"]) == 4


@pytest.mark.parametrize("name, value, message", [
    ("epochs", -3, "epochs must be a positive integer, got -3"),
    ("models", "resnet", "unknown 'resnet'; valid names are seed000_cnn, seed003_cnn, workbook_cnn"),
    ("learning_rate", 0, "learning_rate must be a positive number"),
    ("augment", "mixup", "augment must be one of 'flip', 'flip_shift_erase'; got 'mixup'"),
    ("ablations", "no_bn", "ablations: unknown 'no_bn'; valid names are bn_momentum_0.99, no_flip, constant_lr, "
                           "float32, label_smoothing_0.1, no_weight_decay, pool_after_bn_relu"),
    ("label_smoothing", 1.5, r"label_smoothing must be a number in \[0.0, 1.0\), got 1.5"),
    ("batch_size", "big", "batch_size must be a positive integer"),
])
def test_bad_parameters_fail_clearly(name, value, message):
    with pytest.raises(ValueError, match=message):
        resolve_notebook_parameters("03_cnn", **{name: value})


def test_only_the_models_selection_keeps_a_full_run_publishing(monkeypatch):
    """``-p models`` picks which models train, so a full run still publishes the figures it draws; ``-p epochs``
    changes what they show, so that run writes to runs/full/figures/ instead."""
    from fmnist_helpers import config

    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    namespace = resolve_notebook_parameters("03_cnn", profile="full", models="workbook_cnn")
    assert config.publishes_figures() and namespace["cfg"].epochs_workbook == 50
    assert config.changed_parameters() == ()  # so the design goal is checked
    namespace = resolve_notebook_parameters("03_cnn", profile="full", models="workbook_cnn", epochs=3)
    assert not config.publishes_figures() and namespace["cfg"].epochs_workbook == 3
    assert config.changed_parameters() == ("epochs",)  # the design goal is not checked on another schedule
    assert "-p epochs 3" in namespace["cfg"].command()
