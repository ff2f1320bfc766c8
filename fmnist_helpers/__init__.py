"""Helpers shared by the Fashion-MNIST workbook's notebooks.

Import as ``import fmnist_helpers as fh``. Loading, seeding, figures and results records live here;
the models a notebook teaches are defined in that notebook.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of notebooks

from fmnist_helpers import paths  # noqa: E402
from fmnist_helpers.config import (  # noqa: E402
    PROFILES, RunConfig, environment_stamp, fraction, int_list, machine_info, non_negative_int, one_of, optional,
    positive_float, positive_int, quick_mode, resolve_parameters, set_seed, subset_of,
)
from fmnist_helpers.data import CLASS_NAMES, NUM_CLASSES, DataError, FashionMNIST, load_fashion_mnist
from fmnist_helpers.plotting import (
    color_for, figure_path, plot_confusion_matrix, plot_history, plot_image_grid, save_fig,
)
from fmnist_helpers.results import load_record, load_records, record_result, records_frame, summarize
from fmnist_helpers.training import TrainedModel, model_path, train_and_record, use_precision

__all__ = [
    "CLASS_NAMES", "NUM_CLASSES", "PROFILES", "DataError", "FashionMNIST", "RunConfig", "color_for",
    "environment_stamp", "figure_path", "fraction", "int_list", "load_fashion_mnist", "load_record", "load_records",
    "machine_info", "non_negative_int", "one_of", "optional", "paths", "plot_confusion_matrix", "plot_history",
    "plot_image_grid", "positive_float", "positive_int", "quick_mode", "record_result", "records_frame",
    "resolve_parameters", "save_fig", "set_seed", "subset_of", "summarize", "TrainedModel", "model_path",
    "train_and_record", "use_precision",
]
