"""Notebook 07 (hyperparameter search) in quick mode: records and figures, a search that resumes after a larger
budget and after a real kill, clear errors for a bad search space, and (slow, optional) distributed mode with a
chief and a worker over 127.0.0.1."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from notebook_support import execute_notebook, printed, quick_run as run_quick, resolve_notebook_parameters

from fmnist_helpers import paths

NOTEBOOK = "07_hyperparameter_search"
FIGURES = ("07_hyperparameter_effects", "07_search_progress", "07_best_trial_curves", "07_tuned_vs_untuned_curves")
SESSION = re.compile(r"(\d+) new trial\(s\) in this session, (\d+) reloaded; (\d+) of (\d+) finished")


def execute(cwd: Path, **parameters):
    return execute_notebook(NOTEBOOK, cwd, **parameters)


def session(nb) -> tuple[int, int, int, int]:
    """(new trials, reloaded trials, finished trials, budget) as printed by the search cell."""
    found = SESSION.findall(printed(nb))
    assert len(found) == 1, "the search cell should print one session line"
    return tuple(int(n) for n in found[0])


def trial_files(profile_dir: Path) -> list[Path]:
    return sorted(profile_dir.glob("tuner/search_*/trial_*/trial.json"))


def records(profile_dir: Path) -> dict[str, dict]:
    folder = profile_dir / "results" / NOTEBOOK
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("FMNIST_QUICK", "1")
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run with the quick profile's budget (two trials of one epoch); returns (outputs, notebook)."""
    return run_quick(tmp_path_factory, NOTEBOOK)


def test_quick_run_searches_two_trials_and_records_both_models(quick_run):
    out, nb = quick_run
    quick = out / "quick"
    assert session(nb) == (2, 0, 2, 2)
    trials = [json.loads(p.read_text()) for p in trial_files(quick)]
    assert len(trials) == 2 and {t["status"] for t in trials} == {"COMPLETED"}
    for trial in trials:
        assert set(trial["hyperparameters"]["values"]) == {"batch_size", "learning_rate", "optimizer", "dropout",
                                                           "l2", "augment"}
    histories = sorted(quick.glob("tuner/search_*/trial_*/history.csv"))
    assert len(histories) == 2 and all(len(p.read_text().splitlines()) == 2 for p in histories)  # header + 1 epoch
    found = records(quick)
    assert set(found) == {"search__seed0.json", "seed004_cnn__seed0.json", "seed004_cnn_untuned__seed0.json"}
    search = found.pop("search__seed0.json")
    assert search["metrics"]["trials_finished"] == 2 and 0.1 < search["metrics"]["best_val_accuracy"] <= 1
    assert search["wall_time_s"] > 0 and search["params"]["search_project"].startswith("search_")
    for record in found.values():
        assert record["notebook"] == NOTEBOOK and record["profile"] == "quick" and record["epochs_run"] == 2
        assert 0.1 < record["metrics"]["test_accuracy"] <= 1, f"{record['model']} is not above chance"
        assert {"best_val_accuracy", "final_val_accuracy", "test_loss"} <= set(record["metrics"])
        assert record["params"]["split"] == "40k/20k/10k" and record["params"]["search_project"].startswith("search_")
        assert record["command"].startswith("FMNIST_QUICK=1 papermill notebooks/07_hyperparameter_search.ipynb")
    assert found["seed004_cnn__seed0.json"]["params"]["role"] == "tuned"
    assert found["seed004_cnn_untuned__seed0.json"]["params"]["learning_rate"] == 1e-3
    assert sorted(p.stem for p in (quick / "figures").glob("07_*.png")) == sorted(FIGURES)
    text = printed(nb)
    assert "no verdict: with one seed" in text  # quick mode trains one seed of each


def test_larger_budget_killed_mid_search_resumes_without_rerunning_trials(quick_run, tmp_path, monkeypatch):
    """From the quick run's finished search (2 trials), raise the budget to 5, kill papermill and its kernel
    after the third trial, then run again: the finished trials are reloaded, never run again."""
    out = tmp_path / "outputs"
    shutil.copytree(quick_run[0], out)
    monkeypatch.setenv("FMNIST_OUTPUT_DIR", str(out))
    quick = out / "quick"
    before = {p.relative_to(out): p.stat().st_mtime_ns for p in trial_files(quick)}
    recorded = {name: r["finished_at"] for name, r in records(quick).items()}
    command = [sys.executable, "-m", "papermill", str(paths.NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb"),
               str(tmp_path / "killed.ipynb"), "-p", "max_trials", "5"]
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def completed() -> int:
        count = 0
        for path in trial_files(quick):
            try:
                count += json.loads(path.read_text())["status"] == "COMPLETED"
            except (OSError, ValueError, KeyError):
                pass  # being written
        return count

    deadline = time.time() + 300
    while time.time() < deadline and completed() < 3 and process.poll() is None:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # papermill and its kernel, in the middle of the search
    process.wait()
    done_before = completed()
    assert 3 <= done_before < 5, "kill the search after its third trial and before its last"
    assert {n: r["finished_at"] for n, r in records(quick).items()} == recorded, "nothing recorded mid-search"
    nb = execute(tmp_path, max_trials=5)
    assert session(nb) == (5 - done_before, done_before, 5, 5)
    after = {p.relative_to(out): p.stat().st_mtime_ns for p in trial_files(quick)}
    assert len(after) == 5 and {k: after[k] for k in before} == before, "finished trials must not run again"
    assert set(records(quick)) == {"search__seed0.json", "seed004_cnn__seed0.json", "seed004_cnn_untuned__seed0.json"}


@pytest.mark.parametrize("parameters, message", [
    ({"max_trials": 0}, "max_trials must be a positive integer, got 0"),
    ({"learning_rate_min": 0.1, "learning_rate_max": 0.001},
     r"learning_rate_min \(0.1\) must be a positive number smaller than learning_rate_max \(0.001\); swap them"),
    ({"optimizers": "adam,adagrad"}, "optimizers: unknown 'adagrad'; valid names are adam, sgd, rmsprop"),
    ({"batch_sizes": "64,0"}, r"batch_sizes\[1\] must be a positive integer, got 0"),
])
def test_bad_search_space_fails_clearly(parameters, message):
    with pytest.raises(ValueError, match=message):
        resolve_notebook_parameters(NOTEBOOK, **parameters)


# ---------------------------------------------------------------- distributed mode (slow, optional)
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(os.environ.get("FMNIST_SLOW_TESTS") != "1", reason="slow: set FMNIST_SLOW_TESTS=1")
def test_distributed_chief_and_worker_over_loopback(tmp_path, isolated_outputs):
    """The README's commands on one machine: the chief runs the notebook and serves the oracle, one worker
    (``python -m fmnist_helpers.tuning worker``) trains both trials, then the chief retrains and records."""
    port = str(free_port())
    base = {**os.environ, "FMNIST_QUICK": "1", "FMNIST_OUTPUT_DIR": str(isolated_outputs),
            "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    chief = subprocess.Popen([sys.executable, "-m", "papermill", str(paths.NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb"),
                              str(tmp_path / "chief.ipynb"), "-p", "max_trials", "2"], cwd=tmp_path,
                             env={**base, "KERASTUNER_TUNER_ID": "chief"}, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        worker = subprocess.run([sys.executable, "-m", "fmnist_helpers.tuning", "worker", "-p", "max_trials", "2",
                                 "--output", str(tmp_path / "worker.ipynb")], cwd=tmp_path,
                                env={**base, "KERASTUNER_TUNER_ID": "tuner0"}, capture_output=True, text=True,
                                timeout=900)
        assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
        chief_output = chief.communicate(timeout=900)[0]
        assert chief.returncode == 0, chief_output[-3000:]
    finally:
        if chief.poll() is None:
            os.killpg(chief.pid, signal.SIGKILL)
    import nbformat

    worker_nb = nbformat.read(tmp_path / "worker.ipynb", as_version=4)
    assert "worker done" in printed(worker_nb) and "train_and_record" not in "".join(c.source for c in worker_nb.cells)
    chief_nb = nbformat.read(tmp_path / "chief.ipynb", as_version=4)
    assert session(chief_nb) == (2, 0, 2, 2)  # the chief's oracle holds both trials the worker ran
    quick = isolated_outputs / "quick"
    assert {json.loads(p.read_text())["status"] for p in trial_files(quick)} == {"COMPLETED"}
    assert len(trial_files(quick)) == 2 and list((quick / "tuner").glob("search_*/tuner0.json"))
    assert set(records(quick)) == {"search__seed0.json", "seed004_cnn__seed0.json", "seed004_cnn_untuned__seed0.json"}
