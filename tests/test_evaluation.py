"""fmnist_helpers.evaluation against small cases computed by hand (the computation is in the comments)."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy.special import softmax

from fmnist_helpers import evaluation as ev
from fmnist_helpers.config import RunConfig
from fmnist_helpers.training import model_path

# Four images, three classes.
#   image  probabilities        label  top class  confidence  correct
#   0      [0.9,  0.05, 0.05]   0      0          0.90        yes
#   1      [0.8,  0.1,  0.1 ]   1      0          0.80        no
#   2      [0.4,  0.3,  0.3 ]   0      0          0.40        yes
#   3      [0.2,  0.45, 0.35]   2      1          0.45        no
P4 = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.4, 0.3, 0.3], [0.2, 0.45, 0.35]])
Y4 = np.array([0, 1, 0, 2])


def test_reliability_curve_and_ece_by_hand():
    # Two bins, (0, 0.5] and (0.5, 1]:
    #   low bin  = images 2, 3: confidence (0.40 + 0.45) / 2 = 0.425, accuracy 1/2, gap +0.075
    #   high bin = images 0, 1: confidence (0.90 + 0.80) / 2 = 0.85,  accuracy 1/2, gap -0.35
    # ECE = 2/4 * 0.075 + 2/4 * 0.35 = 0.2125
    curve = ev.reliability_curve(Y4, P4, n_bins=2)
    assert curve["count"].tolist() == [2, 2]
    np.testing.assert_allclose(curve["confidence"], [0.425, 0.85])
    np.testing.assert_allclose(curve["accuracy"], [0.5, 0.5])
    np.testing.assert_allclose(curve["gap"], [0.075, -0.35])
    assert ev.expected_calibration_error(Y4, P4, n_bins=2) == pytest.approx(0.2125)


def test_ece_one_bin_is_mean_confidence_minus_accuracy_and_empty_bins_are_skipped():
    # One bin: |mean confidence - accuracy| = |(0.9 + 0.8 + 0.4 + 0.45) / 4 - 2/4| = |0.6375 - 0.5| = 0.1375
    assert ev.expected_calibration_error(Y4, P4, n_bins=1) == pytest.approx(0.1375)
    # Ten bins: confidences 0.9, 0.8, 0.4, 0.45 fall in bins 8, 7, 3, 4, each alone:
    # ECE = (|1 - 0.9| + |0 - 0.8| + |1 - 0.4| + |0 - 0.45|) / 4 = (0.1 + 0.8 + 0.6 + 0.45) / 4 = 0.4875
    curve = ev.reliability_curve(Y4, P4, n_bins=10)
    assert curve["count"].tolist() == [0, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert curve["accuracy"].isna().sum() == 6
    assert ev.expected_calibration_error(Y4, P4, n_bins=10) == pytest.approx(0.4875)


def test_bins_are_closed_on_the_right():
    # Confidence exactly 0.5 with two bins belongs to (0, 0.5], and 1.0 to (0.5, 1].
    curve = ev.reliability_curve([0, 0], [[0.5, 0.5], [1.0, 0.0]], n_bins=2)
    assert curve["count"].tolist() == [1, 1]


def test_perfectly_calibrated_predictions_have_zero_ece():
    # Confidence 0.75 on four images, three of them right: accuracy equals confidence in the only bin.
    p = np.tile([0.75, 0.25], (4, 1))
    assert ev.expected_calibration_error([0, 0, 0, 1], p, n_bins=10) == pytest.approx(0.0)


def test_nll_and_brier_by_hand():
    # NLL = -(ln 0.7 + ln 0.4) / 2
    # Brier: image 0 (label 0): (0.7-1)^2 + 0.2^2 + 0.1^2 = 0.09 + 0.04 + 0.01 = 0.14
    #        image 1 (label 1): 0.4^2 + (0.4-1)^2 + 0.2^2 = 0.16 + 0.36 + 0.04 = 0.56;  mean = 0.35
    p, y = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]]), np.array([0, 1])
    assert ev.negative_log_likelihood(y, p) == pytest.approx(-(math.log(0.7) + math.log(0.4)) / 2)
    assert ev.brier_score(y, p) == pytest.approx(0.35)
    # Accuracy: image 1 ties at 0.4 and argmax takes the first, class 0, which is wrong: 1/2.
    metrics = ev.calibration_metrics(y, p, n_bins=5)
    assert metrics["accuracy"] == 0.5 and metrics["brier"] == pytest.approx(0.35)


def test_brier_counts_classes_missing_from_the_labels():
    # Labels use only class 0, but all three columns count: (0.5-1)^2 + 0.25^2 + 0.25^2 = 0.25 + 0.0625 * 2 = 0.375
    assert ev.brier_score([0], [[0.5, 0.25, 0.25]]) == pytest.approx(0.375)


def test_apply_temperature_by_hand():
    # [0.8, 0.2]: log-odds ln 4; at T = 2 they become ln 2, so the probabilities are [2/3, 1/3].
    np.testing.assert_allclose(ev.apply_temperature([[0.8, 0.2]], 2.0), [[2 / 3, 1 / 3]])
    np.testing.assert_allclose(ev.apply_temperature(P4, 1.0), P4, atol=1e-12)
    sharp = ev.apply_temperature(P4, 0.5)
    assert (sharp.argmax(axis=1) == P4.argmax(axis=1)).all() and (sharp.max(axis=1) > P4.max(axis=1)).all()


def test_fit_temperature_by_hand():
    # Three images all predicted [0.8, 0.2]; two are class 0. The NLL is lowest when the predicted
    # probability equals the observed 2/3: 4^(1/T) / (4^(1/T) + 1) = 2/3  =>  4^(1/T) = 2  =>  T = 2.
    p = np.tile([0.8, 0.2], (3, 1))
    assert ev.fit_temperature([0, 0, 1], p) == pytest.approx(2.0, abs=1e-3)


def test_fit_temperature_warns_at_a_bound_of_its_search():
    # Three images predicted [0.8, 0.2], all wrong: the NLL falls for ever larger T, so the search ends at 20.
    with pytest.warns(UserWarning, match="sits at a bound of its search"):
        assert ev.fit_temperature([1, 1, 1], np.tile([0.8, 0.2], (3, 1))) == pytest.approx(20.0, rel=1e-3)


def test_fit_temperature_recovers_an_overconfident_model():
    # Labels drawn from softmax(z); the "model" reports softmax(3 z). Scaling by T = 3 undoes it.
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, size=(20_000, 5))
    labels = np.array([rng.choice(5, p=row) for row in softmax(logits, axis=1)])
    overconfident = softmax(3 * logits, axis=1)
    temperature = ev.fit_temperature(labels, overconfident)
    assert temperature == pytest.approx(3.0, rel=0.05)
    before = ev.negative_log_likelihood(labels, overconfident)
    after = ev.negative_log_likelihood(labels, ev.apply_temperature(overconfident, temperature))
    assert after < before
    assert ev.expected_calibration_error(labels, ev.apply_temperature(overconfident, temperature)) < 0.02


def test_most_confused_pairs_by_hand():
    # true 0 -> predicted 1 twice, true 1 -> predicted 0 once, true 2 -> predicted 0 once: 4 errors.
    # Pair (0, 1): 2 + 1 = 3 errors (share 0.75); pair (0, 2): 0 + 1 = 1 (share 0.25); pair (1, 2): none.
    y_true = [0, 0, 0, 1, 1, 2, 2, 2]
    y_pred = [1, 1, 0, 0, 1, 2, 0, 2]
    table = ev.most_confused_pairs(y_true, y_pred, top=5, class_names=["a", "b", "c"])
    assert table[["class_a", "class_b", "a_as_b", "b_as_a", "errors"]].values.tolist() == [
        ["a", "b", 2, 1, 3], ["a", "c", 0, 1, 1]]
    np.testing.assert_allclose(table["share_of_errors"], [0.75, 0.25])
    assert len(ev.most_confused_pairs(y_true, y_pred, top=1, class_names=["a", "b", "c"])) == 1
    assert ev.most_confused_pairs([0, 1], [0, 1], class_names=["a", "b"]).empty


def test_top_k_table_and_titles():
    table = ev.top_k_table([[0.1, 0.6, 0.3]], k=2, class_names=["ant", "bee", "cat"])
    assert table.iloc[0].tolist() == ["bee", 0.6, "cat", 0.3]
    assert ev.top_k_titles(table, k=2) == ["bee 0.60\ncat 0.30"]


def test_mcnemar_by_hand():
    # 10 images: A alone right on 6, B alone right on 1, both right on 2, both wrong on 1.
    # Exact: two-sided binomial with n = 7, p = 1/2: 2 * P(X <= 1) = 2 * (1 + 7) / 2^7 = 0.125
    # Chi-square with continuity correction: (|6 - 1| - 1)^2 / 7 = 16/7; p = erfc(sqrt(16/7 / 2)) for 1 dof.
    y = np.zeros(10, dtype=int)
    a = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    b = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 1])
    exact = ev.mcnemar_test(y, a, b)
    assert (exact["a_only"], exact["b_only"], exact["both_right"], exact["both_wrong"]) == (6, 1, 2, 1)
    assert exact["pvalue"] == pytest.approx(0.125)
    approx = ev.mcnemar_test(y, a, b, exact=False)
    assert approx["statistic"] == pytest.approx(16 / 7)
    assert approx["pvalue"] == pytest.approx(math.erfc(math.sqrt(16 / 7 / 2)))
    assert ev.mcnemar_test(y, a, a)["pvalue"] == 1.0


def test_paired_bootstrap():
    # Same data as McNemar: accuracy A = 8/10, B = 3/10, difference 0.5.
    y = np.zeros(10, dtype=int)
    a = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    b = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 1])
    result = ev.paired_bootstrap(y, a, b, n_resamples=2000, seed=1)
    assert result["difference"] == pytest.approx(0.5)
    assert result["ci_low"] < 0.5 < result["ci_high"]
    assert result == ev.paired_bootstrap(y, a, b, n_resamples=2000, seed=1)
    same = ev.paired_bootstrap(y, a, a)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0


def test_paired_bootstrap_matches_resampling_images():
    # The multinomial shortcut has the same distribution as resampling image indices.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    a = np.where(rng.random(2000) < 0.8, y, (y + 1) % 3)
    b = np.where(rng.random(2000) < 0.7, y, (y + 1) % 3)
    idx = rng.integers(0, 2000, size=(3000, 2000))
    naive = ((a[idx] == y[idx]).mean(axis=1) - (b[idx] == y[idx]).mean(axis=1))
    result = ev.paired_bootstrap(y, a, b, n_resamples=3000)
    assert result["ci_low"] == pytest.approx(np.quantile(naive, 0.025), abs=0.006)
    assert result["ci_high"] == pytest.approx(np.quantile(naive, 0.975), abs=0.006)


def test_translate_and_noise():
    image = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
    np.testing.assert_array_equal(ev.translate(image, dx=1)[0], [[0, 1, 2], [0, 4, 5], [0, 7, 8]])
    np.testing.assert_array_equal(ev.translate(image, dy=-1)[0], [[4, 5, 6], [7, 8, 9], [0, 0, 0]])
    np.testing.assert_array_equal(ev.translate(image, dx=-2, dy=2)[0], [[0, 0, 0], [0, 0, 0], [3, 0, 0]])
    assert ev.translate(image[..., None], dx=1).shape == (1, 3, 3, 1)
    noisy = ev.add_gaussian_noise(np.full((2, 28, 28), 0.5), sigma=0.1, seed=3)
    assert noisy.min() >= 0 and noisy.max() <= 1 and abs(noisy.std() - 0.1) < 0.01
    np.testing.assert_array_equal(noisy, ev.add_gaussian_noise(np.full((2, 28, 28), 0.5), sigma=0.1, seed=3))
    np.testing.assert_array_equal(ev.add_gaussian_noise(image / 9, sigma=0), image / 9)


def test_find_model_file_prefers_names_then_the_active_profile():
    def touch(profile, name):
        path = model_path(RunConfig("03_cnn", profile, {"seed": 0}), name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    assert ev.find_model_file("03_cnn", ["workbook_cnn", "seed000_cnn"], 0, "quick") is None
    fallback = touch("default", "seed000_cnn")
    assert ev.find_model_file("03_cnn", ["workbook_cnn", "seed000_cnn"], 0, "quick") == (fallback, "seed000_cnn",
                                                                                        "default")
    full, quick = touch("full", "workbook_cnn"), touch("quick", "workbook_cnn")
    assert ev.find_model_file("03_cnn", ["workbook_cnn", "seed000_cnn"], 0, "quick")[0] == quick
    assert ev.find_model_file("03_cnn", ["workbook_cnn", "seed000_cnn"], 0, "default")[0] == full
    assert ev.find_model_file("03_cnn", ["workbook_cnn"], 1, "quick") is None


def test_predict_probabilities_reshapes_and_has_layer():
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.RandomFlip("horizontal"), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    p = ev.predict_probabilities(model, np.zeros((3, 28, 28), dtype=np.float32))
    assert p.shape == (3, 10) and np.allclose(p.sum(axis=1), 1)
    assert ev.has_layer(model, keras.layers.RandomFlip)
    assert not ev.has_layer(model, keras.layers.Conv2D)


@pytest.mark.parametrize("call, message", [
    (lambda: ev.expected_calibration_error(Y4, P4, n_bins=0), "n_bins must be an integer >= 1"),
    (lambda: ev.expected_calibration_error(Y4, P4, n_bins=True), "n_bins must be an integer >= 1"),
    (lambda: ev.reliability_curve(Y4, P4 * 2), "must be finite and in \\[0, 1\\]"),
    (lambda: ev.reliability_curve(Y4, P4 * 0.5), "must sum to 1"),
    (lambda: ev.reliability_curve(Y4, np.log(P4)), "apply scipy.special.softmax"),
    (lambda: ev.reliability_curve(Y4[:3], P4), "y_true must have shape \\(4,\\)"),
    (lambda: ev.reliability_curve(np.eye(3)[Y4], P4), "not one-hot"),
    (lambda: ev.reliability_curve([0, 1, 0, 3], P4), "class indices in 0..2"),
    (lambda: ev.brier_score(Y4, P4[0]), "shape \\(n_samples, n_classes\\)"),
    (lambda: ev.apply_temperature(P4, 0), "temperature must be a positive"),
    (lambda: ev.fit_temperature(Y4, P4, bounds=(2, 5)), "0 < low < 1 < high"),
    (lambda: ev.most_confused_pairs([0, 1], [0]), "equal length"),
    (lambda: ev.most_confused_pairs([0, 1], [0, 1], top=0), "top must be a positive integer"),
    (lambda: ev.mcnemar_test([0, 1], P4[:2], [0, 1]), "not probabilities"),
    (lambda: ev.paired_bootstrap([0], [0], [0], confidence=95), "confidence must be in \\(0, 1\\)"),
    (lambda: ev.top_k_table(P4, k=4), "k must be an integer in 1..3"),
    (lambda: ev.translate(np.zeros((28, 28)), dx=1), "images must have shape"),
    (lambda: ev.translate(np.zeros((1, 28, 28)), dx=28), "smaller than the image size"),
    (lambda: ev.add_gaussian_noise(np.zeros((1, 28, 28)), sigma=-1), "sigma must be a number >= 0"),
    (lambda: ev.find_model_file("03_cnn", [], 0, "quick"), "at least one model name"),
])
def test_bad_input_raises_with_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()
