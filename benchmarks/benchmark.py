"""Benchmark the workbook on this machine: training throughput, data loading and (optionally) notebook runtimes.

    python benchmarks/benchmark.py                      # throughput + data loading (a few minutes on 2 cores)
    python benchmarks/benchmark.py --steps 20           # a smoke test
    python benchmarks/benchmark.py --notebooks 01 03    # also time notebooks 01 and 03 (quick and default)
    python benchmarks/benchmark.py --skip-training --skip-data --skip-epochs   # only the execution settings
    python benchmarks/benchmark.py --skip-training --skip-data --skip-execution  # only the epoch starts

(a) Training throughput in images/s of representative models on the real data (a small batch-normalized
CNN also with the augmentation layers of notebook 03, to show what augmentation costs per step), in float32
and, where the CPU has native bf16, in ``mixed_bfloat16``: the timed steps follow warm-up steps inside one
``fit`` call, so tracing and data-adapter set-up are excluded. (a') Execution settings of one small CNN
(``--execution-model``) in the notebooks' precision: batch size, ``steps_per_execution`` and a ``tf.data``
pipeline against numpy arrays, one change at a time from batch 128, one step per execution, numpy input; every
setting trains on the same number of images and is measured ``--repeats`` times in turn (the best is kept).
(a'') Epoch starts (``--epoch-model``): several epochs of one model, fed numpy arrays (Keras builds a
``tf.data`` pipeline with autotuning on) and fed ``fh.shuffled_batches`` (autotuning off), with the wait from the
start of each epoch to the end of its first step; (a) and (a') time steps inside one epoch and cannot see it.
(b) Cold load (no parsed-array cache: ``paths.DATA_DIR`` points at an empty temporary folder) and warm load of
``load_arrays`` and ``load_fashion_mnist``. (c) With ``--notebooks``, each notebook's wall and CPU time via
``python -m fmnist_helpers.run --profile P NB`` (this executes the notebooks for real, in order, in a new empty
output folder per profile, so that no finished run is reused; their records and figures go to that folder and
are deleted afterwards).

Results are printed and written atomically to ``benchmarks/results.json`` with the machine, library versions,
date and command. Sections not measured in this run are kept from the previous file, each with its own
machine, date and command. ``make report`` quotes them in the README.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fmnist_helpers as fh
from fmnist_helpers import data, paths, run
from fmnist_helpers.config import library_versions, machine_info

OUTPUT_PATH = Path(__file__).resolve().parent / "results.json"
MODELS = ("mlp_256_128_32", "seed003_cnn", "bn_cnn", "bn_cnn_flip", "bn_cnn_flip_shift_erase")
PIPELINES = ("numpy", "tf.data")
EXECUTION_SETTINGS = (  # (batch size, steps per execution, input): the first is the reference
    (128, 1, "numpy"), (32, 1, "numpy"), (256, 1, "numpy"), (128, 8, "numpy"), (128, 32, "numpy"), (128, 1, "tf.data"))


# ---------------------------------------------------------------- models
def build_model(name: str, steps_per_execution: int = 1):
    """A compiled model under the current dtype policy; the softmax stays float32 under mixed precision."""
    import keras
    from keras import layers, regularizers

    head = [layers.Dense(10), layers.Activation("softmax", dtype="float32")]
    if name == "mlp_256_128_32":  # seed 002's MLP
        body = [layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(128, activation="relu"),
                layers.Dense(32, activation="relu")]
    elif name == "seed003_cnn":  # seed 003's CNN
        body = [layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.25),
                layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(), layers.Dropout(0.25),
                layers.Flatten(),
                layers.Dense(128, activation="relu", kernel_regularizer=regularizers.L1L2(1e-5, 1e-4)),
                layers.Dropout(0.5)]
    elif name.startswith("bn_cnn"):  # a small batch-normalized CNN, with the augmentation its name asks for
        body = [*fh.augmentation_layers(flip="_flip" in name, shift_erase=name.endswith("_shift_erase")),
                layers.Conv2D(32, 3, padding="same", use_bias=False), layers.BatchNormalization(),
                layers.Activation("relu"), layers.MaxPooling2D(),
                layers.Conv2D(64, 3, padding="same", use_bias=False), layers.BatchNormalization(),
                layers.Activation("relu"), layers.MaxPooling2D(),
                layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.3)]
    else:
        raise ValueError(f"unknown benchmark model {name!r}; choose from {', '.join(MODELS)}")
    model = keras.Sequential([keras.Input((28, 28, 1)), *body, *head], name=name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)
    return model


def _step_timer():
    """A Keras callback that notes the time at the end of every training batch (of every execution, that is:
    with ``steps_per_execution`` k, Keras calls it once per k steps)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.times: list[float] = []

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter())

    return StepTimer()


def measure_throughput(name: str, precision: str, x: np.ndarray, y: np.ndarray, steps: int, warmup: int,
                       batch_size: int, steps_per_execution: int = 1, pipeline: str = "numpy") -> dict[str, Any]:
    """Images/s of ``steps`` training steps that follow ``warmup`` steps in the same ``fit`` call.

    ``images_per_s`` comes from the median step time, which other processes on a shared machine disturb
    least; ``images_per_s_mean`` from the total time of the timed steps. Both step counts are rounded up to
    whole executions of ``steps_per_execution`` steps. ``pipeline`` feeds numpy arrays to ``fit`` or a batched,
    prefetching ``tf.data.Dataset`` of the same images.
    """
    import keras
    import tensorflow as tf

    fh.one_of(PIPELINES)("pipeline", pipeline)
    warmup, steps = (-(-count // steps_per_execution) * steps_per_execution for count in (warmup, steps))
    fh.use_precision(precision)
    try:
        fh.set_seed(0)  # as in the notebooks: train_and_record seeds with deterministic ops
        model = build_model(name, steps_per_execution)
        needed = (steps + warmup) * batch_size
        index = np.arange(needed) % len(y)  # repeat the data if the steps need more than one pass
        timer = _step_timer()
        if pipeline == "tf.data":
            inputs = tf.data.Dataset.from_tensor_slices((x[index], y[index])).batch(batch_size)
            model.fit(inputs.prefetch(tf.data.AUTOTUNE), epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        else:
            model.fit(x[index], y[index], batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                      callbacks=[timer])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    execution_times = np.diff(timer.times[warmup // steps_per_execution - 1:])  # the timed executions
    median = float(np.median(execution_times)) / steps_per_execution  # per step
    return {"model": name, "precision": precision, "params_count": int(model.count_params()),
            "images_per_s": round(batch_size / median, 1), "ms_per_step": round(1000 * median, 2),
            "images_per_s_mean": round(batch_size * steps / float(execution_times.sum()), 1)}


def benchmark_training(models: list[str], precisions: list[str], steps: int, warmup: int,
                       batch_size: int) -> dict[str, Any]:
    """Throughput of every model in every precision on the real training images."""
    split = fh.load_fashion_mnist(channel_axis=True)
    results = []
    for name in models:
        for precision in precisions:
            row = measure_throughput(name, precision, split.x_train, split.y_train, steps, warmup, batch_size)
            print(f"  {name:16s} {precision:15s} {row['images_per_s']:>9,.0f} images/s "
                  f"({row['ms_per_step']:.1f} ms/step)", flush=True)
            results.append(row)
    return {"settings": {"steps": steps, "warmup_steps": warmup, "batch_size": batch_size, "deterministic_ops": True,
                         "train_images": int(len(split.y_train))}, "results": results}


def benchmark_execution(name: str, precision: str, steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Throughput of one model under each of :data:`EXECUTION_SETTINGS`, on the same number of images each.

    ``steps`` and ``warmup`` count steps of batch 128; other batch sizes take as many images. The settings are
    measured in turn, ``repeats`` rounds, and each keeps its best round (interference only ever slows a run).
    """
    split = fh.load_fashion_mnist(channel_axis=True)
    rounds: dict[tuple, list[dict]] = {setting: [] for setting in EXECUTION_SETTINGS}
    for _ in range(repeats):
        for batch_size, per_execution, pipeline in EXECUTION_SETTINGS:
            rounds[(batch_size, per_execution, pipeline)].append(measure_throughput(
                name, precision, split.x_train, split.y_train, max(1, steps * 128 // batch_size),
                max(1, warmup * 128 // batch_size), batch_size, per_execution, pipeline))
    results = []
    for (batch_size, per_execution, pipeline), rows in rounds.items():
        best = max(rows, key=lambda row: row["images_per_s_mean"])
        results.append({"batch_size": batch_size, "steps_per_execution": per_execution, "input": pipeline,
                        "images_per_s": best["images_per_s_mean"],
                        "rounds_images_per_s": [row["images_per_s_mean"] for row in rows]})
    reference = results[0]["images_per_s"]
    for row in results:
        row["vs_reference"] = round(row["images_per_s"] / reference, 3)
        print(f"  batch {row['batch_size']:4d} · {row['steps_per_execution']:2d} steps per execution · "
              f"{row['input']:8s} {row['images_per_s']:>8,.0f} images/s ({row['vs_reference']:.2f}x)", flush=True)
    return {"settings": {"model": name, "precision": precision, "images": steps * 128, "warmup_images": warmup * 128,
                         "repeats": repeats, "throughput": "images/s over all timed steps, best round",
                         "deterministic_ops": True}, "results": results}


EPOCH_INPUTS = ("numpy", "shuffled_batches")


def measure_epoch_starts(name: str, precision: str, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
                         feed: str) -> dict[str, Any]:
    """Per-epoch wall times of ``epochs`` shuffled epochs, and per epoch the time to the end of its first step.

    ``feed`` is ``"numpy"`` (the arrays as they are, shuffled by Keras) or ``"shuffled_batches"``. The first
    epoch also traces the model, so the summary leaves it out.
    """
    import keras

    fh.one_of(EPOCH_INPUTS)("feed", feed)
    fh.use_precision(precision)
    try:
        fh.set_seed(0)
        model = build_model(name)
        timer = _epoch_start_timer()
        if feed == "numpy":
            model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
        else:
            model.fit(fh.shuffled_batches(x, y, batch_size, seed=0), epochs=epochs, shuffle=False, verbose=0,
                      callbacks=[timer])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    later_epochs, later_waits = np.array(timer.epoch_times[1:]), np.array(timer.first_step_times[1:])
    return {"input": feed, "epoch_times_s": [round(t, 3) for t in timer.epoch_times],
            "first_step_s": [round(t, 3) for t in timer.first_step_times],
            "later_epochs_total_s": round(float(later_epochs.sum()), 2),
            "first_steps_total_s": round(float(later_waits.sum()), 2),
            "max_first_step_s": round(float(later_waits.max()), 3)}


def benchmark_epoch_starts(name: str, precision: str, images: int, epochs: int) -> dict[str, Any]:
    """:func:`measure_epoch_starts` for each of :data:`EPOCH_INPUTS`, on the same stratified subset."""
    split = fh.stratified_subset(fh.load_fashion_mnist(channel_axis=True), images, seed=0)
    results = []
    for feed in EPOCH_INPUTS:
        row = measure_epoch_starts(name, precision, split.x_train, split.y_train, epochs, 128, feed)
        results.append(row)
        print(f"  {feed:17s} epochs 2-{epochs}: {row['later_epochs_total_s']:7.1f} s, of which their first steps "
              f"{row['first_steps_total_s']:.2f} s (slowest {row['max_first_step_s']:.2f} s)", flush=True)
    reference = results[0]["later_epochs_total_s"]
    for row in results:
        row["vs_numpy"] = round(row["later_epochs_total_s"] / reference, 3)
    return {"settings": {"model": name, "precision": precision, "images": int(len(split.y_train)), "epochs": epochs,
                         "batch_size": 128, "deterministic_ops": True}, "results": results}


def _epoch_start_timer():
    """A Keras callback that notes each epoch's wall time and the time from its start to the end of its first
    step (with steps that take milliseconds, anything beyond that is waiting for the input pipeline)."""
    import keras

    class EpochStartTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.epoch_times: list[float] = []
            self.first_step_times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == 0:
                self.first_step_times.append(time.perf_counter() - self._start)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_times.append(time.perf_counter() - self._start)

    return EpochStartTimer()


# ---------------------------------------------------------------- data loading
def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def benchmark_data_loading(repeats: int = 3) -> dict[str, Any]:
    """Cold (empty cache folder) and warm (cached) load times; the IDX files are read where they live."""
    files = data.locate_files(download=False)
    source = next(iter(files.values())).parent
    original = paths.DATA_DIR
    rows = []
    try:
        for call, label in ((lambda: data.load_arrays(source), "load_arrays()"),
                            (lambda: data.load_fashion_mnist(data_dir=source), "load_fashion_mnist()")):
            with tempfile.TemporaryDirectory(prefix="fmnist-bench-") as tmp:
                paths.DATA_DIR = Path(tmp)  # where the cache lives: empty, so the first call is cold
                cold = _timed(call)
                warm = min(_timed(call) for _ in range(repeats))
            rows += [{"call": label, "cache": "cold (decompress, verify, parse, write cache)",
                      "seconds": round(cold, 3)},
                     {"call": label, "cache": f"warm (cached arrays, best of {repeats})", "seconds": round(warm, 3)}]
            print(f"  {label:22s} cold {cold:6.2f} s · warm {warm:6.3f} s", flush=True)
    finally:
        paths.DATA_DIR = original
    return {"source": str(source), "results": rows}


# ---------------------------------------------------------------- notebooks
def benchmark_notebooks(names: list[str], profiles: list[str]) -> dict[str, Any]:
    """Wall and CPU time of ``python -m fmnist_helpers.run --profile P NB`` for each notebook and profile.

    Each profile runs its notebooks in order in a new, empty output folder (``FMNIST_OUTPUT_DIR``): a notebook
    finds no finished run to reuse except those of the notebooks before it in this call (notebook 06 reads the
    models of 02 and 03), as in a fresh clone, and nothing tracked is written.
    """
    notebooks = run.select_notebooks(names)
    rows = []
    for profile in profiles:
        with tempfile.TemporaryDirectory(prefix=f"fmnist-bench-{profile}-") as output_dir:
            env = {**os.environ, "FMNIST_OUTPUT_DIR": output_dir}
            for notebook in notebooks:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                completed = subprocess.run([sys.executable, "-m", "fmnist_helpers.run", "--profile", profile,
                                            notebook.stem], cwd=paths.REPO_ROOT, env=env)
                wall = time.perf_counter() - start
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                rows.append({"notebook": notebook.stem, "profile": profile, "ok": completed.returncode == 0,
                             "wall_time_s": round(wall, 1), "cpu_time_s": round(cpu, 1)})
                print(f"  {notebook.stem:28s} {profile:8s} {'ok' if rows[-1]['ok'] else 'FAILED':6s} "
                      f"{wall:8.1f} s wall {cpu:8.1f} s CPU", flush=True)
    return {"results": rows, "output": "a new, empty FMNIST_OUTPUT_DIR per profile, notebooks in order"}


# ---------------------------------------------------------------- output
def previous_results(path: Path) -> dict[str, Any]:
    """The last benchmark record, or an empty one (an unreadable file is replaced, with a warning)."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"warning: ignoring unreadable {path} ({exc})", file=sys.stderr)
        return {}


def write_results(path: Path, sections: dict[str, dict], command: str, load_before: float) -> dict[str, Any]:
    """Merge the new sections into the previous record and write it atomically."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    stamp = {"measured_at": now, "command": command, "machine": machine_info(), "versions": library_versions(),
             "load_average_before": round(load_before, 2)}
    record = previous_results(path)
    record.update({"date": now, "command": command, "machine": machine_info(), "versions": library_versions()})
    for name, section in sections.items():
        record[name] = {**stamp, **section}
    payload = (json.dumps(record, indent=1) + "\n").encode()
    data.atomic_write(path, lambda handle: handle.write(payload))
    return record


def print_tables(sections: dict[str, dict]) -> None:
    """One table per measured section."""
    import pandas as pd

    for name, section in sections.items():
        frame = pd.DataFrame(section["results"])
        if name == "training":
            frame = frame.pivot_table(index="model", columns="precision", values="images_per_s", sort=False)
            name = "training throughput (images/s)"
        elif name == "execution":
            frame = frame.drop(columns="rounds_images_per_s")
            name = f"execution settings of {section['settings']['model']} ({section['settings']['precision']})"
        elif name == "epoch_starts":
            frame = frame.drop(columns=["epoch_times_s", "first_step_s"])
            name = f"epoch starts of {section['settings']['model']} ({section['settings']['precision']})"
        print(f"\n{name}:\n{frame.to_string()}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark training throughput, data loading and notebooks.")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per model (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps before them (default 30)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--precisions", default="auto",
                        help="'auto' (float32, plus mixed_bfloat16 if the CPU has bf16) or a comma-separated list")
    parser.add_argument("--execution-model", default="bn_cnn_flip", help="model of the execution-settings section")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the execution settings (default 2)")
    parser.add_argument("--epoch-model", default="bn_cnn_flip", help="model of the epoch-starts section")
    parser.add_argument("--epoch-images", type=int, default=55000,
                        help="training images per epoch in the epoch-starts section (default 55000: all of them)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per input in the epoch-starts section "
                        "(default 6; at least 2, since the first also traces the model)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-execution", action="store_true")
    parser.add_argument("--skip-epochs", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--notebooks", nargs="*", metavar="NB", default=None,
                        help="also time notebooks (all if none named); off by default because it takes long")
    parser.add_argument("--profiles", default="quick,default", help="profiles for --notebooks")
    parser.add_argument("--output", type=Path, default=OUTPUT_PATH, help="where to write the JSON record")
    args = parser.parse_args(argv)
    for name in ("steps", "warmup", "batch_size", "repeats", "epoch_images"):
        fh.positive_int(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.epochs < 2:
        raise ValueError(f"--epochs must be at least 2 (the first epoch also traces the model), got {args.epochs}")
    args.models = fh.subset_of(MODELS)("--models", args.models)
    fh.one_of(MODELS)("--execution-model", args.execution_model)
    fh.one_of(MODELS)("--epoch-model", args.epoch_model)
    precisions = list(dict.fromkeys(["float32", fh.native_precision()])) if args.precisions == "auto" \
        else args.precisions
    args.precisions = fh.subset_of(("float32", "mixed_bfloat16"))("--precisions", precisions)
    args.profiles = fh.subset_of(fh.PROFILES)("--profiles", args.profiles)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = " ".join(["python benchmarks/benchmark.py", *map(shlex.quote, argv)])
    machine = machine_info()
    load = os.getloadavg()[0]
    print(f"benchmark on {machine['cpu']} ({machine['cores']} cores{', bf16' if machine['bf16'] else ''}); "
          f"load average {load:.1f}")
    if load > 0.5 * machine["cores"]:
        print("warning: the machine is busy; timings will be low and noisy (the load average is recorded)")
    sections: dict[str, dict] = {}
    if not args.skip_data:
        print("data loading:")
        sections["data_load"] = benchmark_data_loading()
    if not args.skip_training:
        print(f"training throughput ({args.steps} steps of batch {args.batch_size} after {args.warmup} warm-up):")
        sections["training"] = benchmark_training(args.models, args.precisions, args.steps, args.warmup,
                                                  args.batch_size)
    if not args.skip_execution:
        precision = fh.native_precision()  # the notebooks' precision="auto"
        print(f"execution settings of {args.execution_model} in {precision} ({args.steps} steps of batch 128 or as "
              f"many images, best of {args.repeats} rounds):")
        sections["execution"] = benchmark_execution(args.execution_model, precision, args.steps, args.warmup,
                                                    args.repeats)
    if not args.skip_epochs:
        precision = fh.native_precision()
        print(f"epoch starts of {args.epoch_model} in {precision} ({args.epochs} epochs of {args.epoch_images:,} "
              f"images per input):")
        sections["epoch_starts"] = benchmark_epoch_starts(args.epoch_model, precision, args.epoch_images,
                                                          args.epochs)
    if args.notebooks is not None:
        print("notebooks:")
        try:
            sections["notebooks"] = benchmark_notebooks(args.notebooks, args.profiles)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if not sections:
        print("nothing to measure (everything skipped)")
        return 0
    print_tables(sections)
    write_results(args.output, sections, command, load)
    print(f"wrote {args.output}; `make report` quotes it in the README")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
