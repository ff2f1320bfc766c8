"""fmnist_helpers.tuning: seed 004's split, search-space validation, project fingerprints, a resumable tuner with
per-trial histories, the trial table, the verdict, the seed write-up parser and the distributed-mode roles."""
from __future__ import annotations

import json
import warnings

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import fmnist_helpers as fh
from fmnist_helpers import paths, tuning

SPACE_ARGS = dict(learning_rate_min=1e-4, learning_rate_max=1e-2, batch_sizes=[64, 128], dropout_max=0.5,
                  l2_min=1e-6, l2_max=1e-3, augment_max=0.1, optimizers=["adam", "sgd"])


# ---------------------------------------------------------------- the split
def test_split_is_40k_20k_10k_stratified():
    data = tuning.load_split(seed=0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (40_000, 20_000, 10_000)
    assert data.x_train.shape[1:] == (28, 28, 1) and data.x_train.dtype == np.float32
    assert set(np.bincount(data.y_val)) == {2_000} and set(np.bincount(data.y_train)) == {4_000}
    assert set(np.bincount(data.y_test)) == {1_000}


def test_split_is_seeded_and_subsets_are_stratified():
    a, b = tuning.load_split(seed=1, train_size=1000, validation_size=500, test_size=200), \
        tuning.load_split(seed=1, train_size=1000, validation_size=500, test_size=200)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (1000, 500, 200)
    assert set(np.bincount(a.y_val)) == {50} and set(np.bincount(a.y_train)) == {100}
    other = tuning.load_split(seed=2, train_size=1000, validation_size=500, test_size=200)
    assert not np.array_equal(a.x_val, other.x_val)


@pytest.mark.parametrize("name, value", [("train_size", 0), ("train_size", 40_001), ("validation_size", 20_001),
                                         ("test_size", -1), ("train_size", 1.5)])
def test_split_rejects_bad_sizes(name, value):
    with pytest.raises(ValueError, match=f"{name} must be an integer between 1 and"):
        tuning.load_split(seed=0, **{name: value})


def test_subset_keeps_test_set():
    data = tuning.load_split(seed=0, train_size=2000, validation_size=1000, test_size=300)
    small = tuning.subset(data, train_size=500, validation_size=200, seed=0)
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (500, 200, 300)
    assert set(np.bincount(small.y_train)) == {50}
    same = tuning.subset(data, None, None)
    assert same.x_train is data.x_train and same.x_val is data.x_val


# ---------------------------------------------------------------- the search space
def test_search_space_accepts_and_describes():
    space = tuning.search_space(**{**SPACE_ARGS, "batch_sizes": [128, 64]})
    assert space.batch_sizes == (64, 128) and space.optimizers == ("adam", "sgd")
    table = space.describe()
    assert list(table.index) == list(tuning.HYPERPARAMETERS[:1]) + ["batch_size", "optimizer", "dropout", "l2",
                                                                      "augment"]


@pytest.mark.parametrize("change, message", [
    ({"learning_rate_min": 0.1, "learning_rate_max": 0.001},
     r"learning_rate_min \(0.1\) must be a positive number smaller than learning_rate_max \(0.001\); swap them: "
     r"-p learning_rate_min 0.001 -p learning_rate_max 0.1"),
    ({"learning_rate_min": 0.01, "learning_rate_max": 0.01}, "the range is empty; widen it"),
    ({"l2_min": 0, "l2_max": 1e-3}, "l2_min .* both ends must be positive"),
    ({"learning_rate_max": 5.0}, "learning_rate_max must be at most 1"),
    ({"dropout_max": 1.0}, r"dropout_max must be in \(0, 1\)"),
    ({"augment_max": 0.8}, r"augment_max must be in \(0, 0.5\]"),
    ({"optimizers": ["adam", "adagrad"]}, "unknown optimizer.*'adagrad'.*choose among adam, sgd, rmsprop"),
    ({"optimizers": []}, "unknown optimizer"),
    ({"batch_sizes": [64, 64]}, "lists a value twice"),
])
def test_search_space_errors_say_how_to_fix(change, message):
    with pytest.raises(ValueError, match=message):
        tuning.search_space(**{**SPACE_ARGS, **change})


@pytest.mark.parametrize("value, expected", [("64,128, 32", [32, 64, 128]), (256, [256]), ([8, "16"], [8, 16])])
def test_positive_int_list(value, expected):
    assert tuning.positive_int_list("batch_sizes", value) == expected


@pytest.mark.parametrize("value", ["", "64,x", [0, 64], [], "-1", True, 1.5])
def test_positive_int_list_rejects(value):
    with pytest.raises(ValueError, match="batch_sizes"):
        tuning.positive_int_list("batch_sizes", value)


def test_upper_bound():
    check = tuning.upper_bound(0.5)
    assert check("augment_max", "0.2") == 0.2 and check("augment_max", 0.5) == 0.5
    for bad in (0, -0.1, 0.51, "x", None, True):
        with pytest.raises(ValueError, match=r"augment_max must be a number in \(0, 0.5\]"):
            check("augment_max", bad)


def test_project_name_fingerprints_space_and_settings_but_not_budget():
    space = tuning.search_space(**SPACE_ARGS)
    json.dumps(space.as_dict())  # the fingerprint is taken over the space's JSON
    name = tuning.project_name(space, epochs_per_trial=3, seed=0)
    assert name == tuning.project_name(tuning.search_space(**SPACE_ARGS), seed=0, epochs_per_trial=3)
    assert name.startswith("search_") and len(name) == len("search_") + 10
    assert name != tuning.project_name(space, epochs_per_trial=4, seed=0)
    assert name != tuning.project_name(tuning.search_space(**{**SPACE_ARGS, "dropout_max": 0.4}),
                                       epochs_per_trial=3, seed=0)


def test_initial_points():
    assert [tuning.initial_points(n) for n in (1, 2, 3, 8, 30)] == [2, 2, 2, 4, 15]
    with pytest.raises(ValueError, match="max_trials must be a positive integer, got 0"):
        tuning.initial_points(0)


# ---------------------------------------------------------------- a real (tiny) search
class TinyHyperModel(tuning.kt.HyperModel):
    """A small MLP with a searchable learning rate and a batch size passed to fit, like the notebook's."""

    def build(self, hp):
        fh.set_seed(0)
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        model.compile(keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 3e-2, sampling="log")),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [32, 64]), **kwargs)


@pytest.fixture(scope="module")
def tiny():
    return tuning.load_split(seed=0, train_size=300, validation_size=200, test_size=100)


def make_tuner(directory, max_trials, cls=None):
    cls = cls or tuning.BayesianOptimizationWithHistory
    extra = {"num_initial_points": 2} if cls is tuning.BayesianOptimizationWithHistory else {}
    return cls(TinyHyperModel(), objective="val_accuracy", max_trials=max_trials, seed=1, directory=str(directory),
               project_name="tiny", overwrite=False, **extra)


def run_search(tuner, data):
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=2, verbose=0)


def test_search_writes_histories_and_resumes_with_a_larger_budget(tmp_path, tiny):
    tuner = make_tuner(tmp_path, max_trials=2)
    run_search(tuner, tiny)
    first = tuning.completed_trials(tuner)
    assert len(first) == 2, "trials failed (is keras-tuner's tensorboard import worked around?)"
    frame = tuning.trials_frame(tuner)
    assert list(frame.index) == sorted(frame.index, key=lambda t: -frame.loc[t, "val_accuracy"])
    assert {"status", "learning_rate", "batch_size", "val_accuracy", "best_epoch", "epochs", "minutes"} <= set(frame)
    assert (frame["epochs"] == 2).all() and (frame["val_accuracy"] > 0.1).all() and (frame["minutes"] > 0).all()
    history = tuning.trial_history(tuner, first[0].trial_id)
    assert len(history["val_accuracy"]) == 2 and "epoch_time_s" in history
    assert max(history["val_accuracy"]) == pytest.approx(first[0].score)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("tiny/trial_*/trial.json")}

    resumed = make_tuner(tmp_path, max_trials=3)  # same project, larger budget
    assert len(tuning.completed_trials(resumed)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the Gaussian process's proposal stays quiet
        run_search(resumed, tiny)
    assert len(tuning.completed_trials(resumed)) == 3  # exactly one new trial
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "finished trials must not be re-run"
    again = make_tuner(tmp_path, max_trials=3)
    run_search(again, tiny)  # budget spent: nothing runs
    assert len(tuning.completed_trials(again)) == 3 and len(list(tmp_path.glob("tiny/trial_*"))) == 3


def test_same_seed_same_trials(tmp_path, tiny):
    frames = []
    for run in ("a", "b"):
        tuner = make_tuner(tmp_path / run, max_trials=2)
        run_search(tuner, tiny)
        frames.append(tuning.trials_frame(tuner)[["learning_rate", "batch_size", "val_accuracy"]])
    assert frames[0].equals(frames[1])


def test_other_tuners_work_without_tensorboard(tmp_path, tiny):
    tuner = make_tuner(tmp_path, max_trials=1, cls=tuning.RandomSearchWithHistory)
    run_search(tuner, tiny)
    assert len(tuning.completed_trials(tuner)) == 1
    assert tuning.trial_history(tuner, "missing") == {}


def test_plot_hyperparameter_effects(tmp_path, tiny):
    tuner = make_tuner(tmp_path, max_trials=2)
    run_search(tuner, tiny)
    fig = tuning.plot_hyperparameter_effects(tuning.trials_frame(tuner), baseline=0.5,
                                             names=("learning_rate", "batch_size"))
    assert len([ax for ax in fig.axes if ax.has_data()]) == 2
    plt.close(fig)
    import pandas as pd

    frame = pd.DataFrame({"optimizer": ["adam", "sgd"], "dropout": [0.1, 0.2], "val_accuracy": [0.8, 0.7]})
    plt.close(tuning.plot_hyperparameter_effects(frame, names=("optimizer", "dropout")))
    with pytest.raises(ValueError, match="no finished trials"):
        tuning.plot_hyperparameter_effects(frame.assign(val_accuracy=np.nan), names=("dropout",))


# ---------------------------------------------------------------- verdicts and reported numbers
def test_seed_to_seed_verdict_is_paired_by_seed():
    # Per-seed differences +1.0 and +1.5 points: mean +1.25, std 0.35 -> beats, although the tuned mean (0.9175)
    # is inside the unpaired seed-to-seed spread of the baselines (0.90 and 0.92, std 1.4 points).
    win = tuning.seed_to_seed_verdict([0.91, 0.935], [0.90, 0.92])
    assert win["beats"] is True and win["difference"] == pytest.approx(0.0125) and "beats" in win["verdict"]
    assert win["difference_std"] == pytest.approx(0.0035355, abs=1e-6) and win["seeds"] == 2
    assert win["tuned_mean"] == pytest.approx(0.9225) and win["baseline_mean"] == pytest.approx(0.91)
    lose = tuning.seed_to_seed_verdict([0.92, 0.90], [0.90, 0.92])  # differences +2 and -2 points: mean 0
    assert lose["beats"] is False and "does NOT beat" in lose["verdict"]
    worse = tuning.seed_to_seed_verdict([0.89, 0.905], [0.90, 0.92])
    assert worse["beats"] is False and worse["difference"] < 0 and "WORSE" in worse["verdict"]
    one = tuning.seed_to_seed_verdict([0.91], [0.90])
    assert one["beats"] is None and one["difference_std"] is None and "no verdict" in one["verdict"]
    with pytest.raises(ValueError, match="one score per seed"):
        tuning.seed_to_seed_verdict([0.9], [])
    with pytest.raises(ValueError, match="got 1 and 2 scores"):
        tuning.seed_to_seed_verdict([0.9], [0.9, 0.91])


def test_edges_of_the_search_space():
    space = tuning.search_space(1e-4, 1e-2, [64, 128, 256], 0.5, 1e-6, 1e-3, 0.15, ["adam", "rmsprop"])
    winner = {"learning_rate": 0.01, "batch_size": 64, "optimizer": "rmsprop", "dropout": 0.0, "l2": 1.77e-4,
              "augment": 0.0}
    assert space.edges(winner) == {"learning_rate": "upper end 0.01", "dropout": "lower end 0",
                                   "augment": "lower end 0", "batch_size": "smallest choice 64"}
    inside = {"learning_rate": 1e-3, "batch_size": 128, "dropout": 0.25, "l2": 1e-6 * 1.05, "augment": 0.149}
    assert space.edges(inside) == {"l2": "lower end 1e-06", "augment": "upper end 0.15"}
    assert space.edges({**inside, "l2": 1e-5, "augment": 0.1}) == {}
    assert tuning.search_space(1e-4, 1e-2, [128], 0.5, 1e-6, 1e-3, 0.15, ["adam"]).edges({"batch_size": 128}) == {}


def test_parse_reported():
    text = ("> <mark>**Maximum Validation Accuracy Achieved**</mark> : 89.4%\n"
            "> <mark>**Test Loss achieved**</mark>: 0.269255\n")
    assert tuning.parse_reported(text) == {"best_val_accuracy": 0.894, "test_loss": 0.269255}
    assert tuning.parse_reported("nothing here") == {}


def test_seed004_reported_matches_reference():
    from fmnist_helpers import reference

    reported = tuning.seed004_reported()
    assert reported["test_accuracy"] == reference.references_for("seed004_cnn")[0].test_accuracy
    if (reference.SEEDS_DIR / reference.references_for("seed004_cnn")[0].file).is_file():
        assert set(reported) == set(tuning.SEED004_LABELS)
        assert 0 < reported["best_val_accuracy"] < reported["test_accuracy"] < 1 and reported["test_loss"] > 0


# ---------------------------------------------------------------- distributed mode
@pytest.mark.parametrize("env, role", [
    ({}, "single"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000", "KERASTUNER_TUNER_ID": "chief"}, "chief"),
    ({"KERASTUNER_ORACLE_IP": "10.0.0.1", "KERASTUNER_ORACLE_PORT": "8000", "KERASTUNER_TUNER_ID": "tuner3"}, "worker"),
])
def test_distributed_role(env, role):
    assert tuning.distributed_role(env) == role


@pytest.mark.parametrize("env, message", [
    ({"KERASTUNER_ORACLE_PORT": "8000"}, "KERASTUNER_ORACLE_IP is not"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_TUNER_ID": "chief"}, "KERASTUNER_ORACLE_PORT must be"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "99999", "KERASTUNER_TUNER_ID": "chief"},
     "KERASTUNER_ORACLE_PORT must be"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}, "KERASTUNER_TUNER_ID must be set"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000", "KERASTUNER_TUNER_ID": "mischief"},
     "contains 'chief'"),
])
def test_distributed_role_errors(env, message):
    with pytest.raises(ValueError, match=message):
        tuning.distributed_role(env)


def test_notebook_prefix_ends_with_the_search():
    notebook = paths.NOTEBOOKS_DIR / f"{tuning.NOTEBOOK}.ipynb"
    prefix = tuning.notebook_prefix(notebook)
    assert tuning.SEARCH_MARKER in prefix.cells[-1].source
    assert any("parameters" in c.metadata.get("tags", []) for c in prefix.cells)
    assert not any("train_and_record" in c.source or "fh.train_and_record" in c.source for c in prefix.cells)
    with pytest.raises(ValueError, match="has no code cell containing"):
        tuning.notebook_prefix(notebook, marker="no such code")


def test_worker_command_refuses_without_worker_environment(monkeypatch, capsys):
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)
    assert tuning.main(["worker", "-p", "max_trials", "2"]) == 2
    assert "not a worker" in capsys.readouterr().err
    assert tuning.main([]) == 2 and tuning.main(["worker", "--help"]) == 0
