"""train_and_record: records, .keras round trip, reuse of finished runs, resume after interruption, determinism."""
from __future__ import annotations


import keras
import numpy as np
import pytest

import fmnist_helpers as fh
from fmnist_helpers import config, evaluation, training


@pytest.fixture(scope="module")
def small_data():
    return fh.load_fashion_mnist(train_size=600, test_size=200, validation_size=200, seed=0)


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.delenv("FMNIST_QUICK", raising=False)
    return fh.resolve_parameters("99_test", {"default": {"epochs": 3}}, {"epochs": fh.positive_int}, epochs=None)


def build_mlp():
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")


def test_record_keras_roundtrip_and_reuse(cfg, small_data):
    trained = training.train_and_record(cfg, "tiny_mlp", build_mlp, small_data, epochs=2, batch_size=64)
    record = trained.record
    assert record["epochs_run"] == 2 and len(record["history"]["val_accuracy"]) == 2
    assert 0.3 < record["metrics"]["test_accuracy"] <= 1  # above chance (0.1) after two epochs
    assert record["params_count"] == trained.model.count_params() and "learning_rate" in record["history"]
    saved = training.model_path(cfg, "tiny_mlp")
    reloaded = keras.models.load_model(saved)
    np.testing.assert_array_equal(reloaded.predict(small_data.x_test, verbose=0),
                                  trained.model.predict(small_data.x_test, verbose=0))
    again = training.train_and_record(cfg, "tiny_mlp", build_mlp, small_data, epochs=2, batch_size=64)
    assert again.record == record  # reused, not retrained
    np.testing.assert_array_equal(again.test_probabilities, trained.test_probabilities)


def test_same_seed_same_metrics(cfg, small_data):
    first = training.train_and_record(cfg, "det_a", build_mlp, small_data, epochs=2, batch_size=64, seed=5)
    second = training.train_and_record(cfg, "det_b", build_mlp, small_data, epochs=2, batch_size=64, seed=5)
    assert first.record["metrics"] == second.record["metrics"]
    assert first.record["history"]["loss"] == second.record["history"]["loss"]


def test_resume_after_interruption(cfg, small_data):
    with pytest.raises(KeyboardInterrupt):
        training.train_and_record(cfg, "resumed", build_mlp, small_data, epochs=4, batch_size=64,
                                  callbacks=[Interrupt()])
    assert fh.load_record(cfg, "resumed") is None  # nothing recorded for an unfinished run
    resumed = training.train_and_record(cfg, "resumed", build_mlp, small_data, epochs=4, batch_size=64)
    assert resumed.record["epochs_in_last_session"] == 2  # epochs 3 and 4 only: the first two were restored
    assert resumed.record["epochs_run"] == 4 and len(resumed.history["val_accuracy"]) == 4
    uninterrupted = training.train_and_record(cfg, "straight", build_mlp, small_data, epochs=4, batch_size=64)
    assert uninterrupted.record["epochs_run"] == 4


def test_run_killed_while_saving_its_checkpoint_resumes_from_the_epoch_before(cfg, small_data):
    with pytest.raises(KeyboardInterrupt):
        training.train_and_record(cfg, "half_saved", build_mlp, small_data, epochs=4, batch_size=64,
                                  callbacks=[Interrupt()])
    state = training._run_paths(cfg, "half_saved", cfg.seed)[2] / "state"
    (state / "latest.weights.h5").write_bytes(b"not a complete HDF5 file")  # as a kill in the middle of the save
    resumed = training.train_and_record(cfg, "half_saved", build_mlp, small_data, epochs=4, batch_size=64)
    assert resumed.record["epochs_in_last_session"] == 3  # epochs 2 to 4: epoch 1's copy was restored
    assert resumed.record["epochs_run"] == 4 and len(resumed.history["val_accuracy"]) == 4


def test_interrupted_run_with_other_settings_starts_afresh(cfg, small_data, capsys):
    with pytest.raises(KeyboardInterrupt):
        training.train_and_record(cfg, "changed", build_mlp, small_data, epochs=4, batch_size=64,
                                  callbacks=[Interrupt()])
    rerun = training.train_and_record(cfg, "changed", build_mlp, small_data, epochs=3, batch_size=64)
    assert "used other settings (epochs); it is discarded" in capsys.readouterr().out
    assert rerun.record["epochs_in_last_session"] == 3  # not resumed from the 4-epoch run's checkpoint
    assert rerun.record["epochs_run"] == 3 and len(rerun.history["loss"]) == 3  # and no epochs of it in the log


def test_a_model_trained_on_another_runs_split_is_trained_again(cfg, small_data, capsys, monkeypatch):
    replica = training.train_and_record(cfg, "split_mlp", build_mlp, small_data, epochs=1, batch_size=64, seed=1)
    assert replica.record["seed"] == 1 and replica.record["run_seed"] == 0  # the extra seed of a seed-0 run
    seed_1 = fh.resolve_parameters("99_test", {"default": {"epochs": 3}}, {"epochs": fh.positive_int}, epochs=None,
                                   seed=1)
    capsys.readouterr()
    again = training.train_and_record(seed_1, "split_mlp", build_mlp, small_data, epochs=1, batch_size=64)
    assert "recorded with other settings (run_seed); training again" in capsys.readouterr().out
    assert again.record["run_seed"] == 1


def test_a_diverged_run_is_recorded_not_crashed(cfg, small_data, capsys):
    def build_exploding_mlp():
        model = build_mlp()
        model.compile(optimizer=keras.optimizers.SGD(1e12), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    run = training.train_and_record(cfg, "exploding", build_exploding_mlp, small_data, epochs=3, batch_size=64)
    assert "training diverged (the loss became NaN or infinite in epoch 1)" in capsys.readouterr().out
    assert run.record["epochs_run"] == 1 and run.history["loss"] == [None]  # TerminateOnNaN stopped epoch 1
    assert run.record["metrics"]["test_loss"] == pytest.approx(np.log(10))  # equal probabilities for 10 classes
    assert np.isfinite(run.test_probabilities).all() and fh.load_record(cfg, "exploding")["diverged"] is True


def test_a_model_recorded_on_another_test_slice_is_trained_again(cfg, small_data, capsys):
    training.train_and_record(cfg, "slice_mlp", build_mlp, small_data, epochs=1, batch_size=64)
    fewer_test_images = fh.load_fashion_mnist(train_size=600, test_size=100, validation_size=200, seed=0)
    capsys.readouterr()
    again = training.train_and_record(cfg, "slice_mlp", build_mlp, fewer_test_images, epochs=1, batch_size=64)
    assert "recorded on 200 test images, this run has 100; training again" in capsys.readouterr().out
    assert len(again.test_probabilities) == 100


def test_precision_policy(monkeypatch):
    try:
        assert training.use_precision("float32") == "float32"
        assert training.use_precision("auto") in ("float32", "mixed_bfloat16")
        for bf16, expected in ((True, "mixed_bfloat16"), (False, "float32")):  # "auto" follows the CPU's bf16 flag
            monkeypatch.setattr(config, "machine_info", lambda bf16=bf16: {"bf16": bf16})
            assert config.native_precision() == expected == training.use_precision("auto")
            assert keras.mixed_precision.global_policy().name == expected
        with pytest.raises(ValueError, match="precision must be"):
            training.use_precision("fp8")
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_tta_is_decided_on_validation(cfg, small_data):
    trained = training.train_and_record(cfg, "tta_mlp", build_mlp, small_data, epochs=1, batch_size=64,
                                        tta=["flip", "flip_shift"])
    metrics = trained.record["metrics"]
    scores = {"none": metrics["val_accuracy_plain"], "flip": metrics["val_accuracy_flip_tta"],
              "flip_shift": metrics["val_accuracy_flip_shift_tta"]}
    assert metrics["tta_used"] == max(scores, key=scores.get) and fh.tta_used(metrics) == metrics["tta_used"]
    chosen = training.predict(trained.model, small_data.x_test, tta=metrics["tta_used"])
    assert metrics["test_accuracy"] == float(np.mean(chosen.argmax(1) == small_data.y_test))
    with pytest.raises(ValueError, match="tta must be one of"):  # checked before any training
        training.train_and_record(cfg, "tta_typo", build_mlp, small_data, epochs=1, batch_size=64, tta="flips")
    assert not training.model_path(cfg, "tta_typo").exists()


def test_tta_views_average_mirrors_and_shifts(cfg, small_data):
    model = build_mlp()
    x = small_data.x_test[:5]
    plain = training.predict(model, x)
    mirrored = training.predict(model, x[:, :, ::-1])
    np.testing.assert_allclose(training.predict(model, x, tta="flip"), (plain + mirrored) / 2)
    views = [evaluation.translate(image, dx=dx, dy=dy) for image in (x, x[:, :, ::-1])
             for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))]
    expected = sum(training.predict(model, view) for view in views) / 10
    np.testing.assert_allclose(training.predict(model, x, tta="flip_shift"), expected)
    with pytest.raises(ValueError, match="tta must be one of"):
        training.predict(model, x, tta="rotate")


def test_records_before_tta_used_still_read():
    assert fh.tta_used({"flip_tta_used": True}) == "flip"
    assert fh.tta_used({"flip_tta_used": False}) == fh.tta_used({}) == "none"


def test_changed_settings_compares_as_stored():
    record = {"params": {"epochs": 10, "l2": None, "hidden": [256, 128]}, "train_size": 55000}
    assert training.changed_settings(None, {"epochs": 5}, 100) == []
    assert training.changed_settings(record, {"epochs": 10, "l2": None, "hidden": (256, 128)}, 55000) == []
    assert training.changed_settings(record, {"epochs": 5, "l2": 0.001, "patience": 3}, 1000) == [
        "epochs", "l2", "patience", "train_size"]
    assert training.changed_settings(record, {"epochs": 10}, split_seed=0) == []  # no -p seed in its command: 0
    assert training.changed_settings({**record, "run_seed": 1}, {"epochs": 10}, split_seed=0) == ["run_seed"]


def test_finished_run_with_other_settings_is_trained_again(cfg, small_data, capsys):
    first = training.train_and_record(cfg, "resettle", build_mlp, small_data, epochs=1, batch_size=64,
                                      params={"dropout": 0.2})
    again = training.train_and_record(cfg, "resettle", build_mlp, small_data, epochs=1, batch_size=64,
                                      params={"dropout": 0.2})
    assert again.record == first.record  # same settings: reused
    other = training.train_and_record(cfg, "resettle", build_mlp, small_data, epochs=2, batch_size=64,
                                      params={"dropout": 0.2})
    assert "recorded with other settings (epochs); training again" in capsys.readouterr().out
    assert other.record["epochs_run"] == 2 and other.record["params"]["epochs"] == 2


def test_augmentation_layers_follow_the_two_switches():
    from keras import layers

    assert fh.augmentation_layers(flip=False) == []
    assert [type(x) for x in fh.augmentation_layers()] == [layers.RandomFlip]
    assert [type(x) for x in fh.augmentation_layers(shift_erase=True)] == [
        layers.RandomFlip, layers.RandomTranslation, layers.RandomErasing]


def test_shift_augmentation_moves_images_by_whole_pixels_without_blurring_them():
    images = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    fh.set_seed(0)
    shift = fh.augmentation_layers(flip=False, shift_erase=True)[0]
    shifted = np.asarray(shift(images, training=True))
    moved = {(dx, dy): evaluation.translate(images, dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)}
    offsets = []
    for i, out in enumerate(shifted):
        matches = [offset for offset, candidates in moved.items() if np.array_equal(candidates[i], out)]
        assert matches, "a shifted image is not the original moved by whole pixels (blurred by interpolation?)"
        offsets.append(matches[0])
    assert len(set(offsets)) > 5  # the shifts vary from image to image


def test_augmentation_description_names_each_layer_and_what_it_does():
    described = fh.augmentation_description(fh.augmentation_layers(shift_erase=True))
    assert [entry["layer"] for entry in described] == ["RandomFlip", "RandomTranslation", "RandomErasing"]
    assert described[0]["mode"] == "horizontal" and described[1]["interpolation"] == "nearest"
    assert described[1]["width_factor"] == pytest.approx(2 / 28) and list(described[2]["scale"]) == [0.02, 0.15]
    assert fh.augmentation_description([]) == []
    bilinear = keras.layers.RandomTranslation(2 / 28, 2 / 28, fill_mode="constant")
    assert fh.augmentation_description([bilinear])[0]["interpolation"] == "bilinear"  # another run, told apart


def epochs_of(dataset, epochs: int) -> list[np.ndarray]:
    return [np.concatenate([np.asarray(labels) for _, labels in dataset]) for _ in range(epochs)]


def test_shuffled_batches_show_every_image_once_per_epoch_in_a_seeded_order():
    images = np.arange(300, dtype="float32").reshape(300, 1, 1) * np.ones((1, 28, 28), "float32")
    labels = np.arange(300)
    batches = fh.shuffled_batches(images, labels, batch_size=64, seed=3)
    orders = epochs_of(batches, 3)
    first = next(iter(batches))
    assert first[0].shape == (64, 28, 28) and np.array_equal(first[0][:, 0, 0], first[1])  # images stay with labels
    assert all(sorted(order) == list(range(300)) for order in orders)  # each image once per epoch
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], np.arange(300))
    assert all(np.array_equal(a, b) for a, b in zip(orders, epochs_of(fh.shuffled_batches(images, labels, 64, 3), 3)))
    assert not np.array_equal(orders[0], epochs_of(fh.shuffled_batches(images, labels, 64, 4), 1)[0])
    assert batches.options().autotune.enabled is False  # the point of the helper: no autotuning thread


def test_shuffled_batches_pipeline_trains_deterministically_and_is_recorded(cfg, small_data):
    first = training.train_and_record(cfg, "piped_a", build_mlp, small_data, epochs=2, batch_size=64,
                                      pipeline="shuffled_batches")
    second = training.train_and_record(cfg, "piped_b", build_mlp, small_data, epochs=2, batch_size=64,
                                       pipeline="shuffled_batches")
    assert first.record["metrics"] == second.record["metrics"]
    assert first.record["params"]["pipeline"] == "shuffled_batches" and first.record["metrics"]["test_accuracy"] > 0.3
    keras_fed = training.train_and_record(cfg, "piped_a", build_mlp, small_data, epochs=2, batch_size=64)
    assert keras_fed.record["params"]["pipeline"] == "keras"  # the other pipeline: trained again, not reused
    with pytest.raises(ValueError, match="pipeline"):
        training.train_and_record(cfg, "piped_c", build_mlp, small_data, epochs=1, batch_size=64, pipeline="numpy")
    with pytest.raises(ValueError, match="train_inputs"):
        training.train_and_record(cfg, "piped_c", build_mlp, small_data, epochs=1, batch_size=64,
                                  pipeline="shuffled_batches", train_inputs=object())


def test_a_record_made_before_pipelines_were_recorded_counts_as_keras_fed():
    older = {"params": {"epochs": 2, "batch_size": 64}, "train_size": 100}
    assert training.recorded_settings(older) == {"epochs": 2, "batch_size": 64, "pipeline": "keras"}
    assert training.changed_settings(older, {"epochs": 2, "batch_size": 64, "pipeline": "keras"}, 100) == []
    assert training.changed_settings(older, {"epochs": 2, "batch_size": 64, "pipeline": "shuffled_batches"},
                                     100) == ["pipeline"]
    piped = {"params": {"epochs": 2, "batch_size": 64, "pipeline": "shuffled_batches"}, "train_size": 100}
    assert training.changed_settings(piped, {"epochs": 2, "batch_size": 64, "pipeline": "keras"}, 100) == ["pipeline"]


def test_a_model_starts_from_the_same_weights_with_or_without_flips():
    import keras
    from keras import layers

    def first_kernel(flip: bool):
        fh.set_seed(0)
        augmentation = fh.augmentation_layers(flip=flip)
        model = keras.Sequential([keras.Input((28, 28, 1)), *augmentation, layers.Conv2D(4, 3)])
        return model.layers[-1].get_weights()[0]

    assert np.array_equal(first_kernel(True), first_kernel(False))


@pytest.mark.parametrize("momentum", [0.9, 0.99])
def test_recalibrate_batchnorm_replaces_stale_statistics_and_touches_nothing_else(momentum):
    fh.set_seed(0)
    images = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 4)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=momentum),
                              keras.layers.Dense(2)])
    norm = model.layers[0]
    trainable = [w.numpy().copy() for w in model.trainable_weights]
    np.testing.assert_array_equal(norm.moving_mean.numpy(), 0.0)  # stale: the statistics of other activations
    callback = training.RecalibrateBatchNorm(images, batches=20, batch_size=100)
    callback.set_model(model)
    callback.on_train_end()
    np.testing.assert_allclose(norm.moving_mean.numpy(), images.mean(axis=0), atol=0.15)  # nothing stale is left
    np.testing.assert_allclose(norm.moving_variance.numpy(), images.var(axis=0), rtol=0.15)
    assert norm.momentum == momentum  # restored
    for before, after in zip(trainable, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(after.numpy(), before)  # no gradient step


def test_recalibrate_batchnorm_reaches_models_nested_in_the_model():
    images = np.random.default_rng(1).normal(-2.0, 1.0, size=(500, 4)).astype("float32")
    inner = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()], name="inner")
    model = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])
    callback = training.RecalibrateBatchNorm(images, batches=10, batch_size=100)
    callback.set_model(model)
    callback.on_train_end()
    np.testing.assert_allclose(inner.layers[0].moving_mean.numpy(), images.mean(axis=0), atol=0.15)
