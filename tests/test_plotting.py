"""Figures are saved under fixed names, never into tracked folders from tests or quick runs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fmnist_helpers as fh  # noqa: E402
from fmnist_helpers import config, paths  # noqa: E402


def test_save_fig_writes_png_to_profile_folder(isolated_outputs):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fh.save_fig("03_cnn_test_figure", fig, profile="quick")
    path = fh.figure_path("03_cnn_test_figure", profile="quick")
    assert path == isolated_outputs / "quick" / "figures" / "03_cnn_test_figure.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fh.save_fig("03_cnn_test_figure", fig, profile="full")
    assert (isolated_outputs / "full" / "figures" / "03_cnn_test_figure.png").is_file()
    plt.close(fig)


def test_full_profile_publishes_to_figures(monkeypatch):
    monkeypatch.delenv("FMNIST_OUTPUT_DIR")
    assert paths.figures_dir("full") == paths.FIGURES_DIR
    assert paths.figures_dir("quick") != paths.FIGURES_DIR and paths.results_dir("quick") != paths.RESULTS_DIR / "quick"


@pytest.mark.parametrize("name", ["cnn_curves", "3_cnn", "03_CNN", "03_cnn curves", "../03_x"])
def test_save_fig_rejects_bad_names(name):
    with pytest.raises(ValueError, match="figure name"):
        fh.save_fig(name)


def test_plots_build_with_class_names():
    rng = np.random.default_rng(0)
    fig = fh.plot_image_grid(rng.random((12, 28, 28)), rng.integers(0, 10, 12), ncols=6)
    assert len(fig.axes) == 12 and fig.axes[0].get_title() in fh.CLASS_NAMES
    ax = fh.plot_confusion_matrix(np.arange(10), np.arange(10), normalize=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(fh.CLASS_NAMES)
    ax = fh.plot_history({"workbook_cnn": {"accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]}})
    assert len(ax.lines) == 2 and ax.lines[0].get_color() == fh.color_for("workbook_cnn")
    assert fh.color_for("something_new") == fh.color_for("something_new")
    plt.close("all")


def test_color_for_uses_the_longest_matching_name():
    from fmnist_helpers.plotting import MODEL_COLORS

    assert fh.color_for("seed001_jackson_l2") == MODEL_COLORS["seed001_jackson_l2"] != MODEL_COLORS["seed001_jackson"]
    assert fh.color_for("seed004_cnn_untuned") != fh.color_for("seed004_cnn")
    assert fh.color_for("workbook_mlp_float32") == MODEL_COLORS["workbook_mlp"]
    assert len(set(MODEL_COLORS.values())) == len(MODEL_COLORS), "every model its own colour"


def test_only_a_full_run_with_the_profiles_own_parameters_publishes_figures(monkeypatch, capsys):
    profiles = {"default": {"epochs": 5, "models": "all"}, "full": {"epochs": 50, "models": "all"}}
    rules = {"epochs": fh.positive_int, "models": fh.subset_of(["cnn", "mlp"])}
    monkeypatch.delenv("FMNIST_OUTPUT_DIR")
    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    fh.resolve_parameters("03_cnn", profiles, rules, profile="full", epochs="50", models="all")
    assert fh.figure_path("03_cnn_curves") == paths.FIGURES_DIR / "03_cnn_curves.png"
    assert "runs/full/figures" not in capsys.readouterr().out
    for changes in ({"epochs": 3, "models": None}, {"epochs": None, "models": "cnn"}, {"seed": 1}):
        fh.resolve_parameters("03_cnn", profiles, rules, profile="full", **{"epochs": None, "models": None, **changes})
        assert fh.figure_path("03_cnn_curves") == paths.runs_dir("full") / "figures" / "03_cnn_curves.png"
        assert "figures go to runs/full/figures/" in capsys.readouterr().out
    fh.resolve_parameters("03_cnn", profiles, rules, profile="full", selectors=["models"], epochs=None, models="cnn")
    assert config.publishes_figures(), "a parameter that only selects models does not block publishing"
    fh.resolve_parameters("03_cnn", profiles, rules, profile="full", selectors=["models"], epochs=3, models="cnn")
    assert not config.publishes_figures() and "changes epochs from" in capsys.readouterr().out
    fh.resolve_parameters("03_cnn", profiles, rules, profile="default", epochs=None, models=None)
    assert fh.figure_path("03_cnn_curves") == paths.runs_dir("default") / "figures" / "03_cnn_curves.png"


def test_parameters_the_profile_leaves_to_the_cell_count_as_changes_only_when_they_differ(monkeypatch, tmp_path,
                                                                                          capsys):
    """A full run of a notebook whose cell sets some values itself (``validation_size = 5000``) publishes; the
    same run with ``-p validation_size 1000`` does not. Checked on a hand-made notebook and on 07's real cell."""
    import nbformat

    cell = nbformat.v4.new_code_cell("profile = 'default'\nseed = 0\nepochs = None\nvalidation_size = 5000\n",
                                     metadata={"tags": ["parameters"]})
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "99_toy.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", tmp_path)
    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    assert config.notebook_defaults("99_toy") == {"profile": "default", "seed": 0, "validation_size": 5000}
    assert config.notebook_defaults("98_missing") == {}
    profiles = {"default": {"epochs": 5}, "full": {"epochs": 50}}
    rules = {"epochs": fh.positive_int, "validation_size": fh.positive_int}
    fh.resolve_parameters("99_toy", profiles, rules, profile="full", epochs=None, validation_size="5000")
    assert config.publishes_figures() and "runs/full/figures" not in capsys.readouterr().out
    fh.resolve_parameters("99_toy", profiles, rules, profile="full", epochs=None, validation_size=1000)
    assert not config.publishes_figures()
    assert "this run changes validation_size from the full profile" in capsys.readouterr().out
    fh.resolve_parameters("98_missing", profiles, rules, profile="full", epochs=None, validation_size=5000)
    assert not config.publishes_figures(), "without the saved cell a set value cannot be told from a -p change"
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", paths.REPO_ROOT / "notebooks")
    assert config.notebook_defaults("07_hyperparameter_search")["batch_sizes"] == "64,128,256"
