"""Notebook 03 in quick mode: records, resume after a real interruption, determinism, bad parameters."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import papermill as pm
import pytest

from fmnist_helpers import paths

NOTEBOOK = paths.NOTEBOOKS_DIR / "03_cnn.ipynb"


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("FMNIST_QUICK", "1")


def execute(tmp_path, **parameters):
    return pm.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), parameters=parameters,
                               kernel_name="python3", progress_bar=False, cwd=str(tmp_path))


def records(output_dir):
    folder = output_dir / "quick" / "results" / "03_cnn"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_quick_run_records_every_model(tmp_path, isolated_outputs):
    execute(tmp_path, epochs=1)
    found = records(isolated_outputs)
    assert set(found) == {f"{m}__seed0.json" for m in ("seed000_cnn", "seed003_cnn", "workbook_cnn")}
    for record in found.values():
        assert record["epochs_run"] == 1 and record["metrics"]["test_accuracy"] > 0.1 and record["images_per_s"] > 0
        assert record["command"].startswith("FMNIST_QUICK=1 papermill notebooks/03_cnn.ipynb")
        assert (isolated_outputs / "quick" / "models" / f"03_cnn__{record['model']}__seed0.keras").is_file()
    assert (isolated_outputs / "quick" / "figures" / "03_accuracy_vs_cost.png").is_file()


def test_same_seed_gives_same_metrics(tmp_path, monkeypatch):
    results = []
    for run in ("a", "b"):
        monkeypatch.setenv("FMNIST_OUTPUT_DIR", str(tmp_path / run))
        (tmp_path / run).mkdir()
        execute(tmp_path / run, models="seed003_cnn", epochs=1, seed=3)
        results.append(records(tmp_path / run)["seed003_cnn__seed3.json"])
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["history"]["loss"] == results[1]["history"]["loss"]


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
])
def test_bad_parameters_fail_clearly(tmp_path, name, value, message):
    with pytest.raises(pm.PapermillExecutionError, match=message):
        execute(tmp_path, **{name: value})
