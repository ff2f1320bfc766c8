"""The IDX reader, the search order, digest verification, every error path and the split."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import idx_bytes, write_idx
from fmnist_helpers import data

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")


def tiny_digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256(gzip.decompress((folder / f"{name}.gz").read_bytes())).hexdigest()
            for name in data.FILE_SHA256}


@pytest.fixture
def trust_tiny(tiny_idx_dir, monkeypatch):
    """Accept the tiny files' own digests and counts, so the checks after verification can be reached."""
    monkeypatch.setattr(data, "FILE_SHA256", tiny_digests(tiny_idx_dir))
    return tiny_idx_dir


def test_parse_idx_roundtrip():
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    assert np.array_equal(data.parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize("raw, problem", [
    (b"\x00\x00", "too short"),
    (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "bad magic"),
    (b"\x00\x00\x08\x03\x00\x00", "header truncated"),
    (idx_bytes(np.zeros((3, 28, 28)))[:-5], "truncated"),
    (idx_bytes(np.zeros(3)) + b"xx", "trailing bytes"),
])
def test_parse_idx_rejects_bad_bytes(raw, problem):
    with pytest.raises(data.DataError, match=problem) as info:
        data.parse_idx(raw, "some-file")
    assert "some-file" in str(info.value) and "re-download" in str(info.value)


def test_parse_idx_rejects_wrong_dimensions():
    with pytest.raises(data.DataError, match="3 dimensions, expected 1"):
        data.parse_idx(idx_bytes(np.zeros((2, 28, 28))), "labels", expected_ndim=1)


def test_read_idx_reports_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(data.DataError, match="not found"):
        data.read_idx(tmp_path / "nope.gz")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b definitely not gzip")
    with pytest.raises(data.DataError, match="corrupt or truncated"):
        data.read_idx(bad)


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "a", array, compress=False)), array)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "b", array)), array)


def test_digest_mismatch_names_file_and_fix(tiny_idx_dir):
    with pytest.raises(data.DataError, match="does not match the official") as info:
        data.load_arrays(tiny_idx_dir, download=False, use_cache=False)
    assert str(tiny_idx_dir) in str(info.value) and "dataset-fashion-mnist" in str(info.value)


def test_explicit_dir_must_hold_all_files(tmp_path):
    with pytest.raises(data.DataError, match="missing train-images-idx3-ubyte"):
        data.locate_files(tmp_path, download=False)


def test_env_dir_is_searched_before_the_system_dirs(tiny_idx_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tiny_idx_dir))
    found = data.locate_files(download=False)
    assert {p.parent for p in found.values()} == {tiny_idx_dir}


def test_partial_folder_is_an_error_not_skipped(tiny_idx_dir, monkeypatch):
    (tiny_idx_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(data, "_candidate_dirs", lambda _: [(tiny_idx_dir, False)])
    with pytest.raises(data.DataError, match="missing t10k-labels-idx1-ubyte"):
        data.locate_files(download=False)


def test_nothing_found_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_candidate_dirs", lambda _: [(tmp_path, False)])
    with pytest.raises(data.DataError, match="not found in any of"):
        data.locate_files(download=False)


def test_image_label_count_mismatch(trust_tiny, monkeypatch):
    write_idx(trust_tiny / "train-labels-idx1-ubyte", np.arange(19) % 10)
    monkeypatch.setattr(data, "FILE_SHA256", tiny_digests(trust_tiny))
    with pytest.raises(data.DataError, match="20 images but .* has 19 labels"):
        data.load_arrays(trust_tiny, download=False, use_cache=False)


def test_label_out_of_range(trust_tiny, monkeypatch):
    write_idx(trust_tiny / "t10k-labels-idx1-ubyte", np.full(10, 12))
    monkeypatch.setattr(data, "FILE_SHA256", tiny_digests(trust_tiny))
    with pytest.raises(data.DataError, match="label 12 is outside 0..9"):
        data.load_arrays(trust_tiny, download=False, use_cache=False)


def test_images_and_labels_swapped(trust_tiny, monkeypatch):
    for name in ("images", "labels"):
        (trust_tiny / f"t10k-{name}-idx{3 if name == 'images' else 1}-ubyte.gz").rename(trust_tiny / f"{name}.tmp")
    (trust_tiny / "images.tmp").rename(trust_tiny / "t10k-labels-idx1-ubyte.gz")
    (trust_tiny / "labels.tmp").rename(trust_tiny / "t10k-images-idx3-ubyte.gz")
    monkeypatch.setattr(data, "FILE_SHA256", tiny_digests(trust_tiny))
    with pytest.raises(data.DataError, match="swapped"):
        data.load_arrays(trust_tiny, download=False, use_cache=False)


def test_stratified_indices_keep_class_proportions():
    labels = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 100, 100, 100, 100, 50])
    chosen = data.stratified_indices(labels, 190, seed=3)
    assert len(chosen) == len(set(chosen)) == 190
    assert list(np.bincount(labels[chosen])) == [20] * 9 + [10]
    assert np.array_equal(chosen, data.stratified_indices(labels, 190, seed=3))
    assert not np.array_equal(chosen, data.stratified_indices(labels, 190, seed=4))
    with pytest.raises(ValueError, match="between 1 and 950"):
        data.stratified_indices(labels, 0, seed=0)


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_verifies_and_writes_atomically(trust_tiny, tmp_path, monkeypatch):
    target = tmp_path / "downloaded"
    payloads = {f"{name}.gz": (trust_tiny / f"{name}.gz").read_bytes() for name in data.FILE_SHA256}
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        if url.startswith("http://broken/"):
            raise OSError("connection refused")
        return FakeResponse(payloads[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    files = data.download_files(target, urls=("http://broken/", "http://mirror/"))
    assert sorted(p.name for p in target.iterdir()) == sorted(payloads)
    assert all(files[name].read_bytes() == payloads[f"{name}.gz"] for name in data.FILE_SHA256)
    assert any(c.startswith("http://broken/") for c in calls)


def test_failed_download_leaves_nothing_behind(tiny_idx_dir, tmp_path, monkeypatch):
    # The tiny files do not match the real digests, so every download is rejected.
    monkeypatch.setattr(data.urllib.request, "urlopen",
                        lambda url, timeout: FakeResponse((tiny_idx_dir / url.rsplit("/", 1)[1]).read_bytes()))
    with pytest.raises(data.DataError, match="download failed"):
        data.download_files(tmp_path / "dl", urls=("http://mirror/",))
    assert list((tmp_path / "dl").iterdir()) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def explode(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        data.atomic_write(target, explode)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------- the real data
def test_real_data_split(tmp_path, monkeypatch):
    monkeypatch.setattr(data.paths, "DATA_DIR", tmp_path)  # cold load with a fresh cache
    split = data.load_fashion_mnist(validation_size=5000, seed=0)
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (55_000, 5_000, 10_000)
    assert split.x_train.dtype == np.float32 and 0 <= split.x_train.min() and split.x_train.max() == 1
    assert list(np.bincount(split.y_val)) == [500] * 10
    assert list((tmp_path / "cache").iterdir())  # the parsed arrays were cached
    again = data.load_fashion_mnist(validation_size=5000, seed=0, channel_axis=True)
    assert again.x_train.shape == (55_000, 28, 28, 1)
    assert np.array_equal(again.x_val[..., 0], split.x_val)
    other = data.load_fashion_mnist(validation_size=5000, seed=1)
    assert not np.array_equal(other.y_val, split.y_val) or not np.array_equal(other.x_val, split.x_val)


def test_real_data_subsets_and_bad_sizes():
    split = data.load_fashion_mnist(train_size=1000, test_size=500, seed=0)
    assert list(np.bincount(split.y_train)) == [100] * 10 and len(split.y_test) == 500
    for kwargs, message in [({"validation_size": 0}, "validation_size"), ({"train_size": 10**6}, "train_size"),
                            ({"test_size": -1}, "test_size"), ({"validation_size": 2.5}, "validation_size")]:
        with pytest.raises(ValueError, match=message):
            data.load_fashion_mnist(**kwargs)


def test_class_names_in_official_order():
    assert data.CLASS_NAMES[0] == "T-shirt/top" and data.CLASS_NAMES[9] == "Ankle boot"
    assert len(data.CLASS_NAMES) == 10


@pytest.mark.parametrize("name", sorted(data.FILE_SHA256))
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_copy_of_each_real_file(name, damage, tmp_path):
    for source in REAL_DIR.iterdir():
        shutil.copy(source, tmp_path / source.name)
    target = tmp_path / f"{name}.gz"
    raw = gzip.decompress(target.read_bytes())
    if damage == "corrupt":
        damaged = raw[:-1] + bytes([(raw[-1] + 1) % 256])
        target.write_bytes(gzip.compress(damaged, compresslevel=1))
    else:
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(data.DataError) as info:
        data.load_arrays(tmp_path, download=False, use_cache=False)
    assert str(target) in str(info.value) and "re-download" in str(info.value)


def test_atomic_write_keeps_permissions(tmp_path):
    fresh = tmp_path / "fresh.txt"
    data.atomic_write(fresh, lambda handle: handle.write(b"x"))
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    fresh.chmod(0o640)
    data.atomic_write(fresh, lambda handle: handle.write(b"y"))
    assert fresh.stat().st_mode & 0o777 == 0o640
