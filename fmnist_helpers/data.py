"""Load the real Fashion-MNIST, offline first, verified byte for byte.

Search order for the four IDX files (``name`` or ``name.gz``):

1. the ``data_dir`` argument, 2. ``$FMNIST_DATA_DIR``, 3. the repository's ``data/``,
4. the Keras cache ``~/.keras/datasets/fashion-mnist/``, 5. ``/usr/share/datasets/fashion-mnist/``
(Debian/Ubuntu package ``dataset-fashion-mnist``), then 6. the official download into ``data/``.

The decompressed bytes of every file are checked against SHA-256 digests. They are the digests of
the official release; Debian recompressed the ``.gz`` files, so only the decompressed content is compared.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmnist_helpers import paths

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)

# SHA-256 of the *decompressed* IDX files of the official release (checked against Debian's copy).
FILE_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
EXPECTED_COUNTS = {"train": 60_000, "t10k": 10_000}
DOWNLOAD_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
SYSTEM_DIRS = (
    Path.home() / ".keras" / "datasets" / "fashion-mnist",
    Path("/usr/share/datasets/fashion-mnist"),
)
INSTALL_HINT = (
    "Install the data with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
    "or put the four official IDX files in data/, or set FMNIST_DATA_DIR to a folder holding them, "
    "or run `python -m fmnist_helpers.data --download` on a machine with internet."
)


class DataError(RuntimeError):
    """Missing, corrupt or mismatched Fashion-MNIST files. The message names the file, the problem and the fix."""


@dataclass(frozen=True)
class FashionMNIST:
    """A train/validation/test split. Images are float32 in [0, 1]; labels are uint8 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path

    def summary(self) -> str:
        """One line with the split sizes and where the files came from."""
        return (f"train {len(self.y_train):,} · validation {len(self.y_val):,} · test {len(self.y_test):,}"
                f" · image shape {self.x_train.shape[1:]} · from {self.source}")


def read_idx(path: Path | str, expected_ndim: int | None = None) -> np.ndarray:
    """Parse one IDX file (plain or gzip) of unsigned bytes and validate its header against its size."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. {INSTALL_HINT}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read or decompressed ({exc}). The file is corrupt or truncated; "
                        f"delete it and reinstall or re-download it. {INSTALL_HINT}") from None
    return parse_idx(raw, path, expected_ndim)


def parse_idx(raw: bytes, path: Path | str = "<bytes>", expected_ndim: int | None = None) -> np.ndarray:
    """Turn IDX bytes into an array, checking magic number, dimensions and payload length."""
    fix = "delete the file and reinstall or re-download it"
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header; {fix}.")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: bad magic number {raw[:4].hex()} (expected 0000 08 0n for unsigned bytes); "
                        f"this is not an IDX file of Fashion-MNIST; {fix}.")
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: has {ndim} dimensions, expected {expected_ndim}; "
                        f"images and labels files may be swapped; {fix}.")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: header truncated ({len(raw)} bytes); {fix}.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header_len + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected_len:
        problem = "truncated" if len(raw) < expected_len else "has trailing bytes"
        raise DataError(f"{path}: {problem}: header says shape {shape} ({expected_len} bytes) "
                        f"but the file has {len(raw)} bytes; {fix}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs(data_dir: Path | str | None) -> list[tuple[Path, bool]]:
    """Directories to search, each with a flag saying whether the user named it explicitly."""
    dirs: list[tuple[Path, bool]] = []
    if data_dir is not None:
        dirs.append((Path(data_dir), True))
    if os.environ.get("FMNIST_DATA_DIR"):
        dirs.append((Path(os.environ["FMNIST_DATA_DIR"]), True))
    dirs.append((paths.DATA_DIR, False))
    dirs.extend((d, False) for d in SYSTEM_DIRS)
    return dirs


def locate_files(data_dir: Path | str | None = None, download: bool = True) -> dict[str, Path]:
    """Return the paths of the four IDX files, searching in the documented order.

    A directory you name explicitly (argument or ``$FMNIST_DATA_DIR``) must hold all four files.
    Other places are skipped when they hold none; a place holding only some of them is an error.
    """
    for directory, explicit in _candidate_dirs(data_dir):
        found = {name: _find_file(directory, name) for name in FILE_SHA256}
        missing = [name for name, path in found.items() if path is None]
        if not missing:
            return found  # type: ignore[return-value]
        if explicit or len(missing) < len(FILE_SHA256):
            raise DataError(f"{directory}: missing {', '.join(missing)} (plain or .gz). "
                            f"Put all four official IDX files there. {INSTALL_HINT}")
    if download:
        return download_files(paths.DATA_DIR)
    raise DataError(f"Fashion-MNIST not found in any of {[str(d) for d, _ in _candidate_dirs(data_dir)]}. "
                    f"{INSTALL_HINT}")


def download_files(target_dir: Path, urls: tuple[str, ...] = DOWNLOAD_URLS, timeout: float = 30) -> dict[str, Path]:
    """Download the four official ``.gz`` files into ``target_dir``, verified, each written atomically."""
    target_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for name, digest in FILE_SHA256.items():
        final = target_dir / f"{name}.gz"
        errors = []
        for base in urls:
            try:
                with urllib.request.urlopen(base + final.name, timeout=timeout) as response:
                    payload = response.read()
                _verify(final, name, gzip.decompress(payload), digest)
                atomic_write(final, lambda handle: handle.write(payload))
                break
            except Exception as exc:  # any failure: try the next mirror; nothing half-written is left
                errors.append(f"{base}: {exc}")
        else:
            raise DataError(f"{final}: download failed ({'; '.join(errors)}). {INSTALL_HINT}")
        result[name] = final
    return result


def _verify(path: Path, name: str, raw: bytes, digest: str) -> None:
    actual = hashlib.sha256(raw).hexdigest()
    if actual != digest:
        raise DataError(f"{path}: decompressed content does not match the official {name} "
                        f"(SHA-256 {actual[:12]}…, expected {digest[:12]}…). The file is corrupt, truncated or "
                        f"not Fashion-MNIST; delete it and reinstall or re-download it. {INSTALL_HINT}")


def _read_verified(path: Path, name: str) -> np.ndarray:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read or decompressed ({exc}). The file is corrupt or truncated; "
                        f"delete it and reinstall or re-download it. {INSTALL_HINT}") from None
    _verify(path, name, raw, FILE_SHA256[name])
    return parse_idx(raw, path, expected_ndim=3 if "images" in name else 1)


def _check_pair(images: np.ndarray, labels: np.ndarray, prefix: str, files: dict[str, Path]) -> None:
    image_file, label_file = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{image_file}: images are {images.shape[1:]}, expected {IMAGE_SHAPE}.")
    if len(images) != len(labels):
        raise DataError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels; "
                        f"the files do not belong together. Reinstall both.")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{label_file}: label {labels.max()} is outside 0..{NUM_CLASSES - 1}; reinstall the file.")


def _cache_path(files: dict[str, Path]) -> Path:
    key = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values())
    return paths.DATA_DIR / "cache" / f"fashion-mnist-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def load_arrays(data_dir: Path | str | None = None, download: bool = True, use_cache: bool = True
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Path]:
    """Return ``((x_train, y_train), (x_test, y_test), source_dir)`` as verified uint8 arrays.

    The first load decompresses and verifies the IDX files; it then caches the arrays in ``data/cache/``
    (keyed by the files' path, size and modification time), so later loads take milliseconds.
    """
    files = locate_files(data_dir, download=download)
    source = next(iter(files.values())).parent
    cache = _cache_path(files)
    if use_cache and cache.is_file():
        try:
            with np.load(cache) as npz:
                arrays = (npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"])
            if (arrays[0].shape == (EXPECTED_COUNTS["train"], *IMAGE_SHAPE)
                    and arrays[2].shape == (EXPECTED_COUNTS["t10k"], *IMAGE_SHAPE)):
                return (arrays[0], arrays[1]), (arrays[2], arrays[3]), source
        except Exception:
            pass  # an unreadable cache is rebuilt from the verified files below
    loaded = {name: _read_verified(path, name) for name, path in files.items()}
    for prefix in EXPECTED_COUNTS:
        _check_pair(loaded[f"{prefix}-images-idx3-ubyte"], loaded[f"{prefix}-labels-idx1-ubyte"], prefix, files)
    x_train, y_train = loaded["train-images-idx3-ubyte"], loaded["train-labels-idx1-ubyte"]
    x_test, y_test = loaded["t10k-images-idx3-ubyte"], loaded["t10k-labels-idx1-ubyte"]
    if use_cache:
        _write_cache(cache, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return (x_train, y_train), (x_test, y_test), source


def _write_cache(cache: Path, **arrays: np.ndarray) -> None:
    """Write the cache atomically; a read-only checkout simply goes without one."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda f: np.savez(f, **arrays))
    except OSError:
        pass


def atomic_write(target: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``target``, then rename it into place.

    Readers see the old file or the complete new one, never a half-written file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        # mkstemp creates 0600 files: keep the old file's mode, or use the usual umask default.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~umask)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` items that keeps the class proportions of ``labels``.

    Each class gets its proportional share (largest remainders break ties), drawn at random with ``seed``.
    """
    if not isinstance(size, (int, np.integer)) or not 0 < size <= len(labels):
        raise ValueError(f"sample size must be an integer between 1 and {len(labels)}, got {size!r}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take), kind="stable")[: size - take.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def load_fashion_mnist(
    validation_size: int = 5_000,
    seed: int = 0,
    channel_axis: bool = False,
    train_size: int | None = None,
    test_size: int | None = None,
    data_dir: Path | str | None = None,
    download: bool = True,
) -> FashionMNIST:
    """Load Fashion-MNIST as a train/validation/test split of float32 images in [0, 1].

    Args:
        validation_size: images carved from the 60,000 training images as a stratified, seeded validation set.
        seed: seeds the validation carve and any subsets, so the split is reproducible.
        channel_axis: add a trailing channel axis (``(n, 28, 28, 1)``) for convolutional layers.
        train_size: keep only this many training images (stratified), e.g. for quick mode; None keeps all.
        test_size: keep only this many test images (stratified); None keeps all 10,000.
        data_dir: a folder holding the four IDX files; overrides the search order.
        download: try the official download when no local copy exists.
    """
    (x_all, y_all), (x_test, y_test), source = load_arrays(data_dir, download=download)
    if not isinstance(validation_size, int) or not 0 < validation_size < len(y_all):
        raise ValueError(f"validation_size must be an integer between 1 and {len(y_all) - 1}, got {validation_size!r}")
    val_idx = stratified_indices(y_all, validation_size, seed)
    train_mask = np.ones(len(y_all), dtype=bool)
    train_mask[val_idx] = False
    train_idx = np.flatnonzero(train_mask)
    if train_size is not None:
        if not isinstance(train_size, int) or not 0 < train_size <= len(train_idx):
            raise ValueError(f"train_size must be an integer between 1 and {len(train_idx)} "
                             f"(60,000 minus the validation set), got {train_size!r}")
        train_idx = train_idx[stratified_indices(y_all[train_idx], train_size, seed)]
    if test_size is not None:
        if not isinstance(test_size, int) or not 0 < test_size <= len(y_test):
            raise ValueError(f"test_size must be an integer between 1 and {len(y_test)}, got {test_size!r}")
        test_keep = stratified_indices(y_test, test_size, seed)
        x_test, y_test = x_test[test_keep], y_test[test_keep]

    def scale(images: np.ndarray) -> np.ndarray:
        out = np.multiply(images, np.float32(1 / 255), dtype=np.float32)
        return out[..., None] if channel_axis else out

    return FashionMNIST(scale(x_all[train_idx]), y_all[train_idx], scale(x_all[val_idx]), y_all[val_idx],
                        scale(x_test), y_test.copy(), source)

def stratified_subset(data: FashionMNIST, train_size: int | None, seed: int) -> FashionMNIST:
    """The same split with only ``train_size`` training images (stratified, seeded); validation and test unchanged."""
    if train_size is None or train_size >= len(data.y_train):
        return data
    keep = stratified_indices(data.y_train, int(train_size), seed)
    return FashionMNIST(data.x_train[keep], data.y_train[keep], data.x_val, data.y_val, data.x_test, data.y_test,
                        data.source)


# ---------------------------------------------------------------- scikit-learn baselines


def main(argv: list[str] | None = None) -> int:
    """Command line: check that the data is present and verified, or download it."""
    import argparse

    parser = argparse.ArgumentParser(description="Find, verify (and optionally download) Fashion-MNIST.")
    parser.add_argument("--download", action="store_true", help="download into data/ if no local copy exists")
    parser.add_argument("--data-dir", help="folder holding the four IDX files")
    args = parser.parse_args(argv)
    try:
        (x_train, _), (x_test, _), source = load_arrays(args.data_dir, download=args.download)
    except DataError as exc:
        print(f"error: {exc}")
        return 1
    print(f"Fashion-MNIST verified: {len(x_train):,} train + {len(x_test):,} test images from {source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
