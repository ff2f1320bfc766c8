"""Where the workbook reads and writes, resolved from the package, never from the working directory.

nbval starts kernels in ``notebooks/`` and papermill in the caller's directory; both see the same paths.
Set ``FMNIST_OUTPUT_DIR`` to send every output of a run (records and figures included) to another folder;
tests do this so they never modify tracked files.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DATA_DIR = REPO_ROOT / "data"
FIGURES_DIR = REPO_ROOT / "figures"  # published figures (full profile), tracked in git
RESULTS_DIR = REPO_ROOT / "results"  # published run records, tracked in git
README_PATH = REPO_ROOT / "README.md"

PUBLISHED_PROFILES = ("default", "full")


def _redirected() -> bool:
    return bool(os.environ.get("FMNIST_OUTPUT_DIR"))


def runs_dir(profile: str) -> Path:
    """Git-ignored folder for everything a run of ``profile`` writes that is not published."""
    base = Path(os.environ["FMNIST_OUTPUT_DIR"]) if _redirected() else REPO_ROOT / "runs"
    return base / profile


def figures_dir(profile: str, publish: bool = True) -> Path:
    """Figures go to ``figures/`` only in the full profile, and only when ``publish`` (a run with the profile's
    own parameters); other runs never touch tracked files."""
    return FIGURES_DIR if profile == "full" and publish and not _redirected() else runs_dir(profile) / "figures"


def results_dir(profile: str) -> Path:
    """Run records: ``results/<profile>/`` for published profiles, the runs folder for quick mode."""
    if profile in PUBLISHED_PROFILES and not _redirected():
        return RESULTS_DIR / profile
    return runs_dir(profile) / "results"


def models_dir(profile: str) -> Path:
    """Trained ``.keras`` models of a profile (git-ignored); notebook 06 looks for them here."""
    return runs_dir(profile) / "models"


def checkpoints_dir(profile: str) -> Path:
    """Backup-and-restore state of interrupted training runs (git-ignored)."""
    return runs_dir(profile) / "checkpoints"


def repo_relative(path: Path | str) -> str:
    """``path`` relative to the repository when it lies inside it (as records store model files), else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
