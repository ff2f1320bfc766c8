"""Profiles, quick mode, validators, seeding and the stamp."""
from __future__ import annotations

import random

import numpy as np
import pytest

import fmnist_helpers as fh
from fmnist_helpers import config

PROFILES = {"quick": {"epochs": 1, "models": "all"}, "default": {"epochs": 5, "models": "all"},
            "full": {"epochs": 50, "models": "all"}}
RULES = {"epochs": fh.positive_int, "models": fh.subset_of(["cnn", "mlp"])}


@pytest.mark.parametrize("validator, good, expected", [
    (fh.positive_int, 3, 3), (fh.positive_int, "50", 50), (fh.non_negative_int, 0, 0),
    (fh.positive_float, 1e-3, 1e-3), (fh.positive_float, "0.02", 0.02), (fh.fraction, 0.3, 0.3),
    (fh.int_list, "0,1,2", [0, 1, 2]), (fh.int_list, 4, [4]),
])
def test_validators_accept(validator, good, expected):
    assert validator("x", good) == expected


@pytest.mark.parametrize("validator, bad, message", [
    (fh.positive_int, -3, "x must be a positive integer, got -3"), (fh.positive_int, 2.5, "positive integer"),
    (fh.positive_int, True, "positive integer"), (fh.non_negative_int, -1, ">= 0"),
    (fh.positive_float, 0, "positive number"), (fh.positive_float, "abc", "positive number"),
    (fh.positive_float, float("inf"), "positive number"), (fh.fraction, 1.0, r"\[0.0, 1.0\)"),
    (fh.int_list, [], "non-empty"), (fh.int_list, [1, -1], r"x\[1\]"),
])
def test_validators_reject_with_clear_message(validator, bad, message):
    with pytest.raises(ValueError, match=message):
        validator("x", bad)


def test_one_of_and_subset_of_list_valid_names():
    assert fh.one_of(["a", "b"])("opt", "a") == "a"
    with pytest.raises(ValueError, match="opt must be one of 'a', 'b'; got 'c'"):
        fh.one_of(["a", "b"])("opt", "c")
    pick = fh.subset_of(["cnn", "mlp"])
    assert pick("models", "all") == ["cnn", "mlp"] and pick("models", "mlp, cnn") == ["mlp", "cnn"]
    with pytest.raises(ValueError, match="unknown 'rnn'; valid names are cnn, mlp"):
        pick("models", ["rnn"])


def test_resolve_profile_overrides_and_quick_mode(monkeypatch, capsys):
    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    cfg = fh.resolve_parameters("03_cnn", PROFILES, RULES, profile="full", seed=3, epochs=None, models="cnn")
    assert (cfg.profile, cfg.epochs, cfg.models, cfg.seed) == ("full", 50, ["cnn"], 3)
    assert cfg.overrides == {"models": ["cnn"], "seed": 3}
    assert "papermill notebooks/03_cnn.ipynb out.ipynb -p profile full -p models 'cnn' -p seed 3" == cfg.command()
    assert "profile full · seed 3" in capsys.readouterr().out
    monkeypatch.setenv("FMNIST_QUICK", "1")
    assert fh.resolve_parameters("03_cnn", PROFILES, RULES, profile="full", epochs=None, models=None).epochs == 1
    assert config.active_profile() == "quick"


def test_resolve_rejects_bad_values(monkeypatch):
    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    with pytest.raises(ValueError, match="epochs must be a positive integer, got -3"):
        fh.resolve_parameters("03_cnn", PROFILES, RULES, epochs=-3, models=None)
    with pytest.raises(ValueError, match="profile must be one of"):
        fh.resolve_parameters("03_cnn", PROFILES, RULES, profile="fast", epochs=None, models=None)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        fh.resolve_parameters("03_cnn", PROFILES, RULES, seed=-1, epochs=None, models=None)
    with pytest.raises(ValueError, match="no validation rule"):
        fh.resolve_parameters("03_cnn", PROFILES, RULES, epochs=None, models=None, typo=1)


class FakeShell:
    """What ``IPython.get_ipython()`` returns in a kernel: ``In`` holds the source of every executed cell."""

    def __init__(self, *cells: str):
        self.user_ns = {"In": ["", *cells]}


def test_injected_parameters_are_read_from_papermills_cell(monkeypatch):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell("import numpy", "# Parameters\nepochs = 3\nmodels = 'a'\n"))
    assert config.injected_parameters() == {"epochs", "models"}
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell("epochs = 3"))  # no papermill cell: Run All
    assert config.injected_parameters() == set()
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # plain Python
    assert config.injected_parameters() == set()


def test_papermill_parameter_the_notebook_does_not_offer_stops_the_run(monkeypatch):
    """``papermill ... -p epoch 50`` (a typo) would define a variable nothing reads: the run must stop, not ignore it."""
    import IPython

    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell("# Parameters\nepoch = 50\n"))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) epoch: 03_cnn has no such parameter, so -p would "
                                         r"be ignored\. Its parameters are: .*\bepochs\b"):
        fh.resolve_parameters("03_cnn", PROFILES, RULES, epochs=None, models=None)
    # Every name of the notebook's parameters cell is offered, even one this call does not pass (such as width).
    monkeypatch.setattr(IPython, "get_ipython", lambda: FakeShell("# Parameters\nepochs = 2\nwidth = 16\nseed = 1\n"))
    assert fh.resolve_parameters("03_cnn", PROFILES, RULES, epochs=2, models=None).epochs == 2


def test_same_seed_same_initial_weights():
    import keras

    def build():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dropout(0.5)])

    fh.set_seed(7)
    first = [w.copy() for w in build().get_weights()] + [random.random(), np.random.rand()]
    fh.set_seed(7)
    second = [w.copy() for w in build().get_weights()] + [random.random(), np.random.rand()]
    fh.set_seed(8)
    third = build().get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], third[0])


def test_machine_info_and_versions():
    info = fh.machine_info()
    assert info["cores"] >= 1 and isinstance(info["bf16"], bool) and info["cpu"]
    assert "tensorflow" in config.library_versions()


def test_int_between_names_the_bounds_and_why():
    check = fh.int_between(40, 10_000, "t-SNE needs it")
    assert check("tsne_samples", "300") == 300 and check("tsne_samples", 40) == 40
    with pytest.raises(ValueError, match=r"tsne_samples must be between 40 and 10,000 \(t-SNE needs it\), got 3"):
        check("tsne_samples", 3)
    with pytest.raises(ValueError, match="must be a positive integer"):
        check("tsne_samples", -3)
