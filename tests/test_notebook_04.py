"""Notebook 04 (regularization ablation): a quick papermill run, its records and figures, and proof that every
variant of a seed starts from the same saved initial weights.

The notebook's own model code (``augmentation_layers``, ``build_mlp``, ``VARIANTS``, ``build_variant``) is taken
from the notebook's cells and executed here, so the tests check the code the notebook teaches, not a copy of it.
"""
from __future__ import annotations

import ast
import json

import keras
import nbformat
import numpy as np
import pytest
from notebook_support import quick_run as run_quick, resolve_notebook_parameters
from keras import layers

import fmnist_helpers as fh
from fmnist_helpers import paths, regularization

NOTEBOOK = "04_regularization"
FIGURES = ("04_augmented_samples", "04_learning_curves", "04_weight_histograms", "04_accuracy_vs_gap")
MODEL_CELLS = ("def augmentation_layers(", "HIDDEN_UNITS = ", "VARIANTS = {", "def build_variant(")


@pytest.fixture(scope="module")
def notebook_code() -> dict:
    """The notebook's variant names and model-building cells, executed in a fresh namespace."""
    nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{NOTEBOOK}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    namespace = {"keras": keras, "layers": layers, "np": np, "fh": fh, "regularization": regularization}
    for source in code:
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "VARIANT_NAMES":
                namespace["VARIANT_NAMES"] = ast.literal_eval(node.value)
    for marker in MODEL_CELLS:
        cells = [source for source in code if marker in source]
        assert len(cells) == 1, f"expected one notebook cell containing {marker!r}, found {len(cells)}"
        exec(compile(cells[0], f"{NOTEBOOK}:{marker}", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick profile's folder of one quick run of the notebook with its default parameters."""
    return run_quick(tmp_path_factory, NOTEBOOK)[0] / "quick"


def initial_file(quick_run, tag: str):
    """The quick run's saved initial weights for seed 0 (named as the helper names them, in the run's folder)."""
    return quick_run / "04_regularization" / regularization.initial_weights_path("quick", tag, 0).name


def quick_records(quick_run) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((quick_run / "results" / NOTEBOOK).glob("*.json"))]


def test_quick_run_records_every_variant_above_chance(quick_run, notebook_code):
    records = quick_records(quick_run)
    assert sorted(r["model"] for r in records) == sorted(notebook_code["VARIANT_NAMES"])
    for record in records:
        assert record["notebook"] == NOTEBOOK and record["profile"] == "quick" and record["seed"] == 0
        assert record["params"]["variant"] == record["model"] and record["params"]["epochs"] == 1
        assert 0.1 < record["metrics"]["test_accuracy"] <= 1, f"{record['model']} is not above chance"
        assert {"final_train_accuracy", "final_val_accuracy", "test_loss"} <= set(record["metrics"])


def test_quick_run_writes_figures_and_initial_weights(quick_run, notebook_code):
    assert sorted(p.stem for p in (quick_run / "figures").glob("04_*.png")) == sorted(FIGURES)
    assert initial_file(quick_run, notebook_code["ARCH_TAG"]).is_file()


def test_records_carry_the_fingerprint_of_the_saved_initial_weights(quick_run, notebook_code):
    base = notebook_code["build_mlp"]()
    base.load_weights(initial_file(quick_run, notebook_code["ARCH_TAG"]))
    fingerprint = regularization.weights_sha256(base, notebook_code["SHARED_LAYERS"])
    assert {r["params"]["initial_weights_sha256"] for r in quick_records(quick_run)} == {fingerprint}


def test_every_variant_starts_from_the_same_kernels(notebook_code, tmp_path):
    build_mlp, build_variant, shared = (notebook_code[k] for k in ("build_mlp", "build_variant", "SHARED_LAYERS"))
    fh.set_seed(7)
    base = build_mlp()
    initial = regularization.save_weights_atomically(base, tmp_path / "base.weights.h5")
    fingerprint = regularization.weights_sha256(base, shared)
    models = {v: build_variant(v, initial, fingerprint, 1e-3) for v in notebook_code["VARIANTS"]}
    assert len({len(m.layers) for m in models.values()}) > 1, "the variants should differ in their layers"
    for name in shared:
        expected = base.get_layer(name).get_weights()
        for variant, model in models.items():
            for want, got in zip(expected, model.get_layer(name).get_weights(), strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"{variant}: layer {name}")
    fh.set_seed(8)
    assert regularization.weights_sha256(build_mlp(), shared) != fingerprint  # another seed, other weights
    with pytest.raises(RuntimeError, match="shared layers hold weights"):
        build_variant("dropout_0.2", initial, "0" * 64, 1e-3)


def test_variant_colours_are_distinct_and_only_the_references_are_grey():
    names = ["initial", "none", *(f"variant_{i}" for i in range(18))]
    colours = regularization.variant_colors(names)
    assert len(set(colours.values())) == len(names)
    greys = {name for name, colour in colours.items() if colour[1:3] == colour[3:5] == colour[5:7]}
    assert greys == {"none", "initial"}
    with pytest.raises(ValueError, match="at most 18 variants"):
        regularization.variant_colors([*names, "one_too_many"])


def test_bad_seeds_parameter_stops_with_clear_error():
    with pytest.raises(ValueError, match="seeds must be a positive count"):
        resolve_notebook_parameters(NOTEBOOK, seeds=0)


# ---------------------------------------------------------------- fmnist_helpers.regularization
def tiny(extra: bool, units: int = 8) -> keras.Model:
    middle = [layers.BatchNormalization(name="bn"), layers.Dropout(0.5, name="drop")] if extra else []
    return keras.Sequential([keras.Input((4,)), layers.Dense(units, name="a"), *middle, layers.Dense(3, name="b")])


def test_copy_shared_weights_by_name_and_its_errors():
    fh.set_seed(1)
    source, target = tiny(False), tiny(True)
    assert regularization.weights_sha256(source, ["a", "b"]) != regularization.weights_sha256(target, ["a", "b"])
    assert regularization.copy_shared_weights(source, target, ["a", "b"]) == ["a", "b"]
    assert regularization.weights_sha256(source, ["a", "b"]) == regularization.weights_sha256(target, ["a", "b"])
    with pytest.raises(ValueError, match="has no layer named 'bn'"):
        regularization.copy_shared_weights(source, target, ["bn"])
    with pytest.raises(ValueError, match="do not fit"):
        regularization.copy_shared_weights(tiny(False, units=5), target, ["a"])
    with pytest.raises(ValueError, match="at least one layer"):
        regularization.copy_shared_weights(source, target, [])


def test_save_weights_atomically_round_trip(tmp_path):
    fh.set_seed(2)
    model = tiny(False)
    path = regularization.save_weights_atomically(model, tmp_path / "sub" / "m.weights.h5")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["m.weights.h5"]  # no temporary left
    fh.set_seed(3)
    other = tiny(False)
    other.load_weights(path)
    assert regularization.weights_sha256(other, ["a", "b"]) == regularization.weights_sha256(model, ["a", "b"])
    with pytest.raises(ValueError, match="must end in .weights.h5"):
        regularization.save_weights_atomically(model, tmp_path / "m.h5")


def test_initial_weights_path_follows_the_output_folder(isolated_outputs):
    path = regularization.initial_weights_path("default", "mlp256-128", 3)
    assert path == isolated_outputs / "default" / "04_regularization" / "initial_mlp256-128_seed3.weights.h5"
    with pytest.raises(ValueError, match="tag must be"):
        regularization.initial_weights_path("default", "a/b", 0)


@pytest.mark.parametrize("value, first, seeds", [(3, 5, [5, 6, 7]), ("2", 0, [0, 1]), ("4,1", 0, [4, 1]),
                                                 ([0, 9], 3, [0, 9])])
def test_count_or_seeds(value, first, seeds):
    assert regularization.expand_seeds(first, regularization.count_or_seeds("seeds", value)) == seeds


@pytest.mark.parametrize("value", [0, -1, "x", [], [1, 1], [-2], True, 1.5])
def test_count_or_seeds_rejects(value):
    with pytest.raises(ValueError, match="seeds"):
        regularization.count_or_seeds("seeds", value)


def test_paired_verdicts_compare_each_seed_with_its_own_baseline():
    import pandas as pd

    # The seeds differ a lot (0.80 vs 0.90), the variant beats the baseline by 0.01 on each: a clear paired win,
    # which unpaired stds of about 0.07 would have hidden. "noisy" wins on one seed and loses on the other.
    runs = pd.DataFrame({"variant": ["none", "none", "better", "better", "noisy", "noisy"], "seed": [0, 1] * 3,
                         "acc": [0.80, 0.90, 0.81, 0.91, 0.85, 0.85]})
    table = regularization.paired_verdicts(runs, "acc", higher_is_better=True)
    assert list(table.index) == ["better", "noisy"]
    assert table.loc["better", "difference"] == pytest.approx(0.01) and table.loc["better", "verdict"] == "better"
    assert table.loc["noisy", "verdict"] == "inconclusive"
    assert regularization.paired_verdicts(runs, "acc", higher_is_better=False).loc["better", "verdict"] == "worse"
    one_seed = regularization.paired_verdicts(runs[runs.seed == 0], "acc", higher_is_better=True)
    assert (one_seed["verdict"] == "inconclusive").all()  # no spread, no verdict
