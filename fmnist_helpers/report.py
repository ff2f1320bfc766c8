"""Regenerate the README's results section and the summary figures from the run records.

    python -m fmnist_helpers.report            # rewrite README.md between the markers, write figures/00_*.png
    python -m fmnist_helpers.report --check    # exit 1 if README.md is out of date (for CI); writes nothing

Only the text between ``<!-- BEGIN GENERATED: results -->`` and ``<!-- END GENERATED: results -->`` changes,
and in each notebook only the line that starts with ``Runtime:`` in its first cell.
Inputs: the model records under ``results/<profile>/<notebook>/`` (default and full profiles), the notebook
runtime records under ``results/<profile>/_notebooks/`` (written by :mod:`fmnist_helpers.run`), the benchmark
record ``benchmarks/results.json`` and the reference numbers of :mod:`fmnist_helpers.reference`. The output
depends on nothing else (no clock, no machine), so running it twice gives identical bytes.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import nbformat
import pandas as pd

from fmnist_helpers import paths, reference
from fmnist_helpers.config import PROFILES
from fmnist_helpers.data import atomic_write
from fmnist_helpers.results import load_records, run_seed, train_seconds, tta_used

BEGIN_MARKER = "<!-- BEGIN GENERATED: results -->"
END_MARKER = "<!-- END GENERATED: results -->"
NOT_YET_RUN = "not yet run"
DASH = "—"
BENCHMARK_PATH = paths.REPO_ROOT / "benchmarks" / "results.json"
ACCURACY_FIGURE = "00_summary_accuracy_vs_time"
SEED_FIGURE = "00_summary_seed_reproduction"
RUNTIME_LINE = re.compile(r"^Runtime:.*$", re.MULTILINE)
FAMILIES = ("classical", "MLP", "CNN")
CLASSICAL_PREFIXES = ("logistic_regression", "random_forest", "svm", "knn", "k_nearest", "gradient_boosting",
                      "decision_tree", "naive_bayes", "linear_svc")


# ---------------------------------------------------------------- inputs
@dataclass
class Inputs:
    """Everything the results section is generated from."""

    records: list[dict]  # model records of the published profiles
    notebook_runs: dict[tuple[str, str], dict]  # (profile, notebook) -> runtime record
    benchmark: dict | None  # benchmarks/results.json, if present
    notebooks: list[str] = field(default_factory=list)  # notebook stems in notebooks/


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable JSON ({exc}); delete it and re-run the command that wrote it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_notebook_runs(results_dir: Path) -> dict[tuple[str, str], dict]:
    """The runtime records ``<results>/<profile>/_notebooks/<notebook>.json``, keyed by (profile, notebook)."""
    runs = {}
    for profile in PROFILES:
        for path in sorted((results_dir / profile / "_notebooks").glob("*.json")):
            record = _read_json(path)
            runs[(profile, record.get("notebook", path.stem))] = record
    return runs


def load_inputs(results_dir: Path | None = None, benchmark_path: Path | None = None,
                notebooks_dir: Path | None = None) -> Inputs:
    """Read records, runtime records, the benchmark record and the notebook list (defaults: the repository's)."""
    results_dir = paths.RESULTS_DIR if results_dir is None else Path(results_dir)
    benchmark_path = BENCHMARK_PATH if benchmark_path is None else Path(benchmark_path)
    notebooks_dir = paths.NOTEBOOKS_DIR if notebooks_dir is None else Path(notebooks_dir)
    records = [r for r in load_records(results_dir) if r["profile"] in paths.PUBLISHED_PROFILES]
    benchmark = _read_json(benchmark_path) if benchmark_path.is_file() else None
    notebooks = sorted(nb.stem for nb in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    return Inputs(records, load_notebook_runs(results_dir), benchmark, notebooks)


# ---------------------------------------------------------------- summaries
def model_family(model: str, declared: str | None = None) -> str:
    """``"classical"``, ``"MLP"``, ``"CNN"`` or ``"other"``: a record's own ``family`` key wins, else the name."""
    if declared in FAMILIES:
        return declared
    name = model.lower()
    if name.startswith(CLASSICAL_PREFIXES):
        return "classical"
    if "cnn" in name or "conv" in name or "resnet" in name:
        return "CNN"
    if "mlp" in name or name.startswith("seed001_"):
        return "MLP"
    return "other"


def record_family(record: dict) -> str:
    """The record's family; ``"ablation"`` for a variant trained to measure one design choice (its ``params`` name
    the ablation), which is never a family's best model and is left out of the summary figure."""
    if record.get("params", {}).get("ablation"):
        return "ablation"
    return model_family(record["model"], record.get("family"))


def _epochs(record: dict) -> float:
    value = record.get("epochs_run", record.get("params", {}).get("epochs"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def validation_accuracy(record: dict) -> float:
    """Validation accuracy of the model that was tested (with the test-time augmentation its test score used, if
    any), NaN if not recorded."""
    metrics = record["metrics"]
    tta = tta_used(metrics)
    key = f"val_accuracy_{tta}_tta" if tta != "none" else "final_val_accuracy"
    value = metrics.get(key, math.nan)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def records_table(records: list[dict]) -> pd.DataFrame:
    """One row per record with the fields the report needs."""
    columns = ["notebook", "model", "profile", "seed", "test_accuracy", "val_accuracy", "wall_time_s", "epochs",
               "command", "family"]
    rows = [{
        "notebook": r["notebook"], "model": r["model"], "profile": r["profile"], "seed": r["seed"],
        "test_accuracy": r["metrics"].get("test_accuracy", math.nan), "val_accuracy": validation_accuracy(r),
        "wall_time_s": train_seconds(r),
        "epochs": _epochs(r), "command": r["command"], "family": record_family(r),
    } for r in records]
    return pd.DataFrame(rows, columns=columns)


def summarize_models(records: list[dict]) -> pd.DataFrame:
    """Per (notebook, model, profile): test accuracy mean/std/n over seeds, mean validation accuracy, epochs range,
    mean wall time, commands."""
    frame = records_table(records)
    columns = ["notebook", "model", "profile", "family", "mean", "std", "n", "val_mean", "epochs_min", "epochs_max",
               "minutes", "commands"]
    frame = frame.dropna(subset=["test_accuracy"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.sort_values(["notebook", "model", "profile", "seed"]).groupby(
        ["notebook", "model", "profile"], sort=True)
    out = grouped["test_accuracy"].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    out["family"] = grouped["family"].first()
    out["val_mean"] = grouped["val_accuracy"].mean()
    out["epochs_min"], out["epochs_max"] = grouped["epochs"].min(), grouped["epochs"].max()
    out["minutes"] = grouped["wall_time_s"].mean() / 60
    out["commands"] = grouped["command"].agg(lambda c: list(dict.fromkeys(c)))
    return out.reset_index()[columns]


def preferred_profile(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (notebook, model): the full profile where it was run, else the default profile."""
    if summary.empty:
        return summary
    rank = summary["profile"].map({"full": 0, "default": 1}).fillna(2)
    ordered = summary.assign(_rank=rank).sort_values(["notebook", "model", "_rank"])
    return ordered.drop_duplicates(["notebook", "model"]).drop(columns="_rank").reset_index(drop=True)


def rows_for_model(best: pd.DataFrame, model: str, notebook: str) -> pd.DataFrame:
    """Summary rows of ``model``: in its expected notebook if it was run there, else in any notebook."""
    if best.empty:
        return best
    rows = best[best["model"] == model]
    in_notebook = rows[rows["notebook"] == notebook]
    return in_notebook if not in_notebook.empty else rows


# ---------------------------------------------------------------- formatting
def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (pipes and newlines in cells are escaped)."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def percent(value: float) -> str:
    """``0.9123`` -> ``"91.23%"``."""
    return f"{100 * value:.2f}%"


def accuracy_cell(mean: float, std: float, n: int) -> str:
    """``"91.23%"`` for one seed, ``"91.23 ± 0.15% (n=3)"`` for several."""
    if n > 1 and not math.isnan(std):
        return f"{100 * mean:.2f} ± {100 * std:.2f}% (n={n})"
    return f"{percent(mean)} (n=1)"


def delta_pp(measured: float, reported: float | None, approximate: bool = False) -> str:
    """The difference in percentage points, signed: ``"+0.42 pp"`` (``"≈ +0.4 pp"`` against a "~x%" claim)."""
    if reported is None or math.isnan(measured):
        return DASH
    return f"≈ {100 * (measured - reported):+.1f} pp" if approximate else f"{100 * (measured - reported):+.2f} pp"


def duration(seconds: float | None) -> str:
    """Seconds below a minute, minutes below 2 hours, hours above."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return DASH
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def epochs_cell(low: float, high: float) -> str:
    """``"50"`` or a range ``"31–50"`` when early stopping ended seeds at different epochs."""
    if math.isnan(low):
        return DASH
    return f"{low:.0f}" if low == high else f"{low:.0f}–{high:.0f}"


def code(text: str) -> str:
    """Inline code, safe for a table cell."""
    return f"`{text}`"


def notebook_cell(notebook: str, existing: Iterable[str]) -> str:
    """A link to the notebook if it exists in ``notebooks/``, else its name marked as not built yet."""
    if notebook in existing:
        return f"[{notebook}](notebooks/{notebook}.ipynb)"
    return f"{notebook} (not built yet)"


def profile_cell(profile: str) -> str:
    """Label default-profile numbers clearly: the published numbers come from the full profile."""
    return "full" if profile == "full" else f"{profile} (full profile pending)"


def machine_label(machine: dict) -> str:
    """``"Intel(R) Xeon(R) Processor, 2 cores, bf16"``."""
    return (f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores"
            + (", bf16" if machine.get("bf16") else ""))


# ---------------------------------------------------------------- sections
def machines_section(inputs: Inputs) -> str:
    """Which CPUs the numbers come from, counted over records, runtime records and the benchmark."""
    machines = [r.get("machine", {}) for r in inputs.records] + \
               [r.get("machine", {}) for r in inputs.notebook_runs.values()]
    if inputs.benchmark:
        machines += [section.get("machine", {}) for section in inputs.benchmark.values()
                     if isinstance(section, dict) and "results" in section]
    counts = pd.Series([machine_label(m) for m in machines if m], dtype=object).value_counts()
    if counts.empty:
        return "**Machine:** no recorded runs yet."
    counts = counts.sort_index().sort_values(ascending=False, kind="stable")
    versions = sorted({f"TensorFlow {r['versions'].get('tensorflow', '?')} · Keras {r['versions'].get('keras', '?')}"
                       for r in inputs.records if isinstance(r.get("versions"), dict)})
    where = ", ".join(f"{label} ({n} recorded runs)" for label, n in counts.items())
    return f"**Machine:** the numbers below were measured on {where}" + "".join(f"; {v}" for v in versions) + "."


def seed_table(best: pd.DataFrame, notebooks: Iterable[str] = ()) -> pd.DataFrame:
    """Each seed's model: what its write-up reports and what we measured (full profile, else default)."""
    rows, notebooks = [], set(notebooks)
    for ref in reference.SEED_REFERENCES:
        found = rows_for_model(best, ref.model, ref.notebook)
        row = {"seed write-up": code(reference.seed_file(ref)), "model": code(ref.model),
               "notebook": notebook_cell(ref.notebook, notebooks), "write-up reports": ref.reported}
        if found.empty:
            row.update({"we measured (test)": NOT_YET_RUN, "Δ vs write-up": DASH, "profile": DASH, "epochs": DASH,
                        "train time (min)": DASH, "reproduce with": DASH})
        else:
            hit = found.iloc[0]
            row.update({"notebook": notebook_cell(hit["notebook"], notebooks),
                        "we measured (test)": accuracy_cell(hit["mean"], hit["std"], hit["n"]),
                        "Δ vs write-up": delta_pp(hit["mean"], ref.test_accuracy, ref.approximate),
                        "profile": profile_cell(hit["profile"]),
                        "epochs": epochs_cell(hit["epochs_min"], hit["epochs_max"]),
                        "train time (min)": f"{hit['minutes']:.1f}",
                        "reproduce with": "<br>".join(code(c) for c in hit["commands"])})
        rows.append(row)
    return pd.DataFrame(rows)


def best_of_family(members: pd.DataFrame) -> pd.Series:
    """The family's best model, chosen on validation accuracy so that the test set stays unused for selection.

    Members without a validation score (records written before the scikit-learn baselines stored one) are ranked
    by test accuracy, but only when no member of the family has one.
    """
    key = "val_mean" if members["val_mean"].notna().any() else "mean"
    ranked = members.dropna(subset=[key]) if key == "val_mean" else members
    return ranked.sort_values([key, "model"], ascending=[False, True]).iloc[0]


def family_table(best: pd.DataFrame, notebooks: Iterable[str] = ()) -> pd.DataFrame:
    """The best model of each family (chosen on validation accuracy) against the paper's best baseline and human
    performance."""
    top = max(reference.PAPER_BASELINES, key=lambda b: b.test_accuracy)
    top_label, human = f"Δ vs paper's best ({top.name.split('(')[0]}, {percent(top.test_accuracy)})", reference.HUMAN
    human_label = f"Δ vs human ({percent(human.test_accuracy)})"
    rows = []
    for family in FAMILIES:
        members = best[best["family"] == family] if not best.empty else best
        if members.empty:
            rows.append({"family": family, "best model": NOT_YET_RUN, "notebook": DASH, "test accuracy": DASH,
                         "profile": DASH, top_label: DASH, human_label: DASH})
            continue
        hit = best_of_family(members)
        rows.append({"family": family, "best model": code(hit["model"]),
                     "notebook": notebook_cell(hit["notebook"], notebooks),
                     "test accuracy": accuracy_cell(hit["mean"], hit["std"], hit["n"]),
                     "profile": profile_cell(hit["profile"]), top_label: delta_pp(hit["mean"], top.test_accuracy),
                     human_label: delta_pp(hit["mean"], human.test_accuracy)})
    return pd.DataFrame(rows)


def references_table(best: pd.DataFrame) -> pd.DataFrame:
    """The paper's baselines and human performance, each next to our run of the same method if any."""
    rows = []
    for baseline in (*reference.PAPER_BASELINES, reference.HUMAN):
        ours = rows_for_model(best, baseline.model, "") if baseline.model else pd.DataFrame()
        if baseline.model is None:
            measured = DASH
        elif ours.empty:
            measured = f"{code(baseline.model)}: {NOT_YET_RUN}"
        else:
            hit = ours.iloc[0]
            measured = f"{code(baseline.model)}: {accuracy_cell(hit['mean'], hit['std'], hit['n'])}, {hit['profile']}"
        source = "paper, Table 3" if baseline.family == "classical" else "dataset README"
        rows.append({"reference": baseline.name, "test accuracy": percent(baseline.test_accuracy),
                     "source": f"[{source}]({baseline.url})", "our run of the same method": measured})
    return pd.DataFrame(rows)


def notebook_run(profile: str, notebook: str, inputs: Inputs) -> dict | None:
    """The runtime record of ``notebook`` in ``profile``. A full-profile run often spans several sittings and
    reuses the models finished in earlier ones, so its last run's wall time understates what the profile costs:
    where the training time summed over the notebook's full-profile records is larger, that sum stands in
    (marked ``"sittings": True``; it has no CPU time). Records of runs with another ``-p seed`` (a split drawn
    with another seed, see :func:`fmnist_helpers.results.run_seed`) are extra repeats the profile does not run,
    so they are not counted."""
    run = inputs.notebook_runs.get((profile, notebook))
    if profile != "full":
        return run
    trained = sum(r.get("wall_time_s") or 0.0 for r in inputs.records
                  if r["profile"] == "full" and r["notebook"] == notebook and run_seed(r) == 0)
    if trained and (run is None or not run.get("ok", True) or trained > (run.get("wall_time_s") or 0.0)):
        return {"notebook": notebook, "profile": profile, "ok": True, "wall_time_s": trained, "cpu_time_s": None,
                "sittings": True}
    return run


def _runtime_cell(run: dict | None, from_benchmark: bool) -> str:
    if run is None:
        return NOT_YET_RUN
    if run.get("sittings"):
        return f"{duration(run['wall_time_s'])} of training ²"
    text = f"{duration(run.get('wall_time_s'))} wall, {duration(run.get('cpu_time_s'))} CPU"
    if not run.get("ok", True):
        text += " (failed)"
    return text + (" ¹" if from_benchmark else "")


def benchmark_notebook_runs(benchmark: dict | None) -> dict[tuple[str, str], dict]:
    """The benchmark's notebook timings keyed by (profile, notebook)."""
    section = (benchmark or {}).get("notebooks") or {}
    return {(r["profile"], r["notebook"]): r for r in section.get("results", [])}


def runtime_table(inputs: Inputs) -> pd.DataFrame:
    """Per notebook: wall and CPU time per profile, from runtime records, else from the benchmark."""
    bench = benchmark_notebook_runs(inputs.benchmark)
    notebooks = sorted(set(inputs.notebooks) | {nb for _, nb in inputs.notebook_runs} | {nb for _, nb in bench}
                       | {r["notebook"] for r in inputs.records})
    rows, totals = [], {profile: {"wall_time_s": 0.0, "cpu_time_s": 0.0, "ok": True} for profile in PROFILES}
    from_benchmark = {profile: False for profile in PROFILES}
    for notebook in notebooks:
        row = {"notebook": notebook_cell(notebook, inputs.notebooks)}
        for profile in PROFILES:
            recorded, benchmarked = notebook_run(profile, notebook, inputs), bench.get((profile, notebook))
            run = recorded or benchmarked
            row[profile] = _runtime_cell(run, recorded is None and benchmarked is not None)
            if run is None or not run.get("ok", True):
                totals[profile] = None
            elif totals[profile] is not None:
                totals[profile]["sittings"] = totals[profile].get("sittings") or bool(run.get("sittings"))
                for key in ("wall_time_s", "cpu_time_s"):
                    totals[profile][key] += run.get(key) or 0.0
                from_benchmark[profile] |= recorded is None
        rows.append(row)
    rows.append({"notebook": "**whole workbook**",
                 **{profile: _runtime_cell(total, from_benchmark[profile]) if total else
                    f"{NOT_YET_RUN} (every notebook needed)" for profile, total in totals.items()}})
    return pd.DataFrame(rows, columns=["notebook", *PROFILES])


def benchmark_section(benchmark: dict | None) -> str:
    """Throughput and data-load tables from ``benchmarks/results.json``, with where and how they were measured."""
    if not benchmark:
        return f"Benchmark: {NOT_YET_RUN} (`make benchmark` writes `benchmarks/results.json`)."
    parts = []
    training = benchmark.get("training") or {}
    if training.get("results"):
        settings = training.get("settings", {})
        frame = pd.DataFrame(training["results"])
        table = frame.pivot_table(index="model", columns="precision", values="images_per_s", sort=True)
        table = table.reset_index().rename(columns={"model": "model (images/s)"})
        table = table.map(lambda v: f"{v:,.0f}" if isinstance(v, float) and not math.isnan(v) else
                          (DASH if isinstance(v, float) else code(v)))
        parts.append(f"Training throughput in images/s (from the median step time of {settings.get('steps', '?')} "
                     f"steps of batch {settings.get('batch_size', '?')} after {settings.get('warmup_steps', '?')} "
                     f"warm-up steps), {_measured(training)}:\n\n{markdown_table(table)}")
    execution = benchmark.get("execution") or {}
    if execution.get("results"):
        settings = execution.get("settings", {})
        frame = pd.DataFrame(execution["results"])
        frame = pd.DataFrame({"batch size": frame["batch_size"], "steps per execution": frame["steps_per_execution"],
                              "input": frame["input"].map(code),
                              "images/s": frame["images_per_s"].map(lambda v: f"{v:,.0f}"),
                              "vs the first row": frame["vs_reference"].map(lambda v: f"{v:.2f}×")})
        parts.append(f"Execution settings of {code(settings.get('model', '?'))} in {settings.get('precision', '?')}, "
                     f"one change at a time (images/s over {settings.get('images', 0):,} training images after "
                     f"{settings.get('warmup_images', 0):,} warm-up images, best of {settings.get('repeats', '?')} "
                     f"rounds), {_measured(execution)}:\n\n{markdown_table(frame)}")
    starts = benchmark.get("epoch_starts") or {}
    if starts.get("results"):
        settings = starts.get("settings", {})
        frame = pd.DataFrame(starts["results"])
        frame = pd.DataFrame({"input": frame["input"].map(code),
                              f"epochs 2–{settings.get('epochs', '?')} (s)": frame["later_epochs_total_s"].map(
                                  lambda v: f"{v:.1f}"),
                              "their first steps (s)": frame["first_steps_total_s"].map(lambda v: f"{v:.2f}"),
                              "slowest first step (s)": frame["max_first_step_s"].map(lambda v: f"{v:.2f}"),
                              "vs the first row": frame["vs_numpy"].map(lambda v: f"{v:.2f}×")})
        parts.append(f"Epoch starts of {code(settings.get('model', '?'))} in {settings.get('precision', '?')}: "
                     f"{settings.get('epochs', '?')} epochs of {settings.get('images', 0):,} training images at batch "
                     f"{settings.get('batch_size', '?')}, fed numpy arrays (Keras' own `tf.data` pipeline, "
                     f"autotuning on) or `fh.shuffled_batches` (autotuning off). A step takes milliseconds, so the time "
                     f"from the start of an epoch to the end of its first step is mostly waiting for the input "
                     f"pipeline; the first epoch, which also traces the model, is left out, "
                     f"{_measured(starts)}:\n\n{markdown_table(frame)}")
    loading = benchmark.get("data_load") or {}
    if loading.get("results"):
        frame = pd.DataFrame(loading["results"])
        frame = pd.DataFrame({"call": frame["call"].map(code), "cache": frame["cache"],
                              "seconds": frame["seconds"].map(lambda s: f"{s:.3f}")})
        parts.append(f"Data loading, {_measured(loading)}:\n\n{markdown_table(frame)}")
    return "\n\n".join(parts) if parts else f"Benchmark: {NOT_YET_RUN}."


def _measured(section: dict) -> str:
    load = section.get("load_average_before")
    return (f"measured {str(section.get('measured_at', '?'))[:10]} on {machine_label(section.get('machine', {}))}"
            + (f" (load average {load:.1f} before the run)" if isinstance(load, (int, float)) else "")
            + f" with {code(section.get('command', '?'))}")


def render_results(inputs: Inputs) -> str:
    """The markdown that goes between the README's markers."""
    best = preferred_profile(summarize_models(inputs.records))
    parts = [
        "_Generated by `make report` (`python -m fmnist_helpers.report`) from the run records in `results/` and "
        "`benchmarks/results.json`; edit the code, not this section._",
        machines_section(inputs),
        "### Seed reproductions\n\n"
        f"Each seed write-up (in `{reference.SEEDS_DIR_LABEL}/`, outside this repository) reports a model and a "
        "number; we rebuild the model and measure it on the official test set. Full-profile numbers where they "
        "exist, else the default profile (labelled). Mean ± standard deviation over seeds; train time is the mean "
        "wall-clock training time per seed on the CPU above.\n\n" + markdown_table(seed_table(best, inputs.notebooks)),
        "### Best model per family\n\nThe best model of each family is the one with the highest validation "
        "accuracy (the scikit-learn baselines included); its test accuracy is then read once. A family whose "
        "records hold no validation score would be ranked by test accuracy.\n\n" + markdown_table(family_table(best, inputs.notebooks)) + "\n\n"
        f"References ({reference.PAPER}; {reference.HUMAN.source}):\n\n" + markdown_table(references_table(best)),
    ]
    if not best.empty:
        parts.append(f"![Test accuracy against training time](figures/{ACCURACY_FIGURE}.png)")
        if _seed_points(best):
            parts.append(f"![Seed write-ups: reported vs measured test accuracy](figures/{SEED_FIGURE}.png)")
    runtimes = markdown_table(runtime_table(inputs))
    if " ¹" in runtimes:
        runtimes += ("\n\n¹ from `benchmarks/results.json` (`python benchmarks/benchmark.py --notebooks`: the notebooks "
                     "in order, in a new, empty output folder, so nothing from an earlier run is reused).")
    if " ²" in runtimes:
        runtimes += ("\n\n² the full profile ran in several sittings, each reusing the models the earlier ones "
                     "finished: the sum of the training times in its records (wall clock, on the CPUs they name), "
                     "leaving out extra repeats run with another `-p seed`.")
    parts.append("### CPU runtime per notebook\n\nWall-clock and CPU time of each notebook run with "
                 "`python -m fmnist_helpers.run --profile <profile> <notebook>`.\n\n" + runtimes)
    parts.append("### Benchmark\n\n" + benchmark_section(inputs.benchmark))
    return "\n\n".join(parts)


# ---------------------------------------------------------------- README
def replace_section(text: str, body: str, source: str = "README.md") -> str:
    """``text`` with everything between the markers replaced by ``body``; everything else untouched."""
    if text.count(BEGIN_MARKER) != 1 or text.count(END_MARKER) != 1:
        raise ValueError(f"{source} must contain {BEGIN_MARKER!r} and {END_MARKER!r} exactly once each")
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise ValueError(f"{source}: {END_MARKER!r} comes before {BEGIN_MARKER!r}")
    return text[:start] + "\n" + body.strip("\n") + "\n" + text[end:]


def updated_readme(inputs: Inputs, readme_path: Path | None = None) -> tuple[str, str]:
    """The README's current text and its text with a regenerated results section."""
    readme_path = paths.README_PATH if readme_path is None else Path(readme_path)
    current = readme_path.read_text(encoding="utf-8")
    return current, replace_section(current, render_results(inputs), str(readme_path))


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_if_changed(target: Path, payload: bytes) -> bool:
    """Write ``payload`` atomically unless ``target`` already holds exactly these bytes; keep the file's mode."""
    if target.is_file() and target.read_bytes() == payload:
        return False
    mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else _default_mode()
    atomic_write(target, lambda handle: (os.fchmod(handle.fileno(), mode), handle.write(payload)))
    return True


# ---------------------------------------------------------------- notebooks' runtime lines
def runtime_line(notebook: str, inputs: Inputs) -> str:
    """The ``Runtime:`` line of a notebook's first cell: its measured wall time per profile, from the runtime
    records (quick mode from the benchmark, whose quick runs are the only ones kept), never an estimate."""
    bench = benchmark_notebook_runs(inputs.benchmark)
    parts = []
    for profile, label in (("default", "default profile"), ("quick", "quick mode"), ("full", "full profile")):
        run = notebook_run(profile, notebook, inputs) or bench.get((profile, notebook))
        ok = run is not None and run.get("ok", True) and run.get("wall_time_s") is not None
        spent = " of training over several sittings" if ok and run.get("sittings") else ""
        parts.append(f"{label} {duration(run['wall_time_s'])}{spent}" if ok else f"{label} {NOT_YET_RUN}")
    return (f"Runtime: {' · '.join(parts)}, measured on a 2-core CPU (see [Results](../README.md#results); "
            "`make report` keeps this line up to date).")


def updated_notebook(path: Path, inputs: Inputs) -> tuple[str, str]:
    """A notebook's current text and its text with a regenerated ``Runtime:`` line (unchanged if it has none)."""
    current = path.read_text(encoding="utf-8")
    nb = nbformat.reads(current, as_version=4)
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown" or not RUNTIME_LINE.search(first.source):
        return current, current
    first.source = RUNTIME_LINE.sub(lambda _: runtime_line(path.stem, inputs), first.source, count=1)
    return current, nbformat.writes(nb) + "\n"


def notebook_updates(inputs: Inputs, notebooks_dir: Path | None = None) -> dict[Path, tuple[str, str]]:
    """``{notebook path: (current text, regenerated text)}`` for every numbered notebook."""
    notebooks_dir = paths.NOTEBOOKS_DIR if notebooks_dir is None else Path(notebooks_dir)
    return {nb: updated_notebook(nb, inputs) for nb in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))}


# ---------------------------------------------------------------- figures
def _seed_points(best: pd.DataFrame) -> list[tuple[reference.SeedReference, pd.Series]]:
    points = []
    for ref in reference.SEED_REFERENCES:
        found = rows_for_model(best, ref.model, ref.notebook)
        if not found.empty and ref.test_accuracy is not None:
            points.append((ref, found.iloc[0]))
    return points


def accuracy_vs_time_figure(best: pd.DataFrame):
    """Test accuracy (mean ± std over seeds) against mean training minutes, one point per model."""
    from matplotlib.figure import Figure

    from fmnist_helpers.plotting import color_for

    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    markers = {"classical": "s", "MLP": "o", "CNN": "^"}
    for row in best[best["family"] != "ablation"].sort_values(["family", "model"]).itertuples():
        std = None if math.isnan(row.std) else 100 * row.std
        ax.errorbar(row.minutes, 100 * row.mean, yerr=std, fmt=markers.get(row.family, "D"), capsize=3,
                    color=color_for(row.model), label=f"{row.model} ({row.profile}, n={row.n})")
    for baseline in (*reference.PAPER_BASELINES, reference.HUMAN):
        ax.axhline(100 * baseline.test_accuracy, color="grey", lw=0.8, ls=":" if baseline.family == "human" else "--")
        ax.annotate(baseline.name.split("(")[0], (0, 100 * baseline.test_accuracy), xycoords=("axes fraction", "data"),
                    fontsize=7, color="grey", va="bottom")
    if best["minutes"].min() > 0 and best["minutes"].max() / best["minutes"].min() > 20:
        ax.set_xscale("log")
    ax.set(xlabel="training time per seed (min, CPU wall clock)", ylabel="test accuracy (%)",
           title="Test accuracy vs training time (dashed: paper baselines, dotted: human)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="model (profile, seeds)",
              title_fontsize=7)
    return fig


def seed_reproduction_figure(points: list[tuple[reference.SeedReference, pd.Series]]):
    """Reported vs measured test accuracy for each seed model that has been run."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5, 1.2 * len(points) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(points))
    reported = [100 * ref.test_accuracy for ref, _ in points]
    measured = [100 * row["mean"] for _, row in points]
    errors = [math.nan if math.isnan(row["std"]) else 100 * row["std"] for _, row in points]  # n=1: no bar
    ax.bar(x - 0.2, reported, 0.4, color="#bbbbbb", label="write-up reports (hatched: approximate)")
    for i, (ref, _) in enumerate(points):
        if ref.approximate:
            ax.bar(x[i] - 0.2, reported[i], 0.4, color="none", edgecolor="white", hatch="//")
    ax.bar(x + 0.2, measured, 0.4, yerr=errors, capsize=3, color="#1f77b4", label="we measured (mean ± std)")
    ax.set_xticks(x, [f"{ref.seed}\n{ref.model}\n({row['profile']}, n={row['n']})" for ref, row in points],
                  fontsize=7)
    ax.set_ylim(max(0, min(reported + measured) - 5), min(100, max(reported + measured) + 3))
    ax.set(ylabel="test accuracy (%)", title="Seed write-ups: reported vs measured")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _png_bytes(fig) -> bytes:
    from fmnist_helpers.plotting import FIGURE_DPI

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def write_figures(inputs: Inputs) -> list[Path]:
    """Write the summary figures (only when records exist) into the full profile's figures folder."""
    from fmnist_helpers.plotting import figure_path

    best = preferred_profile(summarize_models(inputs.records))
    if best.empty:
        return []
    figures = {ACCURACY_FIGURE: accuracy_vs_time_figure(best)}
    points = _seed_points(best)
    if points:
        figures[SEED_FIGURE] = seed_reproduction_figure(points)
    return [figure_path(name, "full") for name, fig in figures.items()
            if write_if_changed(figure_path(name, "full"), _png_bytes(fig))]


# ---------------------------------------------------------------- command line
def main(argv: Iterable[str] | None = None) -> int:
    """Regenerate (or ``--check``) the README's results section and the notebooks' runtime lines; exit 1 if
    ``--check`` finds either out of date."""
    parser = argparse.ArgumentParser(description="Regenerate the README's results tables and summary figures.")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date; write nothing")
    parser.add_argument("--no-figures", action="store_true", help="only update the README")
    parser.add_argument("--readme", type=Path, help="README to update (default: the repository's)")
    parser.add_argument("--results", type=Path, help="records folder (default: results/)")
    parser.add_argument("--benchmark", type=Path, help="benchmark record (default: benchmarks/results.json)")
    args = parser.parse_args(None if argv is None else list(argv))
    readme = args.readme or paths.README_PATH
    try:
        inputs = load_inputs(args.results, args.benchmark)
        current, new = updated_readme(inputs, readme)
        notebooks = notebook_updates(inputs)
    except (OSError, ValueError, nbformat.reader.NotJSONError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [path.name for path, (old, regenerated) in notebooks.items() if old != regenerated]
    if args.check:
        if current != new:
            print(f"{readme}: the results section is out of date; run `make report`", file=sys.stderr)
        if stale:
            print(f"runtime lines out of date in {', '.join(stale)}; run `make report`", file=sys.stderr)
        if current != new or stale:
            return 1
        print(f"{readme}: results section and notebook runtime lines are up to date")
        return 0
    changed = write_if_changed(readme, new.encode("utf-8"))
    print(f"{readme}: results section {'updated' if changed else 'already up to date'} "
          f"({len(inputs.records)} records)")
    for path, (_, regenerated) in notebooks.items():
        if write_if_changed(path, regenerated.encode("utf-8")):
            print(f"{path.name}: runtime line updated")
    if not args.no_figures:
        for path in write_figures(inputs):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
