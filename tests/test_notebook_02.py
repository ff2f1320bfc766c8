"""Notebook 02 in quick mode: every expected model is recorded with sane numbers; bad parameters fail clearly."""
from __future__ import annotations

import numpy as np
import pytest
from notebook_support import printed, quick_run as run_quick, resolve_notebook_parameters

import fmnist_helpers as fh
from fmnist_helpers import baselines

NOTEBOOK = "02_mlp_baselines"
# The quick profile's models (the notebook's QUICK_MODELS), the SVM's learning-curve points (1/4 and 1/2 of the
# 1,000 images), and the quick sweep: the epochs sweep, with and without L2.
EXPECTED_MODELS = {"logistic_regression", "random_forest", "svm_rbf", "seed001_tyler", "seed001_jackson_l2",
                   "seed002_mlp", "workbook_mlp", "svm_rbf_train250", "svm_rbf_train500",
                   "sweep_tyler_d0.3_lr0.001_b128_e2", "sweep_tyler_d0.3_lr0.001_b128_e2_l2"}
KERAS_KEYS = {"params_count", "history", "epochs_run", "train_size", "model_file", "precision"}


@pytest.fixture(scope="module")
def quick_outputs(tmp_path_factory):
    """One quick run of the notebook: its output folder and the executed notebook."""
    return run_quick(tmp_path_factory, NOTEBOOK)


@pytest.fixture(scope="module")
def quick_run(quick_outputs):
    """The quick profile's folder of the quick run."""
    return quick_outputs[0] / "quick"


@pytest.fixture(scope="module")
def records(quick_run):
    return {r["model"]: r for r in fh.load_records(quick_run / "results", notebook=NOTEBOOK)}


def test_expected_models_are_recorded(records):
    assert set(records) == EXPECTED_MODELS


def test_records_have_required_keys_and_sane_metrics(records):
    for name, record in records.items():
        assert all(key in record for key in fh.results.REQUIRED_KEYS), name
        assert record["profile"] == "quick" and record["notebook"] == NOTEBOOK
        assert record["wall_time_s"] > 0
        assert 0 <= record["metrics"]["test_accuracy"] <= 1, name
        if not name.startswith("sweep_"):  # chance is 0.1, even one quick epoch on 2,000 images does better
            assert record["metrics"]["test_accuracy"] > 0.2, name


def test_every_sweep_setting_runs_once_per_sweep_seed(quick_run, quick_outputs):
    """The quick profile's two sweep seeds: each sweep setting is recorded for seeds 0 and 1, and the L2 question
    is answered against the seed noise."""
    sweep_runs = sorted((r["model"], r["seed"]) for r in fh.load_records(quick_run / "results", notebook=NOTEBOOK)
                        if r["model"].startswith("sweep_"))
    assert sweep_runs == sorted((m, s) for m in EXPECTED_MODELS if m.startswith("sweep_") for s in (0, 1))
    text = printed(quick_outputs[1])
    assert "2 sweep settings × 2 seeds on 1,000 training images" in text
    line = next(line for line in text.splitlines() if line.strip().startswith("epochs: L2 helps at"))
    assert "of 2 settings" in line and "(seed chose 50)" in line  # the quick epochs sweep: epochs 1 and 2


def test_keras_records_carry_training_details(records):
    for name, record in records.items():
        if name in {"logistic_regression", "random_forest", "svm_rbf", "svm_rbf_train250", "svm_rbf_train500"}:
            assert record["train_size"] == int(name.removeprefix("svm_rbf_train") if "train" in name else 1000)
            assert len(record["per_class_accuracy"]) == 10
            assert 0.2 < record["metrics"]["final_val_accuracy"] <= 1, name  # so the report ranks it on validation
            continue
        assert KERAS_KEYS <= set(record), name
        assert len(record["history"]["val_accuracy"]) == record["epochs_run"]
    assert records["workbook_mlp"]["precision"] in {"float32", "mixed_bfloat16"}
    recipe = {"width": 1024, "depth": 2, "dropout": 0.3, "peak_lr": 2e-3, "label_smoothing": 0.1, "batch_norm": True,
              "schedule": True, "flip": False, "shift": 0.0}
    assert recipe.items() <= records["workbook_mlp"]["params"].items()  # the whole recipe, so a change retrains
    assert records["seed002_mlp"]["params"]["learning_rate"] == 0.02
    assert records["seed001_jackson_l2"]["params"]["l2"] == 0.001


def test_figures_are_written(quick_run):
    figures = {p.stem for p in (quick_run / "figures").glob("02_*.png")}
    assert {"02_baselines_vs_paper", "02_svm_learning_curve", "02_seed001_learning_curves",
            "02_seed001_confusion_matrices", "02_tyler_sweeps", "02_seed002_prediction_gallery",
            "02_per_class_accuracy", "02_workbook_mlp_learning_curves", "02_summary"} <= figures


@pytest.mark.parametrize("parameters, message", [
    ({"learning_rate": -1}, "learning_rate must be a positive number, got -1"),
    ({"sweeps": "momentum"}, "sweeps: unknown 'momentum'"),
    ({"precision": "float16"}, "precision must be one of"),
])
def test_bad_parameter_stops_with_clear_error(parameters, message):
    with pytest.raises(ValueError, match=message):
        resolve_notebook_parameters(NOTEBOOK, **parameters)


# ---------------------------------------------------------------- the helpers the notebook relies on (fast)
# (These mirror fmnist_helpers/baselines.py; they belong in tests/test_baselines.py once that file exists.)
def test_list_validators_accept_lists_and_strings_and_reject_bad_items():
    assert baselines.float_list("lr", "1e-3, 0.01") == [0.001, 0.01]
    assert baselines.fraction_list("dropout", [0, 0.5]) == [0.0, 0.5]
    assert baselines.positive_int_list("batch", "32,128") == [32, 128]
    with pytest.raises(ValueError, match=r"lr\[1\] must be a positive number, got -1"):
        baselines.float_list("lr", [0.1, -1])
    with pytest.raises(ValueError, match=r"dropout\[0\] must be a number in \[0(\.0)?, 1(\.0)?\), got 1"):
        baselines.fraction_list("dropout", [1])
    with pytest.raises(ValueError, match=r"batch\[0\] must be a positive integer, got 0.5"):
        baselines.positive_int_list("batch", [0.5])
    with pytest.raises(ValueError, match="must be a non-empty list"):
        baselines.float_list("lr", [])


def test_optional_subset_of():
    check = fh.optional_subset_of(["a", "b"])
    assert check("x", "none") == [] and check("x", []) == []
    assert check("x", "all") == ["a", "b"] and check("x", "b,a,b") == ["b", "a"]
    with pytest.raises(ValueError, match="x: unknown 'c'; valid names are a, b"):
        check("x", ["c"])


def test_label_smoothing_loss_matches_keras_and_round_trips():
    import keras

    y_true = np.array([0, 2, 1])
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]], dtype="float32")
    loss = baselines.SparseLabelSmoothingCrossentropy(0.1, num_classes=3)
    expected = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(3)[y_true], y_pred)
    np.testing.assert_allclose(float(loss(y_true, y_pred)), float(expected), rtol=1e-6)
    clone = baselines.SparseLabelSmoothingCrossentropy.from_config(loss.get_config())
    assert (clone.label_smoothing, clone.num_classes) == (0.1, 3)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        baselines.SparseLabelSmoothingCrossentropy(1.5)


def test_stratified_subset_and_threaded_predict():
    from sklearn.neighbors import KNeighborsClassifier

    data = fh.load_fashion_mnist(train_size=2000, test_size=500, validation_size=500, seed=0)
    subset = fh.stratified_subset(data, 300, seed=1)
    assert len(subset.y_train) == 300 and np.all(np.bincount(subset.y_train, minlength=10) == 30)
    assert subset.x_test is data.x_test and fh.stratified_subset(data, None, 0) is data
    model = KNeighborsClassifier(3).fit(subset.x_train.reshape(300, -1), subset.y_train)
    flat = data.x_test.reshape(len(data.x_test), -1)
    np.testing.assert_array_equal(baselines.predict_in_threads(model, flat), model.predict(flat))


def test_comparison_table_means_and_differences():
    runs = [{"model": "seed002_mlp", "metrics": {"test_accuracy": acc, "final_val_accuracy": 0.9}, "params": {"epochs": 3},
             "wall_time_s": 10.0, "train_size": 100, "params_count": 7} for acc in (0.88, 0.89)]
    row = baselines.comparison_table(runs, ["seed002_mlp", "absent"]).loc["seed002_mlp"]
    assert row["seeds"] == 2 and row["test accuracy"] == pytest.approx(0.885)
    assert row["± std"] == pytest.approx(np.std([0.88, 0.89], ddof=1))
    assert row["difference (points)"] == pytest.approx(100 * (0.885 - 0.8871))


def test_a_single_model_runs_without_the_figures_of_the_others(tmp_path_factory):
    """``-p models seed002_mlp`` trains and records only that model; the seed-001 figures, which need the seed-001
    models, and the sweep figure (``-p sweeps none``) are skipped with a note rather than saved empty."""
    out, nb = run_quick(tmp_path_factory, NOTEBOOK, models="seed002_mlp", sweeps="none", ablations="none")
    records = fh.load_records(out / "quick" / "results", notebook=NOTEBOOK)
    assert {r["model"] for r in records} == {"seed002_mlp"}
    figures = {p.stem for p in (out / "quick" / "figures").glob("02_*.png")}
    assert "02_seed002_prediction_gallery" in figures
    assert not figures & {"02_seed001_learning_curves", "02_seed001_confusion_matrices", "02_tyler_sweeps"}
    text = printed(nb)
    assert "no seed-001 MLP among the models (-p models)" in text and "no sweep chosen" in text


def test_all_four_sweeps_are_judged_against_the_seed_noise(tmp_path_factory):
    """``-p sweeps all``: every sweep is plotted, and its L2 line and best-value row are built from its own values
    only (a table over all sweeps must not mix the values of one sweep into another)."""
    out, nb = run_quick(tmp_path_factory, NOTEBOOK, models="seed002_mlp", sweeps="all", ablations="none")
    text = printed(nb)
    settings = {"dropout": 2, "learning_rate": 2, "batch_size": 2, "epochs": 2}  # the quick profile's grids
    for param, count in settings.items():
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{param}: L2 helps at"))
        assert f"of {count} settings" in line, line
    best = next(o for c in nb.cells if "seed_choice_verdict" in c.source for o in c.outputs if "data" in o)
    table = best["data"]["text/plain"]
    assert all(param in table for param in settings) and "not in this grid" in table  # epochs: 50 is not in 1-2
    assert "02_tyler_sweeps.png" in {p.name for p in (out / "quick" / "figures").glob("*.png")}
