"""Notebook 06 in quick mode: a saved CNN is analysed, a missing MLP is replaced by a stand-in with a warning.

One papermill run serves every test in this module (it takes about a minute on 2 cores). Before it, a small
untrained CNN is saved where notebook 03 would save ``workbook_cnn``, with flip-TTA test probabilities beside it
and a results record that says so and names a 6,000-image validation split; no MLP is saved, so the notebook
must train ``standin_mlp`` and say which command produces the real one.
"""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from notebook_support import execute_notebook, resolve_notebook_parameters

import fmnist_helpers as fh
from fmnist_helpers.training import model_path, save_model_atomically

FIGURES = ("confusion_matrices", "per_class_accuracy", "confused_pair_examples", "confident_mistakes",
           "uncertain_correct", "reliability_diagrams", "confidence_histogram", "disagreements", "robustness")


def save_fake_cnn() -> None:
    """An untrained CNN with RandomFlip, saved with its record as notebook 03's quick-profile workbook_cnn."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.RandomFlip("horizontal"),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    cfg = fh.RunConfig("03_cnn", "quick", {"seed": 0})
    target = model_path(cfg, "workbook_cnn")
    save_model_atomically(model, target)
    data = fh.load_fashion_mnist(seed=0, test_size=1000, channel_axis=True)  # quick mode's test slice
    tta = (model.predict(data.x_test, verbose=0) + model.predict(data.x_test[:, :, ::-1], verbose=0)) / 2
    np.save(target.with_name(target.name.replace(".keras", ".test_probabilities.npy")), tta)
    accuracy = float((tta.argmax(1) == data.y_test).mean())
    fh.record_result(cfg, "workbook_cnn", {"test_accuracy": accuracy, "flip_tta_used": True}, wall_time_s=1.0,
                     params={"validation_size": 6000})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out, work = tmp_path_factory.mktemp("outputs"), tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FMNIST_OUTPUT_DIR", str(out))
        mp.setenv("FMNIST_QUICK", "1")
        save_fake_cnn()
        nb = execute_notebook("06_error_analysis", work)
    text = "\n".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    return out / "quick", nb, text


def test_every_figure_is_written(run):
    root, _, _ = run
    assert sorted(p.name for p in (root / "figures").glob("06_*.png")) == sorted(f"06_{n}.png" for n in FIGURES)


def test_saved_model_is_found_and_checked_against_its_probabilities(run):
    _, _, text = run
    assert "CNN: workbook_cnn from the quick profile" in text
    assert "workbook_cnn: predictions with flip TTA agree with the saved test probabilities on 100.00%" in text


def test_missing_model_gets_a_stand_in_with_a_warning(run):
    root, _, text = run
    assert "STAND-IN: no saved MLP was found" in text and "STAND-IN: no saved CNN" not in text
    assert ("papermill notebooks/02_mlp_baselines.ipynb out.ipynb -p profile quick -p seed 0 -p models workbook_mlp "
            "-p sweeps none -p ablations none") in text  # the model alone, at the analysed seed
    # The stand-in is saved for re-runs, but it is a placeholder: no results record of its own.
    assert [p.name for p in (root / "models").glob("06_error_analysis__standin_*.keras")] == [
        "06_error_analysis__standin_mlp_1ep_2000img__seed0.keras"]
    assert not list((root / "results").rglob("standin_mlp__seed*.json"))


def test_records_are_machine_readable(run):
    root, _, _ = run
    records = {r["model"]: r for r in fh.load_records(root / "results", notebook="06_error_analysis")}
    calibration = records["calibration_workbook_cnn"]
    assert {"ece_before", "ece_after", "nll_before", "nll_after", "brier_before", "brier_after",
            "temperature", "accuracy"} <= set(calibration["metrics"])
    # Analysis records stay out of the README's accuracy tables: no test_accuracy key, family "analysis".
    assert all("test_accuracy" not in r["metrics"] and r["family"] == "analysis" for r in records.values())
    assert calibration["metrics"]["temperature"] > 0 and calibration["stand_in"] is False
    assert calibration["params"]["validation_images"] == 6000  # the split named in the model's record
    assert calibration["model_profile"] == "quick" and records["calibration_standin_mlp"]["model_profile"] == "quick"
    assert records["calibration_standin_mlp"]["stand_in"] is True
    comparison = records["comparison_workbook_cnn_vs_standin_mlp"]["metrics"]
    assert 0 <= comparison["mcnemar_pvalue"] <= 1 and comparison["ci95_low"] <= comparison["ci95_high"]
    robustness = records["robustness_standin_mlp"]["metrics"]
    assert {"clean", "shift_dx_minus1px", "noise_sigma0.1", "horizontal_flip", "flip_TTA"} <= set(robustness)
    assert records["robustness_workbook_cnn"]["trained_with_flips"] is True
    # The CNN's record says its test score averaged flips: that predictor is calibrated too, with its own fit.
    with_tta = records["calibration_workbook_cnn_flip_tta"]
    recorded = fh.load_records(root / "results", notebook="03_cnn")[0]["metrics"]["test_accuracy"]
    assert with_tta["params"]["tta"] == "flip" and calibration["params"]["tta"] == "none"
    assert with_tta["metrics"]["accuracy"] == pytest.approx(recorded)  # the predictor notebook 03 scored
    assert with_tta["metrics"]["temperature"] != calibration["metrics"]["temperature"]


def test_flip_tta_change_is_tested_against_the_same_models_plain_predictions(run):
    """McNemar's counts of the TTA change must add up to the change in accuracy of the same model."""
    import re

    root, _, text = run
    for name in ("workbook_cnn", "standin_mlp"):
        found = re.search(rf"{name}: trained with flips: \w+; flip TTA changes accuracy by ([+-][\d.]+) .*?; "
                          r"(\d+) images only TTA gets right, (\d+) only the plain view", text)
        assert found, f"no flip TTA line for {name}"
        change, tta_only, plain_only = float(found[1]), int(found[2]), int(found[3])
        probe_size = fh.load_records(root / "results", notebook="06_error_analysis")[0]["params"]["probe_size"]
        assert change == pytest.approx((tta_only - plain_only) / probe_size, abs=1e-4)


def test_validation_size_beyond_the_models_own_split_stops_with_clear_error(run, tmp_path, monkeypatch):
    """More validation images than the model was trained without would fit the temperature on training images."""
    import papermill as pm

    root, _, _ = run
    monkeypatch.setenv("FMNIST_OUTPUT_DIR", str(root.parent))
    monkeypatch.setenv("FMNIST_QUICK", "1")
    with pytest.raises(pm.PapermillExecutionError, match="validation_size=7000, but workbook_cnn was trained without "
                                                          "only 6000 images"):
        execute_notebook("06_error_analysis", tmp_path, validation_size=7000)


def test_stand_in_beats_chance(run):
    root, _, _ = run
    records = fh.load_records(root / "results", notebook="06_error_analysis")
    accuracy = next(r for r in records if r["model"] == "calibration_standin_mlp")["metrics"]["accuracy"]
    assert accuracy > 0.3  # ten classes: chance is 0.1


def test_bad_parameter_stops_with_clear_error():
    with pytest.raises(ValueError, match="n_bins must be a positive integer, got 0"):
        resolve_notebook_parameters("06_error_analysis", n_bins=0)
