"""Profiles, quick mode, parameter validation, seeding and the environment stamp.

Every notebook's parameters cell holds plain literals; ``None`` means "use the profile's value".
The cell after it calls :func:`resolve_parameters`, which applies the profile (``FMNIST_QUICK=1``
forces ``quick``), validates every value with a clear ``ValueError``, seeds everything and prints
a one-line stamp of the environment.
"""
from __future__ import annotations

import ast
import json
import os
import platform
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from fmnist_helpers import paths

PROFILES = ("quick", "default", "full")
_active_profile = "default"
_active_changes: tuple[str, ...] = ()


def quick_mode() -> bool:
    """True when ``FMNIST_QUICK`` is set to 1/true/yes: every notebook shrinks to seconds."""
    return os.environ.get("FMNIST_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}


def active_profile() -> str:
    """The profile of the notebook being run (set by :func:`resolve_parameters`)."""
    return _active_profile


def publishes_figures() -> bool:
    """True when the notebook being run may replace the published ``figures/``: the full profile with every
    parameter at the value the saved notebook runs with: the literal in its ``parameters`` cell
    (:func:`notebook_defaults`), or the profile's value where the cell says ``None``. A run with ``-p`` changes
    (another seed, fewer epochs) draws another picture, so its figures go to ``runs/full/figures/`` instead; a
    change of the parameters that only select models (``selectors`` of :func:`resolve_parameters`) does not."""
    return _active_profile == "full" and not _active_changes


def changed_parameters() -> tuple[str, ...]:
    """The parameters whose values in the notebook being run differ from those it runs with as saved (the
    literals of its ``parameters`` cell, or the profile's where the cell says ``None``): ``-p`` changes such as
    ``epochs`` or ``seed``. Parameters that only select models are left out."""
    return _active_changes


# ---------------------------------------------------------------- validators
Validator = Callable[[str, Any], Any]


def positive_int(name: str, value: Any) -> int:
    """Accept a positive integer (``50`` or ``"50"``); reject bools, fractions and non-positive values."""
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def int_between(low: int, high: int, why: str = "") -> Validator:
    """Validator for an integer in ``[low, high]``; ``why`` says what the bounds protect, for the error."""
    def check(name: str, value: Any) -> int:
        number = positive_int(name, value) if low > 0 else non_negative_int(name, value)
        if not low <= number <= high:
            raise ValueError(f"{name} must be between {low:,} and {high:,}{f' ({why})' if why else ''}, got {value!r}")
        return number
    return check


def non_negative_int(name: str, value: Any) -> int:
    """Accept an integer >= 0, such as a seed."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def positive_float(name: str, value: Any) -> float:
    """Accept a finite number > 0, such as a learning rate (``1e-3`` or ``"1e-3"``)."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> float:
    """Accept a number in ``[low, high)``, such as a dropout rate."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number < high:
        raise ValueError(f"{name} must be a number in [{low}, {high}), got {value!r}")
    return number


PRECISIONS = ("auto", "float32", "mixed_bfloat16")  # Keras dtype policies for fmnist_helpers.use_precision


def one_of(options: Iterable[str]) -> Validator:
    """Validator for a single choice among ``options``."""
    options = tuple(options)

    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
        return value
    return check


def subset_of(options: Iterable[str]) -> Validator:
    """Validator for a non-empty selection among ``options``: a list, or a comma-separated string, or "all"."""
    options = tuple(options)

    def check(name: str, value: Any) -> list[str]:
        if isinstance(value, str):
            value = list(options) if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{name} must be a non-empty list (or comma-separated string) from "
                             f"{', '.join(options)}; got {value!r}")
        unknown = [v for v in value if v not in options]
        if unknown:
            raise ValueError(f"{name}: unknown {', '.join(map(repr, unknown))}; valid names are {', '.join(options)}")
        return list(dict.fromkeys(value))
    return check


def optional(validator: Validator) -> Validator:
    """Validator that also accepts None (for example "use all images")."""
    def check(name: str, value: Any) -> Any:
        return None if value is None else validator(name, value)
    return check


def list_of(validator: Validator, what: str) -> Validator:
    """Validator for a non-empty list (or comma-separated string, or single value) whose items pass ``validator``.

    Item errors name the position, e.g. ``learning_rates[1] must be a positive number, got -1``.
    """
    def check(name: str, value: Any) -> list:
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{name} must be a non-empty list of {what} (or a comma-separated string), got {value!r}")
        return [validator(f"{name}[{i}]", item) for i, item in enumerate(value)]
    return check


def optional_subset_of(options: Iterable[str]) -> Validator:
    """Like ``fh.subset_of`` but also accepts ``"none"`` (or an empty list) for "skip all of them"."""
    options = tuple(options)

    def check(name: str, value: Any) -> list[str]:
        if value == [] or (isinstance(value, str) and value.strip().lower() == "none"):
            return []
        if isinstance(value, str):
            value = list(options) if value.strip() == "all" else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list (or comma-separated string) from {', '.join(options)}, "
                             f"or 'none'; got {value!r}")
        unknown = [v for v in value if v not in options]
        if unknown:
            raise ValueError(f"{name}: unknown {', '.join(map(repr, unknown))}; valid names are "
                             f"{', '.join(options)} (or 'none')")
        return list(dict.fromkeys(value))
    return check


# ---------------------------------------------------------------- data subsets


int_list = list_of(non_negative_int, "integers >= 0")
int_list.__doc__ = "Accept a non-empty list of integers >= 0 (or a comma-separated string), such as seeds."


# ---------------------------------------------------------------- resolution
@dataclass
class RunConfig:
    """The resolved parameters of one notebook run. Attribute access: ``cfg.epochs``."""

    notebook: str
    profile: str
    values: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def command(self) -> str:
        """The command that reproduces this run from the repository root."""
        if os.environ.get("FMNIST_RUN_COMMAND"):
            return os.environ["FMNIST_RUN_COMMAND"]
        args = [f"-p profile {self.profile}"] + [f"-p {k} {_shell_value(v)}" for k, v in self.overrides.items()]
        prefix = "FMNIST_QUICK=1 " if self.profile == "quick" else ""
        return f"{prefix}papermill notebooks/{self.notebook}.ipynb out.ipynb " + " ".join(args)


def _shell_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "'" + ",".join(map(str, value)) + "'"
    return str(value)


def _parameters_cell(notebook: str) -> dict[str, Any]:
    """Every name the ``parameters`` cell of ``notebooks/<notebook>.ipynb`` assigns, with its literal value, as
    saved on disk. Empty when the file or its cell cannot be read."""
    try:
        cells = json.loads((paths.NOTEBOOKS_DIR / f"{notebook}.ipynb").read_text())["cells"]
        source = next("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
        assignments = [node for node in ast.parse(source).body if isinstance(node, ast.Assign)]
        return {node.targets[0].id: ast.literal_eval(node.value) for node in assignments
                if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}
    except (OSError, KeyError, TypeError, ValueError, StopIteration, SyntaxError):
        return {}


def notebook_defaults(notebook: str) -> dict[str, Any]:
    """The values the ``parameters`` cell of ``notebooks/<notebook>.ipynb`` sets, as saved on disk (``None``
    entries left out: those come from the profile). Empty when the file or its cell cannot be read."""
    return {name: value for name, value in _parameters_cell(notebook).items() if value is not None}


def injected_parameters() -> set[str]:
    """The names papermill's ``-p`` options set in the running notebook (the assignments of the cell papermill
    injects, which starts with ``# Parameters``); empty outside IPython or when papermill injected nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return set()
    shell = get_ipython()
    executed = shell.user_ns.get("In", []) if shell is not None else []
    injected = [source for source in executed if isinstance(source, str) and source.startswith("# Parameters\n")]
    if not injected:
        return set()
    return {target.id for node in ast.parse(injected[-1]).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def resolve_parameters(
    notebook: str,
    profiles: Mapping[str, Mapping[str, Any]],
    rules: Mapping[str, Validator],
    profile: str = "default",
    seed: int = 0,
    selectors: Iterable[str] = (),
    **given: Any,
) -> RunConfig:
    """Merge a profile with the explicitly given parameters, validate them, seed everything and print a stamp.

    Args:
        notebook: the notebook's stem, e.g. ``"03_cnn"``; used in records and reproduce commands.
        profiles: ``{"quick": {...}, "default": {...}, "full": {...}}`` values per profile.
        rules: a validator per parameter name (``fh.positive_int``, ``fh.one_of([...])``, ...).
        profile: the requested profile; ``FMNIST_QUICK=1`` turns it into ``"quick"``.
        seed: the seed for Python, NumPy and TensorFlow.
        selectors: parameters that only choose which models run (such as ``models``). Changing them alone still
            publishes figures: each figure a run draws is complete, and figures of models it skips stay as they are.
        **given: the parameters cell's values; ``None`` means "take the profile's value".
    """
    global _active_profile, _active_changes
    if quick_mode():
        profile = "quick"
    one_of(profiles)("profile", profile)
    merged = dict(profiles[profile])
    overrides = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(rules))
    if unknown:
        raise ValueError(f"no validation rule for parameter(s) {unknown}; add them to the notebook's rules")
    offered = {"profile", "seed", *given, *_parameters_cell(notebook)}
    not_offered = sorted(injected_parameters() - offered)
    if not_offered:  # papermill would define them as variables that nothing reads: the run would ignore them
        raise ValueError(f"unknown parameter(s) {', '.join(not_offered)}: {notebook} has no such parameter, so "
                         f"-p would be ignored. Its parameters are: {', '.join(sorted(offered))}")
    merged.update(overrides)
    missing = sorted(set(rules) - set(merged))
    if missing:
        raise ValueError(f"parameter(s) {missing} have no value: set them with -p NAME VALUE or in the profile")
    values = {name: rules[name](name, merged[name]) for name in rules}
    values["seed"] = non_negative_int("seed", seed)
    if seed != 0:
        overrides["seed"] = seed
    _active_profile = profile
    reference = {**profiles[profile], **notebook_defaults(notebook)}  # what the saved notebook runs with
    _active_changes = tuple(sorted(name for name in set(overrides) - set(selectors)
                                   if name == "seed" or name not in reference
                                   or values[name] != rules[name](name, reference[name])))
    cfg = RunConfig(notebook, profile, values, {k: values.get(k, v) for k, v in overrides.items()})
    set_seed(values["seed"])
    print(environment_stamp(cfg))
    if profile == "full" and _active_changes:
        print(f"figures go to runs/full/figures/, not the published figures/: this run changes "
              f"{', '.join(_active_changes)} from the full profile")
    return cfg


# ---------------------------------------------------------------- seeding and environment
def set_seed(seed: int, deterministic_ops: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow with one number; optionally make TF ops deterministic.

    A model built after ``set_seed(s)`` starts from the same weights every time.
    """
    import keras
    import tensorflow as tf

    seed = non_negative_int("seed", seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """The CPU model, core count and bf16 support, for records and stamps."""
    flags, model = set(), platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def native_precision() -> str:
    """The dtype policy ``precision="auto"`` means on this CPU: ``mixed_bfloat16`` where the CPU has native bf16
    (AVX512_BF16 or AMX), ``float32`` elsewhere."""
    return "mixed_bfloat16" if machine_info()["bf16"] else "float32"


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import importlib.metadata as md

    names = ("tensorflow", "keras", "numpy", "scikit-learn", "keras-tuner")
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def environment_stamp(cfg: RunConfig) -> str:
    """One line: library versions, CPU/GPU, seed and profile."""
    import tensorflow as tf

    versions, machine = library_versions(), machine_info()
    gpus = tf.config.list_physical_devices("GPU")
    device = f"GPU×{len(gpus)}" if gpus else f"CPU {machine['cpu']} ({machine['cores']} cores" + \
        (", bf16" if machine["bf16"] else "") + ")"
    return (f"{cfg.notebook} · profile {cfg.profile} · seed {cfg.seed} · TF {versions.get('tensorflow')} · "
            f"Keras {versions.get('keras')} · {device}")
