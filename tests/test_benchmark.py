"""The benchmark script's measurements work and reject bad arguments (timings themselves are not tested)."""
import importlib.util

import numpy as np
import pytest

from fmnist_helpers import paths

spec = importlib.util.spec_from_file_location("benchmark", paths.REPO_ROOT / "benchmarks" / "benchmark.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


@pytest.mark.parametrize("feed", benchmark.EPOCH_INPUTS)
def test_epoch_starts_times_every_epoch_and_its_first_step(feed):
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 300)
    row = benchmark.measure_epoch_starts("bn_cnn", "float32", x, y, epochs=3, batch_size=64, feed=feed)
    assert row["input"] == feed and len(row["epoch_times_s"]) == len(row["first_step_s"]) == 3
    assert all(0 < wait <= epoch for wait, epoch in zip(row["first_step_s"], row["epoch_times_s"]))
    assert row["later_epochs_total_s"] == pytest.approx(sum(row["epoch_times_s"][1:]), abs=0.02)
    assert row["first_steps_total_s"] == pytest.approx(sum(row["first_step_s"][1:]), abs=0.02)
    assert 0 < row["max_first_step_s"] <= row["first_steps_total_s"] + 0.001


@pytest.mark.parametrize("argv, message", [(["--epochs", "1"], "at least 2"), (["--epoch-images", "0"], "epoch-images"),
                                           (["--epoch-model", "resnet"], "epoch-model")])
def test_bad_epoch_start_arguments_are_rejected(argv, message):
    with pytest.raises(ValueError, match=message):
        benchmark.parse_args(argv)
