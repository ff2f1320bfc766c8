"""Run records: written atomically, complete, reloadable and summarized over seeds."""
from __future__ import annotations

import json
import math

import pytest

import fmnist_helpers as fh
from fmnist_helpers import paths, results


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    return fh.resolve_parameters("03_cnn", {"default": {"epochs": 2}}, {"epochs": fh.positive_int}, epochs=None)


def test_record_roundtrip(cfg, isolated_outputs):
    path = fh.record_result(cfg, "workbook_cnn", {"test_accuracy": 0.9}, wall_time_s=12.3456,
                            history={"accuracy": [0.5, 0.8]}, params_count=1234)
    assert path.is_relative_to(isolated_outputs) and path.name == "workbook_cnn__seed0.json"
    record = json.loads(path.read_text())
    assert all(key in record for key in results.REQUIRED_KEYS)
    assert record["wall_time_s"] == 12.346 and record["params"]["epochs"] == 2 and record["params_count"] == 1234
    assert record["command"].startswith("papermill notebooks/03_cnn.ipynb")
    assert fh.load_record(cfg, "workbook_cnn")["metrics"] == {"test_accuracy": 0.9}
    assert fh.load_record(cfg, "workbook_cnn", seed=1) is None


def test_run_seed_is_the_seed_that_split_the_data(cfg, isolated_outputs):
    extra_seed = json.loads(fh.record_result(cfg, "workbook_mlp", {"test_accuracy": 0.9}, 1.0, seed=2).read_text())
    assert extra_seed["seed"] == 2 and fh.run_seed(extra_seed) == 0  # a replica of a seed-0 run: split by seed 0
    older = {"seed": 2, "command": "papermill notebooks/02_mlp_baselines.ipynb out.ipynb -p profile full -p seed 1"}
    assert fh.run_seed(older) == 1 and fh.run_seed({"seed": 2, "command": "papermill a.ipynb out.ipynb"}) == 0
    assert fh.run_seed({"command": "papermill a.ipynb out.ipynb -p seeds 3"}) == 0


def test_repo_relative_paths():
    assert paths.repo_relative(paths.RESULTS_DIR / "full") == "results/full"
    assert paths.repo_relative("/tmp/elsewhere/model.keras") == "/tmp/elsewhere/model.keras"


def test_summary_over_seeds(cfg):
    for seed, accuracy in [(0, 0.90), (1, 0.92), (2, 0.94)]:
        fh.record_result(cfg, "workbook_cnn", {"test_accuracy": accuracy}, wall_time_s=10, seed=seed)
    summary = fh.summarize(fh.load_records(paths.results_dir("default")))
    row = summary.iloc[0]
    assert row["test_accuracy_count"] == 3 and math.isclose(row["test_accuracy_mean"], 0.92)
    assert math.isclose(row["test_accuracy_std"], 0.02)


def test_bad_model_name_and_nan_metrics_are_rejected(cfg):
    with pytest.raises(ValueError, match="model name"):
        fh.record_result(cfg, "../escape", {}, wall_time_s=1)
    with pytest.raises(ValueError):
        fh.record_result(cfg, "m", {"test_accuracy": float("nan")}, wall_time_s=1)
    assert not list(paths.results_dir("default").rglob("*.json"))


def test_unreadable_record_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: unreadable results record"):
        fh.load_records(tmp_path)
