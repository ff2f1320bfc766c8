"""Helpers shared by the Fashion-MNIST workbook's notebooks.

Import as ``import fmnist_helpers as fh``. Loading, seeding, figures and results records live here;
the models a notebook teaches are defined in that notebook.

The names below are imported on first use, so ``python -m fmnist_helpers.data`` (which only checks the data)
starts without loading TensorFlow.
"""
import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of notebooks

_HOME = {  # public name -> the submodule that defines it
    **dict.fromkeys(["PRECISIONS", "PROFILES", "RunConfig", "changed_parameters", "environment_stamp", "fraction",
                     "int_between", "int_list", "machine_info", "native_precision", "non_negative_int", "one_of",
                     "optional", "optional_subset_of", "positive_float", "positive_int", "quick_mode",
                     "resolve_parameters", "set_seed", "subset_of"], "config"),
    **dict.fromkeys(["CLASS_NAMES", "NUM_CLASSES", "DataError", "FashionMNIST", "load_fashion_mnist", "stratified_subset"], "data"),
    **dict.fromkeys(["color_for", "figure_path", "plot_confusion_matrix", "plot_history", "plot_image_grid",
                     "save_fig"], "plotting"),
    **dict.fromkeys(["load_record", "load_records", "record_result", "records_frame", "run_seed", "summarize",
                     "train_seconds", "tta_used"], "results"),
    **dict.fromkeys(["RecalibrateBatchNorm", "TrainedModel", "augmentation_description", "augmentation_layers",
                     "model_path", "predict", "recorded_settings", "shuffled_batches", "train_and_record",
                     "use_precision"], "training"),
}
__all__ = sorted([*_HOME, "paths"])


def __getattr__(name: str):
    if name == "paths":
        return importlib.import_module("fmnist_helpers.paths")
    if name not in _HOME:
        raise AttributeError(f"module 'fmnist_helpers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fmnist_helpers.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
