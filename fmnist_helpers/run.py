"""Batch-run the workbook: execute notebooks with papermill under one profile.

    python -m fmnist_helpers.run --profile default            # every notebook
    python -m fmnist_helpers.run --profile full 03_cnn 06     # a subset, by name or number

Executed notebooks go to ``runs/<profile>/notebooks/`` (git-ignored). Per-notebook parameter overrides
come from ``workbook.toml`` (``[profile.notebook]`` tables). A failing notebook is reported with its cell
and error and the others still run; the exit code is 0 only if every notebook passed. Each notebook's
wall and CPU time is recorded next to the results records.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmnist_helpers import paths
from fmnist_helpers.config import PROFILES, library_versions, machine_info
from fmnist_helpers.data import atomic_write

CONFIG_PATH = paths.REPO_ROOT / "workbook.toml"


@dataclass
class Outcome:
    """How one notebook run went."""

    notebook: str
    ok: bool
    wall_time_s: float
    cpu_time_s: float
    error: str = ""


def all_notebooks() -> list[Path]:
    """The numbered notebooks in reading order."""
    return sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(names: list[str]) -> list[Path]:
    """Notebooks matching each name: a full stem (``03_cnn``) or its number (``03`` or ``3``)."""
    notebooks = all_notebooks()
    if not names:
        return notebooks
    chosen = []
    for name in names:
        matches = [nb for nb in notebooks if nb.stem == name or nb.stem[:2] == name.zfill(2)]
        if not matches:
            raise ValueError(f"unknown notebook {name!r}; choose from {', '.join(nb.stem for nb in notebooks)}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def load_overrides(profile: str, config_path: Path = CONFIG_PATH) -> dict[str, dict[str, Any]]:
    """Per-notebook parameters for ``profile`` from the config file (empty if it has none)."""
    if not config_path.is_file():
        return {}
    with open(config_path, "rb") as handle:
        config = tomllib.load(handle)
    section = config.get(profile, {})
    if not isinstance(section, dict):
        raise ValueError(f"{config_path}: [{profile}] must be a table of [{profile}.<notebook>] tables")
    return {name: dict(values) for name, values in section.items()}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_notebook(notebook: Path, profile: str, parameters: dict[str, Any], output_dir: Path) -> Outcome:
    """Execute one notebook with papermill; never raises for a failure inside the notebook."""
    import papermill as pm

    output = output_dir / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    saved_quick = os.environ.pop("FMNIST_QUICK", None)  # the profile decides, not the caller's environment
    if profile == "quick":
        os.environ["FMNIST_QUICK"] = "1"
    start_wall, start_cpu = time.perf_counter(), _cpu_seconds()
    try:
        pm.execute_notebook(str(notebook), str(output), parameters={"profile": profile, **parameters},
                            kernel_name="python3", log_output=True, progress_bar=False,
                            cwd=str(paths.NOTEBOOKS_DIR))
        error = ""
    except pm.PapermillExecutionError as exc:
        error = f"cell {exc.exec_count} ({exc.cell_index}): {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, bad notebook, ...: report and go on with the next notebook
        error = f"{type(exc).__name__}: {exc}"
    finally:
        os.environ.pop("FMNIST_QUICK", None)
        if saved_quick is not None:
            os.environ["FMNIST_QUICK"] = saved_quick
    return Outcome(notebook.stem, not error, time.perf_counter() - start_wall, _cpu_seconds() - start_cpu, error)


def record_outcome(outcome: Outcome, profile: str, parameters: dict[str, Any]) -> Path:
    """Write the notebook's runtime record to ``<results>/_notebooks/<notebook>.json``."""
    record = {
        "notebook": outcome.notebook, "profile": profile, "ok": outcome.ok, "error": outcome.error,
        "wall_time_s": round(outcome.wall_time_s, 1), "cpu_time_s": round(outcome.cpu_time_s, 1),
        "parameters": parameters, "command": f"python -m fmnist_helpers.run --profile {profile} {outcome.notebook}",
        "machine": machine_info(), "versions": library_versions(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    target = paths.results_dir(profile) / "_notebooks" / f"{outcome.notebook}.json"
    payload = json.dumps(record, indent=1).encode()
    atomic_write(target, lambda handle: handle.write(payload))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the workbook's notebooks with papermill.")
    parser.add_argument("notebooks", nargs="*", help="names or numbers (default: all)")
    parser.add_argument("--profile", default="default", choices=PROFILES)
    parser.add_argument("--config", type=Path, default=CONFIG_PATH, help="per-notebook parameter overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="    %(message)s")  # papermill streams cell output here
    try:
        notebooks = select_notebooks(args.notebooks)
        overrides = load_overrides(args.profile, args.config)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output_dir = paths.runs_dir(args.profile) / "notebooks"
    outcomes = []
    for i, notebook in enumerate(notebooks, 1):
        parameters = overrides.get(notebook.stem, {})
        print(f"[{i}/{len(notebooks)}] {notebook.stem} · profile {args.profile}"
              + (f" · {parameters}" if parameters else ""), flush=True)
        outcome = run_notebook(notebook, args.profile, parameters, output_dir)
        record_outcome(outcome, args.profile, parameters)
        outcomes.append(outcome)
        status = "ok" if outcome.ok else f"FAILED at {outcome.error}"
        print(f"[{i}/{len(notebooks)}] {notebook.stem}: {status} · {outcome.wall_time_s:.0f} s wall, "
              f"{outcome.cpu_time_s:.0f} s CPU", flush=True)
    failed = [o for o in outcomes if not o.ok]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} notebooks passed; executed copies in {output_dir}")
    for outcome in failed:
        print(f"  {outcome.notebook}: {outcome.error}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
