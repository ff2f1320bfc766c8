"""Notebook 05 in quick mode: every run is recorded with its role and settings, a re-run reuses them, and unknown
optimizer names or bad parameters stop the notebook with a clear message."""
from __future__ import annotations

import json

import pytest
from notebook_support import execute_notebook, resolve_notebook_parameters

from fmnist_helpers import optimizers, paths

NOTEBOOK = paths.NOTEBOOKS_DIR / "05_optimizers.ipynb"
VALID = ", ".join(optimizers.OPTIMIZER_NAMES)


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("FMNIST_QUICK", "1")


def execute(tmp_path, **parameters):
    return execute_notebook(NOTEBOOK.stem, tmp_path, **parameters)


def records(output_dir):
    folder = output_dir / "quick" / "results" / "05_optimizers"
    return {p.name[:-len("__seed0.json")]: json.loads(p.read_text()) for p in sorted(folder.glob("*__seed0.json"))}


def test_quick_run_records_every_run_and_reuses_them(tmp_path, isolated_outputs):
    names = ["adam", "adamw"]  # the quick profile's optimizers
    execute(tmp_path)
    found = records(isolated_outputs)
    sweep = {f"{n}_lr{lr:g}" for n in names for lr in optimizers.learning_rate_grid(n, 2)}
    schedules = {f"{n}_{s}" for n in names for s in ("plateau", "cosine")}
    adam_rate = found["adam"]["params"]["learning_rate"]
    same_rate = {"adamw_at_adam_rate"} if found["adamw"]["params"]["learning_rate"] != adam_rate else set()
    assert set(found) == sweep | set(names) | schedules | same_rate
    roles = {"sweep", "final", "schedule"} | ({"same_rate"} if same_rate else set())
    assert {r["params"]["role"] for r in found.values()} == roles
    for model in same_rate:  # AdamW again at Adam's rate, so that only the weight decay differs
        assert found[model]["params"]["optimizer"] == "adamw" and found[model]["params"]["learning_rate"] == adam_rate
    assert len({r["params"]["initial_weights"] for r in found.values()}) == 1  # one starting point for every run
    for model, record in found.items():
        assert record["epochs_run"] == 1 and record["metrics"]["test_accuracy"] > 0.1
        assert record["params"]["optimizer"] in names and len(record["history"]["epoch_time_s"]) == 1
        assert record["command"].startswith("FMNIST_QUICK=1 papermill notebooks/05_optimizers.ipynb")
    for name in names:  # the final run uses the rate with the best validation accuracy in the sweep
        sweep_runs = [found[f"{name}_lr{lr:g}"] for lr in optimizers.learning_rate_grid(name, 2)]
        best = max(sweep_runs, key=lambda r: (r["metrics"]["final_val_accuracy"], -r["params"]["learning_rate"]))
        assert found[name]["params"]["learning_rate"] == best["params"]["learning_rate"]
        assert found[f"{name}_cosine"]["params"]["learning_rate"] == best["params"]["learning_rate"]
    assert (isolated_outputs / "quick" / "05_optimizers" / "initial_mlp256-128_seed0.weights.h5").is_file()
    figures = sorted(p.name for p in (isolated_outputs / "quick" / "figures").glob("05_*.png"))
    assert figures == ["05_curves_epochs_and_seconds.png", "05_learning_rate_sweep.png", "05_schedules.png"]

    execute(tmp_path)  # a re-run reloads every finished run instead of training it again
    again = records(isolated_outputs)
    assert {m: r["finished_at"] for m, r in again.items()} == {m: r["finished_at"] for m, r in found.items()}
    assert again == found


@pytest.mark.parametrize("name, value, message", [
    ("optimizers", "sgd,foo", f"optimizers: unknown 'foo'; valid names are {VALID}"),
    ("sweep_points", 0, "sweep_points must be a positive integer, got 0"),
    ("target_accuracy", 1.5, r"target_accuracy must be a number in \[0.0, 1.0\), got 1.5"),
])
def test_bad_parameters_fail_clearly(name, value, message):
    with pytest.raises(ValueError, match=message):
        resolve_notebook_parameters(NOTEBOOK.stem, **{name: value})
