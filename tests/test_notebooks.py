"""Notebooks executed with papermill in quick mode: records and figures appear, bad parameters fail clearly."""
from __future__ import annotations

import subprocess
import time

import papermill as pm
import pytest
from notebook_support import execute_notebook as execute

from fmnist_helpers import paths


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setenv("FMNIST_QUICK", "1")


def test_bad_parameter_stops_with_clear_error(tmp_path):
    """End to end, once: papermill stops at the resolution cell and shows the message (the other notebooks'
    bad-parameter tests run only their parameter cells, in-process)."""
    with pytest.raises(pm.PapermillExecutionError, match="validation_size must be a positive integer, got -3"):
        execute("01_data_exploration", tmp_path, validation_size=-3)


@pytest.mark.parametrize("name, value, message", [
    ("tsne_samples", 3, "tsne_samples must be between 40 and 10,000"),
    ("tsne_samples", 60_000, "tsne_samples must be between 40 and 10,000"),
    ("validation_size", 55_000, "validation_size must be between 10 and 50,000"),
])
def test_01_rejects_sizes_its_methods_cannot_use(name, value, message):
    from notebook_support import resolve_notebook_parameters

    with pytest.raises(ValueError, match=message):
        resolve_notebook_parameters("01_data_exploration", **{name: value})


def test_01_writes_every_figure_and_no_tracked_file(tmp_path, monkeypatch):
    """Notebook 01 with the real default output locations: every figure is written under the git-ignored
    ``runs/quick/``, and no tracked file changes."""
    git = subprocess.run(["git", "-C", str(paths.REPO_ROOT), "rev-parse"], capture_output=True).returncode == 0
    monkeypatch.delenv("FMNIST_OUTPUT_DIR")  # the real default locations

    def status():
        return subprocess.run(["git", "-C", str(paths.REPO_ROOT), "status", "--porcelain"],
                              capture_output=True, text=True).stdout if git else ""

    before, start = status(), time.time()
    execute("01_data_exploration", tmp_path)
    assert status() == before, "a quick run changed tracked files"
    figures = paths.runs_dir("quick") / "figures"
    written = sorted(p.name for p in figures.glob("01_*.png") if p.stat().st_mtime >= start - 1)
    assert written == sorted(f"01_{n}.png" for n in (
        "sample_grid", "class_balance", "class_mean_std", "pixel_histograms", "pca_variance", "pca_projection",
        "tsne", "duplicates", "nearest_mean_confusion"))
