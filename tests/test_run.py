"""The batch runner: a failing notebook is reported with its cell and error, the others still run."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from notebook_support import printed

from fmnist_helpers import paths, run


def write_notebook(path: Path, body: str) -> Path:
    """A tiny notebook: a tagged parameters cell, then ``body``."""
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('profile = "default"  # set by the runner')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(body)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    """Two tiny notebooks in place of the workbook's: 01 prints, 02 raises ValueError in its second cell."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_hello.ipynb",
                   'import os\nprint("hello from", profile, "quick:", os.environ.get("FMNIST_QUICK"))')
    write_notebook(folder / "02_broken.ipynb", 'raise ValueError("epochs must be a positive integer, got -3")')
    (folder / "notes.ipynb").write_text("{}")  # not numbered: never selected
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", folder)
    monkeypatch.delenv("FMNIST_QUICK", raising=False)  # restored after the test (the runner sets it for quick)
    return folder


def runtime_record(output_dir: Path, profile: str, notebook: str) -> dict:
    return json.loads((output_dir / profile / "results" / "_notebooks" / f"{notebook}.json").read_text())


def test_failure_is_reported_and_the_others_still_run(notebooks, isolated_outputs, tmp_path, capsys):
    code = run.main(["--profile", "quick", "--config", str(tmp_path / "absent.toml"), "02", "01"])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 of 2 notebooks passed" in out
    assert "02_broken: FAILED at cell" in out and "ValueError: epochs must be a positive integer, got -3" in out
    broken, hello = (runtime_record(isolated_outputs, "quick", nb) for nb in ("02_broken", "01_hello"))
    assert not broken["ok"] and broken["error"].startswith("cell ") and "ValueError" in broken["error"]
    assert hello["ok"] and hello["error"] == "" and hello["wall_time_s"] >= 0 and "cpu" in hello["machine"]
    executed = nbformat.read(isolated_outputs / "quick" / "notebooks" / "01_hello.ipynb", as_version=4)
    assert "hello from quick quick: 1" in printed(executed)
    assert not list(paths.RESULTS_DIR.glob("quick/_notebooks/*.json"))  # nothing written to tracked files


def test_success_exits_zero_and_default_profile_is_not_quick(notebooks, isolated_outputs, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_QUICK", "1")  # the runner must not leak it into a default-profile run
    assert run.main(["--profile", "default", "1"]) == 0
    assert "1 of 1 notebooks passed" in capsys.readouterr().out
    assert runtime_record(isolated_outputs, "default", "01_hello")["ok"]
    executed = nbformat.read(isolated_outputs / "default" / "notebooks" / "01_hello.ipynb", as_version=4)
    assert "hello from default quick: None" in printed(executed)


def test_select_notebooks(notebooks):
    assert [nb.stem for nb in run.select_notebooks([])] == ["01_hello", "02_broken"]
    assert [nb.stem for nb in run.select_notebooks(["02"])] == ["02_broken"]
    assert [nb.stem for nb in run.select_notebooks(["2", "02_broken", "01_hello"])] == ["02_broken", "01_hello"]
    with pytest.raises(ValueError, match="unknown notebook '07'; choose from 01_hello, 02_broken"):
        run.select_notebooks(["07"])


def test_unknown_notebook_exits_2(notebooks, capsys):
    assert run.main(["--profile", "quick", "nope"]) == 2
    assert "unknown notebook 'nope'" in capsys.readouterr().err


def test_select_by_number_in_the_workbook():
    stems = [nb.stem for nb in run.select_notebooks(["01"])]
    assert stems == ["01_data_exploration"]


def test_load_overrides(tmp_path):
    config = tmp_path / "workbook.toml"
    config.write_text('[full."03_cnn"]\nseeds = "0,1,2"\nepochs = 50\n\n[default."02_mlp_baselines"]\nepochs = 5\n')
    assert run.load_overrides("full", config) == {"03_cnn": {"seeds": "0,1,2", "epochs": 50}}
    assert run.load_overrides("default", config) == {"02_mlp_baselines": {"epochs": 5}}
    assert run.load_overrides("quick", config) == {}
    assert run.load_overrides("full", tmp_path / "absent.toml") == {}
    config.write_text("full = 3\n")
    with pytest.raises(ValueError, match=r"\[full\] must be a table"):
        run.load_overrides("full", config)


def test_bad_config_exits_2(notebooks, tmp_path, capsys):
    config = tmp_path / "workbook.toml"
    config.write_text("[full\n")
    assert run.main(["--profile", "full", "--config", str(config)]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_repository_config_is_valid_toml():
    for profile in ("quick", "default", "full"):
        overrides = run.load_overrides(profile, paths.REPO_ROOT / "workbook.toml")
        assert all(isinstance(values, dict) for values in overrides.values())
