"""Machine-readable run records: one JSON file per trained model and seed.

A record names the notebook, model, profile, seed, parameters, metrics, per-epoch history, wall time,
the command that reproduces it, the machine and the library versions. README tables and summary
figures are generated from these files, never typed by hand.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fmnist_helpers import paths
from fmnist_helpers.config import RunConfig, library_versions, machine_info
from fmnist_helpers.data import atomic_write

REQUIRED_KEYS = ("notebook", "model", "profile", "seed", "params", "metrics", "wall_time_s", "command",
                 "machine", "versions", "finished_at")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(paths.REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def record_path(cfg: RunConfig, model: str, seed: int | None = None) -> Path:
    """Where the record of ``model`` trained with ``seed`` (default: the run's seed) lives."""
    if not _NAME.match(model):
        raise ValueError(f"model name {model!r} must be letters, digits, '_', '-', '.' or '+'")
    seed = cfg.seed if seed is None else seed
    return paths.results_dir(cfg.profile) / cfg.notebook / f"{model}__seed{seed}.json"


def record_result(
    cfg: RunConfig,
    model: str,
    metrics: Mapping[str, float],
    wall_time_s: float,
    history: Mapping[str, list] | None = None,
    seed: int | None = None,
    params: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write one record atomically and return its path.

    Args:
        cfg: the notebook's resolved parameters (profile, seed, reproduce command).
        model: a short model name, e.g. ``"seed000_cnn"``.
        metrics: test and validation metrics, e.g. ``{"test_accuracy": 0.91, "test_loss": 0.25}``.
        wall_time_s: training wall time in seconds.
        history: Keras ``History.history``: one list per metric, one value per epoch.
        seed: the seed of this model if it differs from the run's seed (multi-seed sweeps).
        params: model-specific settings (epochs, batch size, learning rate, ...); merged over ``cfg``.
        **extra: anything else worth keeping (parameter count, images/s, paths of saved models).
    """
    seed = cfg.seed if seed is None else seed
    record = {
        "notebook": cfg.notebook,
        "model": model,
        "profile": cfg.profile,
        "seed": int(seed),
        "run_seed": int(cfg.seed),  # the run's seed, which split the data; differs from seed for extra seeds
        "params": _jsonable({**cfg.values, **(params or {}), "seed": int(seed)}),
        "metrics": _jsonable(dict(metrics)),
        "history": _jsonable(dict(history or {})),
        "wall_time_s": round(float(wall_time_s), 3),
        "command": cfg.command(),
        "machine": machine_info(),
        # Other processes slow training down: timings taken under different loads are not comparable.
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "versions": library_versions(),
        "git_commit": _git_commit(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **_jsonable(extra),
    }
    target = record_path(cfg, model, seed)
    payload = json.dumps(record, indent=1, sort_keys=False, allow_nan=False).encode()
    atomic_write(target, lambda handle: handle.write(payload))
    return target


def load_record(cfg: RunConfig, model: str, seed: int | None = None) -> dict | None:
    """The finished record of ``model`` in this profile and notebook, or None (so a re-run can skip it)."""
    path = record_path(cfg, model, seed)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_records(root: Path | None = None, profile: str | None = None, notebook: str | None = None) -> list[dict]:
    """All records under ``root`` (default ``results/``), optionally filtered by profile and notebook."""
    root = paths.RESULTS_DIR if root is None else Path(root)
    records = []
    for path in sorted(root.rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable results record ({exc}); delete it and re-run its command") from None
        if not isinstance(record, dict) or not all(k in record for k in REQUIRED_KEYS):
            continue
        if (profile is None or record["profile"] == profile) and (notebook is None or record["notebook"] == notebook):
            record["_path"] = str(path)
            records.append(record)
    return records


def train_seconds(record: dict) -> float:
    """Training time over all sessions: the per-epoch times in the history if complete, else ``wall_time_s``.

    ``wall_time_s`` covers only the last session of a run that was interrupted and resumed.
    """
    epoch_times = record.get("history", {}).get("epoch_time_s") or []
    if epoch_times and len(epoch_times) == record.get("epochs_run"):
        return float(sum(epoch_times))
    return float(record["wall_time_s"])


def records_frame(records: list[dict]):
    """A pandas DataFrame with one row per record: notebook, model, seed, profile, metrics, wall time and the
    training time over all sessions (``train_time_s``)."""
    import pandas as pd

    rows = []
    for record in records:
        row = {k: record[k] for k in ("notebook", "model", "profile", "seed", "wall_time_s", "command")}
        row["train_time_s"] = train_seconds(record)
        row.update(record["metrics"])
        for key in ("params_count", "epochs_run", "images_per_s"):
            if key in record:
                row[key] = record[key]
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(records: list[dict], metric: str = "test_accuracy"):
    """Mean, std and count of ``metric`` and mean wall time per (notebook, model), over seeds."""
    frame = records_frame(records)
    if frame.empty or metric not in frame:
        return frame
    grouped = frame.groupby(["notebook", "model"], sort=False)
    out = grouped[metric].agg(["mean", "std", "count"]).rename(columns=lambda c: f"{metric}_{c}")
    out["wall_time_s_mean"] = grouped["wall_time_s"].mean()
    return out.reset_index()


def run_seed(record: Mapping[str, Any]) -> int:
    """The seed of the run that trained a model, which is the seed its train/validation split was drawn with.
    It differs from the model's own ``seed`` for the extra seeds of a multi-seed run. Records written before
    ``run_seed`` was stored give it in their reproduce ``command`` (``-p seed N``; absent means 0)."""
    if "run_seed" in record:
        return int(record["run_seed"])
    match = re.search(r"(?:^|\s)-p seed (\d+)(?:\s|$)", record.get("command") or "")
    return int(match.group(1)) if match else 0


def tta_used(metrics: Mapping[str, Any]) -> str:
    """The test-time augmentation a record's test score used (records before ``tta_used`` say ``flip_tta_used``)."""
    if "tta_used" in metrics:
        return metrics["tta_used"]
    return "flip" if metrics.get("flip_tta_used") else "none"
