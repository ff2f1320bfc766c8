"""Reference numbers reported by others, each with its source. The only numbers in the workbook typed by hand.

Three kinds of reference:

- the **seed write-ups** in ``../shared/seeds/`` (outside this repository): five people's Fashion-MNIST
  projects, each reporting a model and a test accuracy. The workbook rebuilds each model (names like
  ``seed000_cnn``) and the README compares what the write-up reports with what we measure;
- the **baselines of the Fashion-MNIST paper** (Xiao, Rasul & Vollgraf 2017, Table 3, scikit-learn classifiers);
- **human performance** as stated in the dataset's README.

The README generator (:mod:`fmnist_helpers.report`) reads these constants; nothing here is computed.
"""
from __future__ import annotations

from dataclasses import dataclass

from fmnist_helpers import paths

SEEDS_DIR = paths.REPO_ROOT.parent / "shared" / "seeds"  # the write-ups live outside the repository
SEEDS_DIR_LABEL = "../shared/seeds"  # how the README names that folder, relative to the repository root

PAPER = "Xiao, Rasul & Vollgraf (2017), *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning " \
        "Algorithms*, arXiv:1708.07747, Table 3"
PAPER_URL = "https://arxiv.org/abs/1708.07747"
DATASET_README_URL = "https://github.com/zalandoresearch/fashion-mnist#human-performance"


@dataclass(frozen=True)
class SeedReference:
    """What one seed write-up reports for one of its models, and where the workbook rebuilds that model."""

    seed: str  # "000"
    file: str  # the write-up's file name in ../shared/seeds/
    model: str  # our model name in the run records
    notebook: str  # the notebook that trains it
    reported: str  # the claim in the write-up's own words, shortened
    test_accuracy: float | None  # the reported test accuracy as a fraction; None when not reported
    approximate: bool  # the write-up gives "~x%" rather than an exact figure
    epochs: int | None  # epochs the write-up trained for; None when it does not say

    @property
    def source(self) -> str:
        """Where the number comes from, relative to the repository root."""
        return f"{SEEDS_DIR_LABEL}/{self.file}"


_SEED_FILES = {
    "000": "000_b977bd2a63cefc6a.txt",
    "001": "001_1836de5ce2b78591.txt",
    "002": "002_ae7be2cf6903e584.txt",
    "003": "003_a10dff670dadd8b4.txt",
    "004": "004_edad88da295ea7a1.txt",
}

SEED_REFERENCES: tuple[SeedReference, ...] = (
    # 000: "achieved ~94.6% test accuracy"; 3 conv blocks with BN, Adam, batch 32, 50 epochs, ReduceLROnPlateau.
    SeedReference("000", _SEED_FILES["000"], "seed000_cnn", "03_cnn",
                  "~94.6% test, 50 epochs", 0.946, True, 50),
    # 001: two MLPs (Tyler, Jackson), each with and without L2; "50 epochs ... final accuracy of approximately
    # ~88%" (the exact per-model table is an image, so all four carry the same approximate figure).
    SeedReference("001", _SEED_FILES["001"], "seed001_tyler", "02_mlp_baselines",
                  "~88% test (all four MLPs), 50 epochs", 0.88, True, 50),
    SeedReference("001", _SEED_FILES["001"], "seed001_tyler_l2", "02_mlp_baselines",
                  "~88% test (all four MLPs), 50 epochs", 0.88, True, 50),
    SeedReference("001", _SEED_FILES["001"], "seed001_jackson", "02_mlp_baselines",
                  "~88% test (all four MLPs), 50 epochs", 0.88, True, 50),
    SeedReference("001", _SEED_FILES["001"], "seed001_jackson_l2", "02_mlp_baselines",
                  "~88% test (all four MLPs), 50 epochs", 0.88, True, 50),
    # 002: MLP 256-128-32, SGD lr 0.02, 30 epochs: "an accuracy of 0.8871 OR 88.71%" on the test set.
    SeedReference("002", _SEED_FILES["002"], "seed002_mlp", "02_mlp_baselines",
                  "88.71% test, 30 epochs", 0.8871, False, 30),
    # 003: Conv64-Pool-Drop-Conv32-Pool-Drop-Dense128(L1+L2)-Drop-softmax, 100 epochs, batch 128: "87.460%".
    SeedReference("003", _SEED_FILES["003"], "seed003_cnn", "03_cnn",
                  "87.46% test, 100 epochs", 0.8746, False, 100),
    # 004: fixed CNN, hyperparameters tuned: "Test Accuracy achieved: 91.17%", "Maximum Validation Accuracy
    # Achieved: 89.4%"; the write-up does not state the number of epochs.
    SeedReference("004", _SEED_FILES["004"], "seed004_cnn", "07_hyperparameter_search",
                  "91.17% test (89.4% best validation), epochs not stated", 0.9117, False, None),
)


@dataclass(frozen=True)
class Baseline:
    """A published accuracy on the Fashion-MNIST test set that is not one of our seeds."""

    name: str  # as the source names it
    family: str  # "classical" or "human"
    model: str | None  # our model name for the same method, if the workbook trains it
    test_accuracy: float
    source: str
    url: str


PAPER_BASELINES: tuple[Baseline, ...] = (
    Baseline("LogisticRegression", "classical", "logistic_regression", 0.842, PAPER, PAPER_URL),
    Baseline("RandomForestClassifier(n_estimators=100, criterion=entropy)", "classical", "random_forest", 0.873,
             PAPER, PAPER_URL),
    Baseline("SVC(kernel=rbf, C=10)", "classical", "svm_rbf", 0.897, PAPER, PAPER_URL),
)

HUMAN = Baseline("Human performance", "human", None, 0.835,
                 "the Fashion-MNIST README (zalandoresearch/fashion-mnist)", DATASET_README_URL)


def seed_file(reference: SeedReference) -> str:
    """The seed write-up's path, checked to exist when the shared folder is present."""
    path = SEEDS_DIR / reference.file
    if SEEDS_DIR.is_dir() and not path.is_file():
        raise ValueError(f"seed write-up {reference.file} not found in {SEEDS_DIR}; update SEED_REFERENCES")
    return reference.source


def references_for(model: str) -> list[SeedReference]:
    """The seed references of ``model`` (empty if it is not a seed's model)."""
    return [ref for ref in SEED_REFERENCES if ref.model == model]
