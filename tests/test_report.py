"""The README generator: touches only its marked section, is idempotent, never guesses a missing number."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from fmnist_helpers import paths, reference, report

README = f"""# Title

Hand-written text with a table that must survive:

| a | b |
|---|---|
| 1 | 2 |

## Results

{report.BEGIN_MARKER}
old generated text
{report.END_MARKER}

## After

More hand-written text.
"""
MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "bf16": False}


def write_record(root: Path, profile: str, notebook: str, model: str, seed: int, accuracy: float,
                 wall_time_s: float = 120.0, epochs: int = 10, val_accuracy: float | None = None,
                 ablation: str | None = None) -> None:
    """A minimal model record, laid out as results.record_result writes it."""
    metrics = {"test_accuracy": accuracy} if val_accuracy is None else {
        "test_accuracy": accuracy, "final_val_accuracy": val_accuracy, "flip_tta_used": False}
    params = {"epochs": epochs, **({"ablation": ablation} if ablation else {})}
    record = {"notebook": notebook, "model": model, "profile": profile, "seed": seed, "params": params,
              "metrics": metrics, "wall_time_s": wall_time_s, "epochs_run": epochs,
              "command": f"papermill notebooks/{notebook}.ipynb out.ipynb -p profile {profile}",
              "machine": MACHINE, "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"}, "finished_at": "2026"}
    path = root / profile / notebook / f"{model}__seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def workbook(tmp_path, monkeypatch):
    """A temporary README, results folder and notebooks folder in place of the repository's."""
    readme, results, notebooks = tmp_path / "README.md", tmp_path / "results", tmp_path / "notebooks"
    readme.write_text(README)
    results.mkdir()
    notebooks.mkdir()
    for stem in ("02_mlp_baselines", "03_cnn"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
            f"# {stem[:2]} · A notebook\n\nIntro.\n\nRuntime: an old guess.\nA note that stays.\n\nMore.")])
        nbformat.write(nb, notebooks / f"{stem}.ipynb")
    monkeypatch.setattr(paths, "README_PATH", readme)
    monkeypatch.setattr(paths, "RESULTS_DIR", results)
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(report, "BENCHMARK_PATH", tmp_path / "benchmark.json")
    return tmp_path


def generated(text: str) -> str:
    return text.split(report.BEGIN_MARKER)[1].split(report.END_MARKER)[0]


def outside(text: str) -> tuple[str, str]:
    return text.split(report.BEGIN_MARKER)[0], text.split(report.END_MARKER)[1]


def seed_row(text: str, model: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| `../shared") and f"`{model}`" in line)


def test_only_the_marked_section_changes_and_twice_is_identical(workbook, isolated_outputs):
    for seed, accuracy in enumerate([0.88, 0.89, 0.90]):
        write_record(workbook / "results", "full", "02_mlp_baselines", "seed002_mlp", seed, accuracy)
    assert report.main([]) == 0
    first = paths.README_PATH.read_bytes()
    assert outside(first.decode()) == outside(README) and "old generated text" not in first.decode()
    figure = isolated_outputs / "full" / "figures" / f"{report.ACCURACY_FIGURE}.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # tests never write into the tracked figures/
    figure_bytes = figure.read_bytes()
    assert report.main([]) == 0
    assert paths.README_PATH.read_bytes() == first and figure.read_bytes() == figure_bytes
    assert report.main(["--check"]) == 0


def test_missing_seeds_say_not_yet_run(workbook):
    write_record(workbook / "results", "default", "03_cnn", "seed003_cnn", 0, 0.9012, epochs=15)
    report.main(["--no-figures"])
    text = generated(paths.README_PATH.read_text())
    for ref in reference.SEED_REFERENCES:
        row = seed_row(text, ref.model)
        assert ref.file in row and ref.reported in row
        assert (report.NOT_YET_RUN in row) == (ref.model != "seed003_cnn")
    measured = seed_row(text, "seed003_cnn")
    assert "90.12% (n=1)" in measured and "default (full profile pending)" in measured
    assert "+2.66 pp" in measured and "papermill notebooks/03_cnn.ipynb" in measured
    assert "| MLP | not yet run |" in text and "`seed003_cnn`" in text.split("### Best model per family")[1]


def test_best_of_family_is_chosen_on_validation_not_test_accuracy(workbook):
    write_record(workbook / "results", "default", "02_mlp_baselines", "workbook_mlp", 0, 0.9000, val_accuracy=0.915)
    write_record(workbook / "results", "default", "02_mlp_baselines", "workbook_mlp_float32", 0, 0.9100,
                 val_accuracy=0.905)
    write_record(workbook / "results", "default", "02_mlp_baselines", "svm_rbf", 0, 0.8700)
    write_record(workbook / "results", "default", "02_mlp_baselines", "random_forest", 0, 0.8500)
    report.main(["--no-figures"])
    families = generated(paths.README_PATH.read_text()).split("### Best model per family")[1]
    mlp_row = next(line for line in families.splitlines() if line.startswith("| MLP |"))
    classical_row = next(line for line in families.splitlines() if line.startswith("| classical |"))
    assert "`workbook_mlp`" in mlp_row and "90.00%" in mlp_row
    assert "`svm_rbf`" in classical_row


def test_an_ablation_variant_is_never_a_familys_best_model(workbook):
    write_record(workbook / "results", "default", "02_mlp_baselines", "workbook_mlp", 0, 0.9000, val_accuracy=0.910)
    write_record(workbook / "results", "default", "02_mlp_baselines", "workbook_mlp_float32", 0, 0.9100,
                 val_accuracy=0.920, ablation="float32")
    report.main(["--no-figures"])
    families = generated(paths.README_PATH.read_text()).split("### Best model per family")[1]
    mlp_row = next(line for line in families.splitlines() if line.startswith("| MLP |"))
    assert "`workbook_mlp`" in mlp_row and "90.00%" in mlp_row and "float32" not in mlp_row


def test_mean_and_std_over_seeds_and_full_profile_preferred(workbook):
    for seed, accuracy in enumerate([0.88, 0.89, 0.90]):
        write_record(workbook / "results", "full", "02_mlp_baselines", "seed002_mlp", seed, accuracy, epochs=30)
    write_record(workbook / "results", "default", "02_mlp_baselines", "seed002_mlp", 0, 0.50)
    report.main(["--no-figures"])
    row = seed_row(generated(paths.README_PATH.read_text()), "seed002_mlp")
    assert "89.00 ± 1.00% (n=3)" in row and "| full |" in row and "| 30 |" in row and "50.00" not in row


def test_runtimes_machine_and_benchmark_are_quoted(workbook):
    runs = workbook / "results" / "default" / "_notebooks"
    runs.mkdir(parents=True)
    (runs / "03_cnn.json").write_text(json.dumps({"notebook": "03_cnn", "profile": "default", "ok": True,
                                                  "wall_time_s": 600.0, "cpu_time_s": 1100.0, "machine": MACHINE}))
    bench = {"training": {"measured_at": "2026-01-02T03:04:05+00:00", "command": "python benchmarks/benchmark.py",
                          "machine": {"cpu": "Bench CPU", "cores": 4, "bf16": True},
                          "settings": {"steps": 300, "warmup_steps": 30, "batch_size": 128},
                          "results": [{"model": "seed003_cnn", "precision": "float32", "images_per_s": 1234.5}]},
             "execution": {"measured_at": "2026-01-02T03:04:05+00:00", "command": "python benchmarks/benchmark.py",
                           "machine": {"cpu": "Bench CPU", "cores": 4, "bf16": True},
                           "settings": {"model": "bn_cnn_flip", "precision": "mixed_bfloat16", "images": 38400,
                                        "warmup_images": 3840, "repeats": 2},
                           "results": [{"batch_size": 128, "steps_per_execution": 1, "input": "numpy",
                                        "images_per_s": 2000.0, "vs_reference": 1.0},
                                       {"batch_size": 128, "steps_per_execution": 8, "input": "numpy",
                                        "images_per_s": 2300.4, "vs_reference": 1.15}]},
             "epoch_starts": {"measured_at": "2026-01-02T03:04:05+00:00", "command": "python benchmarks/benchmark.py",
                              "machine": {"cpu": "Bench CPU", "cores": 4, "bf16": True},
                              "settings": {"model": "bn_cnn_flip", "precision": "mixed_bfloat16", "images": 16384,
                                           "epochs": 6, "batch_size": 128},
                              "results": [{"input": "numpy", "later_epochs_total_s": 61.31, "first_steps_total_s": 19.5,
                                           "max_first_step_s": 10.02, "vs_numpy": 1.0},
                                          {"input": "shuffled_batches", "later_epochs_total_s": 20.5,
                                           "first_steps_total_s": 0.14, "max_first_step_s": 0.06, "vs_numpy": 0.335}]},
             "notebooks": {"results": [{"notebook": "03_cnn", "profile": "quick", "ok": True,
                                        "wall_time_s": 20.0, "cpu_time_s": 30.0}]}}
    report.BENCHMARK_PATH.write_text(json.dumps(bench))
    report.main(["--no-figures"])
    text = generated(paths.README_PATH.read_text())
    row = next(line for line in text.splitlines() if line.startswith("| [03_cnn]"))
    assert "| 20 s wall, 30 s CPU ¹ | 10.0 min wall, 18.3 min CPU | not yet run |" in row
    assert "| [02_mlp_baselines](notebooks/02_mlp_baselines.ipynb) | not yet run |" in text
    assert "Test CPU 9000, 2 cores" in text and "Bench CPU, 4 cores, bf16" in text and "1,234" in text
    assert "| **whole workbook** | not yet run (every notebook needed) | not yet run (every notebook needed) |" in text
    assert "Execution settings of `bn_cnn_flip` in mixed_bfloat16" in text and "best of 2 rounds" in text
    assert "| 128 | 8 | `numpy` | 2,300 | 1.15× |" in text
    assert "Epoch starts of `bn_cnn_flip` in mixed_bfloat16: 6 epochs of 16,384 training images at batch 128" in text
    assert "| `numpy` | 61.3 | 19.50 | 10.02 | 1.00× |" in text
    assert "| `shuffled_batches` | 20.5 | 0.14 | 0.06 | 0.34× |" in text
    first = nbformat.read(paths.NOTEBOOKS_DIR / "03_cnn.ipynb", as_version=4).cells[0].source
    assert ("\n\nRuntime: default profile 10.0 min · quick mode 20 s · full profile not yet run, measured on a "
            "2-core CPU") in first and "an old guess" not in first and "\nA note that stays.\n\nMore." in first
    untouched = nbformat.read(paths.NOTEBOOKS_DIR / "02_mlp_baselines.ipynb", as_version=4).cells[0].source
    assert "Runtime: default profile not yet run · quick mode not yet run · full profile not yet run" in untouched
    assert report.main(["--check"]) == 0
    path = paths.NOTEBOOKS_DIR / "03_cnn.ipynb"
    path.write_text(path.read_text().replace("default profile 10.0 min", "default profile 5 min"))
    assert report.main(["--check"]) == 1  # a hand-edited runtime line is caught
    (runs / "02_mlp_baselines.json").write_text(json.dumps({"notebook": "02_mlp_baselines", "profile": "default",
                                                            "ok": True, "wall_time_s": 60.0, "cpu_time_s": 100.0}))
    report.main(["--no-figures"])
    text = generated(paths.README_PATH.read_text())
    assert "| 11.0 min wall, 20.0 min CPU | not yet run (every notebook needed) |" in text  # the default total


def test_full_profile_over_several_sittings_counts_every_recorded_training(workbook):
    """A full run that reused models from earlier sittings is charged with the training its records hold."""
    for seed in range(3):  # trained in an earlier sitting: 3 x 20 min
        write_record(workbook / "results", "full", "03_cnn", "seed000_cnn", seed, 0.93, wall_time_s=1200.0)
    runs = workbook / "results" / "full" / "_notebooks"
    runs.mkdir(parents=True)
    (runs / "03_cnn.json").write_text(json.dumps({"notebook": "03_cnn", "profile": "full", "ok": True,
                                                  "wall_time_s": 300.0, "cpu_time_s": 500.0}))
    (runs / "02_mlp_baselines.json").write_text(json.dumps({"notebook": "02_mlp_baselines", "profile": "full",
                                                            "ok": True, "wall_time_s": 900.0, "cpu_time_s": 1000.0}))
    write_record(workbook / "results", "full", "02_mlp_baselines", "seed002_mlp", 0, 0.88, wall_time_s=600.0)
    report.main(["--no-figures"])
    text = generated(paths.README_PATH.read_text())
    row = next(line for line in text.splitlines() if line.startswith("| [03_cnn]"))
    assert row.endswith("| 60.0 min of training ² |") and "² the full profile ran in several sittings" in text
    row = next(line for line in text.splitlines() if line.startswith("| [02_mlp_baselines]"))
    assert row.endswith("| 15.0 min wall, 16.7 min CPU |")  # one sitting: the run's own times
    first = nbformat.read(paths.NOTEBOOKS_DIR / "03_cnn.ipynb", as_version=4).cells[0].source
    assert "full profile 60.0 min of training over several sittings, measured" in first


def test_extra_seed_runs_are_not_charged_to_the_full_profile(workbook):
    """A repeat with ``-p seed 1`` adds a seed to the accuracy, not to what ``-p profile full`` costs."""
    write_record(workbook / "results", "full", "03_cnn", "workbook_cnn", 0, 0.947, wall_time_s=1800.0)
    write_record(workbook / "results", "full", "03_cnn", "workbook_cnn", 1, 0.949, wall_time_s=1800.0)
    extra = workbook / "results" / "full" / "03_cnn" / "workbook_cnn__seed1.json"
    record = json.loads(extra.read_text())
    extra.write_text(json.dumps({**record, "run_seed": 1, "command": record["command"] + " -p seed 1"}))
    report.main(["--no-figures"])
    text = generated(paths.README_PATH.read_text())
    row = next(line for line in text.splitlines() if line.startswith("| [03_cnn]"))
    assert row.endswith("| 30.0 min of training ² |")  # seed 0's run only
    assert "94.80 ± 0.14% (n=2)" in text  # both seeds in the accuracy


def test_check_reports_an_outdated_readme(workbook):
    assert report.main(["--check"]) == 1
    assert paths.README_PATH.read_text() == README  # --check writes nothing
    report.main(["--no-figures"])
    assert report.main(["--check"]) == 0
    write_record(workbook / "results", "full", "03_cnn", "seed000_cnn", 0, 0.93)
    assert report.main(["--check"]) == 1


def test_missing_markers_are_an_error(workbook, capsys):
    paths.README_PATH.write_text("# no markers\n")
    assert report.main([]) == 2
    assert "must contain" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exactly once"):
        report.replace_section(f"{report.BEGIN_MARKER}\n{report.BEGIN_MARKER}\n{report.END_MARKER}", "x")


def test_markdown_table_escapes_pipes():
    import pandas as pd

    table = report.markdown_table(pd.DataFrame({"a": ["x|y"], "b": [1]}))
    assert table == "| a | b |\n|---|---|\n| x\\|y | 1 |"


@pytest.mark.parametrize("model, family", [("seed000_cnn", "CNN"), ("seed001_jackson_l2", "MLP"),
                                           ("seed002_mlp", "MLP"), ("svm_rbf", "classical"),
                                           ("logistic_regression", "classical"), ("mystery", "other")])
def test_model_family(model, family):
    assert report.model_family(model) == family


def test_seed_files_exist_when_the_shared_folder_is_present():
    if not reference.SEEDS_DIR.is_dir():
        pytest.skip(f"{reference.SEEDS_DIR} is not on this machine")
    for ref in reference.SEED_REFERENCES:
        assert (reference.SEEDS_DIR / ref.file).is_file() and ref.file.startswith(ref.seed)


def test_rewrite_keeps_the_readme_file_mode(workbook):
    paths.README_PATH.chmod(0o644)
    report.main(["--no-figures"])
    assert paths.README_PATH.stat().st_mode & 0o777 == 0o644


def test_train_time_spans_resumed_sessions():
    record = {"wall_time_s": 30.0, "epochs_run": 3, "history": {"epoch_time_s": [20.0, 20.0, 10.0]}}
    assert report.train_seconds(record) == 50.0  # wall_time_s covers only the session after the resume
    assert report.train_seconds({"wall_time_s": 30.0, "epochs_run": 3, "history": {}}) == 30.0
