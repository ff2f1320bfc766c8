"""Shared fixtures: tiny hand-made IDX files and an isolated output folder."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an unsigned-byte array in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(array)
    path = path.with_name(path.name + ".gz") if compress else path
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Path:
    """A folder with four tiny, valid IDX files (not the real data: their digests will not match)."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return tmp_path


@pytest.fixture(autouse=True)
def isolated_outputs(tmp_path_factory, monkeypatch):
    """Send every run output of a unit test to a temporary folder, never to tracked files."""
    out = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("FMNIST_OUTPUT_DIR", str(out))
    return out
