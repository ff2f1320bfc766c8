"""fmnist_helpers.optimizers: optimizers by name, grids, picking rates, initial weights, targets, bands, verdicts."""
from __future__ import annotations

import math

import keras
import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fmnist_helpers import optimizers, training  # noqa: E402

VALID = "sgd, momentum, nesterov, rmsprop, adagrad, adam, adamax, nadam, adamw"


def tiny_model(seed: int = 0, optimizer: str = "sgd") -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.make_optimizer(optimizer, 0.01), loss="sparse_categorical_crossentropy")
    return model


# ---------------------------------------------------------------- make_optimizer
@pytest.mark.parametrize("name, cls", [
    ("sgd", keras.optimizers.SGD), ("momentum", keras.optimizers.SGD), ("nesterov", keras.optimizers.SGD),
    ("rmsprop", keras.optimizers.RMSprop), ("adagrad", keras.optimizers.Adagrad), ("adam", keras.optimizers.Adam),
    ("adamax", keras.optimizers.Adamax), ("nadam", keras.optimizers.Nadam), ("adamw", keras.optimizers.AdamW),
])
def test_make_optimizer_every_name(name, cls):
    optimizer = optimizers.make_optimizer(name, 0.02)
    assert type(optimizer) is cls
    assert float(optimizer.learning_rate) == pytest.approx(0.02)


def test_momentum_and_nesterov_settings():
    assert optimizers.make_optimizer("sgd", 0.1).momentum == 0.0
    momentum = optimizers.make_optimizer("momentum", 0.1)
    nesterov = optimizers.make_optimizer("nesterov", 0.1)
    assert momentum.momentum == nesterov.momentum == 0.9
    assert not momentum.nesterov and nesterov.nesterov


def test_each_call_gives_a_fresh_optimizer_and_overrides_apply():
    assert optimizers.make_optimizer("adam", 1e-3) is not optimizers.make_optimizer("adam", 1e-3)
    assert optimizers.make_optimizer("adamw", 1e-3, weight_decay=0.01).weight_decay == pytest.approx(0.01)
    assert optimizers.make_optimizer("adamw", 1e-3).weight_decay == pytest.approx(0.004)  # Keras' default


def test_schedule_is_accepted():
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=10)
    optimizer = optimizers.make_optimizer("adam", schedule)
    assert float(optimizer.learning_rate) == pytest.approx(0.1)  # step 0 of the schedule


@pytest.mark.parametrize("name", ["foo", "Adam", "", None, 3])
def test_unknown_name_lists_valid_names(name):
    with pytest.raises(ValueError, match=f"unknown optimizer {name!r}; valid names are {VALID}$"):
        optimizers.make_optimizer(name, 1e-3)


@pytest.mark.parametrize("rate", [0, -1e-3, float("nan"), float("inf"), "fast", None, True])
def test_bad_learning_rate(rate):
    with pytest.raises(ValueError, match="learning_rate must be a positive number or a keras LearningRateSchedule"):
        optimizers.make_optimizer("sgd", rate)


def test_learning_rate_as_string_number():
    assert float(optimizers.make_optimizer("sgd", "0.05").learning_rate) == pytest.approx(0.05)


def test_names_are_consistent():
    assert optimizers.OPTIMIZER_NAMES == tuple(VALID.split(", "))
    assert set(optimizers.GRID_CENTERS) == set(optimizers.OPTIMIZER_COLORS) == set(optimizers.OPTIMIZER_NAMES)
    assert all(center in optimizers.LADDER for center in optimizers.GRID_CENTERS.values())


# ---------------------------------------------------------------- grids and picking a rate
@pytest.mark.parametrize("points", [1, 2, 3, 4, 5])
def test_learning_rate_grid(points):
    for name in optimizers.OPTIMIZER_NAMES:
        grid = optimizers.learning_rate_grid(name, points)
        assert len(grid) == points and grid == sorted(grid)
        assert optimizers.GRID_CENTERS[name] in grid
        assert all(2.9 < b / a < 3.4 for a, b in zip(grid, grid[1:]))


def test_grid_values_are_round():
    assert optimizers.learning_rate_grid("adam", 4) == [3e-4, 1e-3, 3e-3, 1e-2]
    assert optimizers.learning_rate_grid("adam", 5) == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    assert optimizers.learning_rate_grid("sgd", 2) == [1e-1, 3e-1]
    assert optimizers.learning_rate_grid("sgd", 5) == [1e-2, 3e-2, 1e-1, 3e-1, 1.0]


@pytest.mark.parametrize("points, message", [(0, "points must be a positive integer"),
                                             (40, "points must be at most")])
def test_bad_grid_points(points, message):
    with pytest.raises(ValueError, match=message):
        optimizers.learning_rate_grid("adam", points)


def test_describe_optimizers():
    table = optimizers.describe_optimizers(["sgd", "nesterov"], points=2)
    assert list(table.index) == ["sgd", "nesterov"]
    assert table.loc["nesterov", "keras class"] == "keras.optimizers.SGD"
    assert "nesterov=True" in table.loc["nesterov", "fixed settings"]
    with pytest.raises(ValueError, match="valid names are"):
        optimizers.describe_optimizers(["sgd", "lion"])


def sweep_frame():
    return pd.DataFrame({
        "optimizer": ["sgd"] * 3 + ["adam"] * 3 + ["adam"],
        "learning_rate": [0.01, 0.03, 0.1, 1e-4, 3e-4, 1e-3, 1e-3],
        "final_val_accuracy": [0.70, 0.80, 0.80, 0.60, 0.85, 0.90, 0.70],  # adam 1e-3 averages to 0.80
    })


def test_pick_learning_rates():
    chosen = optimizers.pick_learning_rates(sweep_frame(), metric="final_val_accuracy")
    assert list(chosen.index) == ["sgd", "adam"]
    assert chosen.loc["sgd", "learning_rate"] == 0.03  # a tie goes to the smaller rate
    assert not chosen.loc["sgd", "on_edge"]
    assert chosen.loc["adam", "learning_rate"] == 3e-4  # mean over the two adam 1e-3 runs is 0.80 < 0.85
    assert chosen.loc["adam", "final_val_accuracy"] == pytest.approx(0.85)


def test_pick_flags_edges_and_ignores_nan():
    frame = pd.DataFrame({"optimizer": ["sgd"] * 3, "learning_rate": [0.01, 0.03, 0.1],
                          "final_val_accuracy": [0.5, np.nan, 0.9]})
    chosen = optimizers.pick_learning_rates(frame, metric="final_val_accuracy")
    assert chosen.loc["sgd", "learning_rate"] == 0.1 and chosen.loc["sgd", "on_edge"]


def test_pick_errors():
    with pytest.raises(ValueError, match="needs the columns"):
        optimizers.pick_learning_rates(pd.DataFrame({"optimizer": ["sgd"]}))
    with pytest.raises(ValueError, match="sweep is empty"):
        optimizers.pick_learning_rates(pd.DataFrame(columns=["optimizer", "learning_rate", "best_val_accuracy"]))


# ---------------------------------------------------------------- initial weights and reuse
def test_initial_weights_roundtrip(isolated_outputs):
    path = optimizers.initial_weights_path("quick", "tiny", 3)
    assert path == isolated_outputs / "quick" / "05_optimizers" / "initial_tiny_seed3.weights.h5"
    saved = tiny_model(seed=3)
    training.save_weights_atomically(saved, path)
    assert path.is_file() and not list(path.parent.glob(".*part*"))
    other = tiny_model(seed=4, optimizer="adam")
    assert optimizers.weights_fingerprint(other) != optimizers.weights_fingerprint(saved)
    other.load_weights(path)
    assert optimizers.weights_fingerprint(other) == optimizers.weights_fingerprint(saved)
    assert len(optimizers.weights_fingerprint(other)) == 16


def test_initial_weights_errors(tmp_path):
    with pytest.raises(ValueError, match="tag must be"):
        optimizers.initial_weights_path("quick", "a/b", 0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        optimizers.initial_weights_path("quick", "mlp", -1)
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        training.save_weights_atomically(tiny_model(), tmp_path / "w.h5")


# ---------------------------------------------------------------- targets and per-run metrics
HISTORY = {"val_accuracy": [0.5, 0.7, 0.65, 0.9], "epoch_time_s": [3.0, 1.0, 1.0, 2.0], "loss": [1.0, 0.7, 0.6, 0.5]}


def test_cumulative_seconds_and_targets():
    np.testing.assert_allclose(optimizers.cumulative_seconds(HISTORY), [3, 4, 5, 7])
    assert optimizers.epochs_to_target(HISTORY, 0.7) == 2
    assert optimizers.time_to_target(HISTORY, 0.7) == 4.0
    assert optimizers.time_to_target(HISTORY, 0.8) == 7.0
    assert optimizers.time_to_target(HISTORY, 0.5) == 3.0
    assert math.isnan(optimizers.time_to_target(HISTORY, 0.95))
    assert math.isnan(optimizers.epochs_to_target(HISTORY, 0.95))


def test_missing_history_key():
    with pytest.raises(ValueError, match="history has no 'epoch_time_s'"):
        optimizers.cumulative_seconds({"loss": [1.0]})


def test_run_metrics():
    record = {"metrics": {"test_accuracy": 0.8, "final_val_accuracy": 0.9, "best_val_accuracy": 0.9,
                          "final_train_accuracy": 0.95}, "history": HISTORY}
    metrics = optimizers.run_metrics(record, target=0.7)
    assert metrics["gap"] == pytest.approx(0.05)
    assert metrics["seconds_to_target"] == 4.0 and metrics["epochs_to_target"] == 2
    assert metrics["train_seconds"] == 7.0 and metrics["final_loss"] == 0.5


# ---------------------------------------------------------------- bands over seeds
def test_seed_band_by_epoch_and_seconds():
    a = {"val_accuracy": [0.5, 0.7, 0.8], "epoch_time_s": [2.0, 1.0, 1.0]}
    b = {"val_accuracy": [0.7, 0.9], "epoch_time_s": [4.0, 1.0]}
    xs, mean, std = optimizers.seed_band([a, b], "val_accuracy")
    np.testing.assert_allclose(xs, [1, 2])
    np.testing.assert_allclose(mean, [0.6, 0.8])
    np.testing.assert_allclose(std, [np.std([0.5, 0.7], ddof=1)] * 2)
    xs, _, _ = optimizers.seed_band([a, b], "val_accuracy", x="seconds")
    np.testing.assert_allclose(xs, [3.0, 4.0])  # mean of (2, 4) and of (3, 5)
    _, _, std = optimizers.seed_band([a], "val_accuracy")
    np.testing.assert_allclose(std, 0)


def test_seed_band_errors():
    with pytest.raises(ValueError, match="histories is empty"):
        optimizers.seed_band([], "loss")
    with pytest.raises(ValueError, match="x must be 'epoch' or 'seconds'"):
        optimizers.seed_band([HISTORY], "loss", x="steps")


def test_plots_draw():
    fig, ax = plt.subplots()
    band = optimizers.seed_band([HISTORY, HISTORY], "val_accuracy")
    optimizers.plot_bands(ax, {"adam": band, "sgd": band})
    assert len(ax.lines) == 2
    sweep = sweep_frame()
    chosen = optimizers.pick_learning_rates(sweep, metric="final_val_accuracy")
    ax = optimizers.plot_sweep(sweep, chosen, metric="final_val_accuracy")
    assert ax.get_xscale() == "log" and len(ax.lines) == 4  # a line and a star per optimizer
    assert ax.get_xlabel() == "learning rate"
    plt.close("all")


def test_sweep_plot_names_the_rates_that_failed_to_train_instead_of_drawing_them():
    sweep = pd.DataFrame({"optimizer": ["sgd"] * 3 + ["adam"] * 2, "learning_rate": [0.1, 0.3, 1.0, 1e-3, 1e-2],
                          "final_val_accuracy": [0.85, 0.86, 0.10, 0.84, np.nan]})
    chosen = optimizers.pick_learning_rates(sweep, metric="final_val_accuracy")
    ax = optimizers.plot_sweep(sweep, chosen, metric="final_val_accuracy")
    assert list(ax.lines[0].get_xdata()) == [0.1, 0.3] and list(ax.lines[2].get_xdata()) == [1e-3]
    assert ax.get_xlabel() == "learning rate\nnot drawn, below 0.2: sgd at 1 (0.10); adam at 0.01 (nan)"
    assert ax.get_ylim()[0] > 0.5
    plt.close("all")


# ---------------------------------------------------------------- verdicts
def test_combined_std():
    assert optimizers.combined_std(0.003, 0.004) == pytest.approx(0.005)
    assert math.isnan(optimizers.combined_std(0.003, float("nan")))


def test_verdict_against_best():
    means = pd.Series({"adam": 0.88, "nadam": 0.877, "sgd": 0.85, "adagrad": np.nan})
    stds = pd.Series({"adam": 0.004, "nadam": 0.003, "sgd": 0.002, "adagrad": np.nan})
    verdict = optimizers.verdict_against_best(means, stds)
    assert verdict["verdict"].to_dict() == {"adam": "best", "nadam": "tied with best", "sgd": "behind",
                                            "adagrad": "no value"}
    assert verdict.loc["nadam", "combined_std"] == pytest.approx(0.005)
    one_seed = optimizers.verdict_against_best(means.drop("adagrad"), pd.Series(np.nan, index=means.index))
    assert set(one_seed["verdict"]) == {"best", "no verdict (one seed)"}
    with pytest.raises(ValueError, match="means is empty"):
        optimizers.verdict_against_best(pd.Series(dtype=float), pd.Series(dtype=float))


def test_pairwise_verdicts():
    means = pd.Series({"sgd": 0.85, "adam": 0.88, "nadam": 0.877})
    stds = pd.Series({"sgd": 0.002, "adam": 0.004, "nadam": 0.003})
    table = optimizers.pairwise_verdicts(means, stds)
    assert list(table.index) == ["adam", "nadam", "sgd"]
    assert table.at["adam", "sgd"] == ">" and table.at["sgd", "adam"] == "<"
    assert table.at["adam", "nadam"] == "≈" == table.at["nadam", "adam"]
    assert table.at["adam", "adam"] == ""
    assert optimizers.pairwise_verdicts(means, pd.Series(np.nan, index=means.index)).at["adam", "sgd"] == "?"


def test_mean_pm_std():
    assert optimizers.mean_pm_std(0.87123, 0.0031) == "0.8712 ± 0.0031"
    assert optimizers.mean_pm_std(0.87123, float("nan")) == "0.8712 ± n/a"
    assert optimizers.mean_pm_std(float("nan"), 0.1) == "not reached"
    assert optimizers.mean_pm_std(12.34, 1.0, "{:.1f}") == "12.3 ± 1.0"


# ---------------------------------------------------------------- step timer
def test_time_steps():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)).astype("float32"), rng.integers(0, 2, 40)
    models = {"sgd": tiny_model(optimizer="sgd"), "adam": tiny_model(optimizer="adam")}
    table = optimizers.time_steps(models, x, y, batch_size=8, steps=3, rounds=2)
    assert list(table.index) == ["sgd", "adam"]
    assert (table["ms_per_step"] > 0).all() and (table["cpu_ms_per_step"] >= 0).all()
    assert (table["ms_per_step_iqr"] >= 0).all()
    with pytest.raises(ValueError, match="need at least batch_size=64 images"):
        optimizers.time_steps(models, x, y, batch_size=64)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        optimizers.time_steps(models, x, y, batch_size=8, rounds=0)
