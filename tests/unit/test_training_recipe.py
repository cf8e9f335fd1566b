"""The training recipe's pieces, without data: balanced epochs, the decision rule, selection, checkpoints."""

import numpy as np
import pytest

from skin_demo.serving.classifier import adjust_logits
from skin_demo.training import data
from skin_demo.training.calibrate import choose_logit_adjustment, class_prior
from skin_demo.training.run_folder import RunFolder
from skin_demo.training.train import Selection, WeightAverage

# HAM10000's training split, roughly: nevi are two thirds, dermatofibroma and vascular lesions ~1 %
COUNTS = [229, 360, 769, 81, 779, 4693, 99]
LABELS = np.repeat(np.arange(7), COUNTS)


def test_balanced_batches_show_every_class_about_equally_often():
    indices = data.epoch_indices(LABELS, "oversample", batch_size=32, seed=0, epoch=0)
    shown = np.bincount(LABELS[indices], minlength=7)
    assert len(indices) == len(LABELS) // 32 * 32
    assert shown.min() > 0.85 * shown.mean() and shown.max() < 1.15 * shown.mean(), shown


def test_a_plain_shuffle_keeps_the_natural_frequencies_and_shows_each_image_once():
    indices = data.epoch_indices(LABELS, "weights", batch_size=32, seed=0, epoch=0)
    assert len(set(indices.tolist())) == len(indices)
    assert np.bincount(LABELS[indices], minlength=7)[5] > 0.6 * len(indices)


def test_an_epoch_is_drawn_from_seed_and_epoch_alone():
    """So a resumed run sees the same images in the same order as one that went through."""
    first = data.epoch_indices(LABELS, "oversample", 32, seed=3, epoch=5)
    assert np.array_equal(first, data.epoch_indices(LABELS, "oversample", 32, seed=3, epoch=5))
    assert not np.array_equal(first, data.epoch_indices(LABELS, "oversample", 32, seed=3, epoch=6))


def test_extra_images_widen_an_epoch_without_lengthening_it():
    with_extra = np.concatenate([LABELS, np.repeat([1, 4], 2000)])  # another clinic's carcinomas and melanomas
    indices = data.epoch_indices(with_extra, "oversample", 32, seed=0, epoch=0, epoch_size=len(LABELS))
    assert len(indices) == len(LABELS) // 32 * 32
    assert (indices >= len(LABELS)).any()


def test_an_unknown_balance_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="balance must be one of oversample, weights, cap"):
        data.epoch_indices(LABELS, "magic", 32, 0, 0)


def test_logit_adjustment_with_tau_0_changes_nothing():
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=20).astype("float32")
    assert adjust_logits(probs, 0.0, class_prior(LABELS)) is probs


def test_logit_adjustment_with_tau_above_0_moves_predictions_toward_frequent_classes():
    """A model trained on balanced batches calls a borderline nevus melanoma; the prior tips it back."""
    prior = class_prior(LABELS)
    borderline = np.array([[0.02, 0.02, 0.02, 0.02, 0.47, 0.43, 0.02]], dtype="float32")
    adjusted = adjust_logits(borderline, 0.5, prior)
    assert borderline.argmax() == 4 and adjusted.argmax() == 5
    np.testing.assert_allclose(adjusted.sum(), 1.0, atol=1e-6)
    many = np.random.default_rng(1).dirichlet(np.ones(7), size=500).astype("float32")
    nevus_share = [(adjust_logits(many, tau, prior).argmax(1) == 5).mean() for tau in (0.0, 0.5, 1.0)]
    assert nevus_share[0] < nevus_share[1] < nevus_share[2]


def test_tau_is_chosen_on_validation_to_raise_the_weaker_of_both_accuracies():
    """Overcalled rare classes (balanced training): a positive tau wins accuracy back, and the grid is kept."""
    rng = np.random.default_rng(2)
    labels = LABELS[rng.choice(len(LABELS), 1500, replace=False)]
    logits = rng.normal(0, 1, (len(labels), 7))
    logits[np.arange(len(labels)), labels] += 1.5
    logits[:, [3, 6]] += 1.0  # the model over-calls dermatofibroma and vascular lesions
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    chosen = choose_logit_adjustment(labels, probs, class_prior(LABELS))
    assert chosen["tau"] > 0 and len(chosen["grid"]) >= 5 and "smaller of validation balanced" in chosen["rule"]
    scores = {row["tau"]: min(row["balanced_accuracy"], row["accuracy"]) for row in chosen["grid"]}
    assert scores[chosen["tau"]] == pytest.approx(max(scores.values()), abs=1e-3)


def test_selection_breaks_near_ties_in_balanced_accuracy_by_macro_auc():
    selection = Selection()
    kept = [selection.offer(epoch, {"balanced_accuracy": b, "macro_auc": a}) for epoch, (b, a) in enumerate(
        [(0.60, 0.90), (0.70, 0.91), (0.698, 0.93), (0.703, 0.92), (0.69, 0.95), (0.72, 0.90)])]
    # 0.698 is within 0.005 of 0.70 with a better AUC; 0.703 has the worse AUC; 0.69 is too far below; 0.72 gains
    assert kept == [True, True, True, False, False, True]
    assert selection.best == {"epoch": 5, "balanced_accuracy": 0.72, "macro_auc": 0.90}
    assert selection.wait == 0
    resumed = Selection(selection.state())
    assert resumed.best == selection.best and resumed.top_balanced_accuracy == 0.72


def test_a_checkpoint_restores_weights_optimizer_and_dropout_state(tmp_path):
    import keras

    def tiny():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        x = keras.layers.Dropout(0.5, name="drop")(keras.layers.Dense(8, activation="relu", name="hidden")(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="out")(x))  # as a new process names them
        model.compile(keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9), "categorical_crossentropy")
        model.optimizer.build(model.trainable_variables)
        return model

    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.eye(2)[np.arange(16) % 2].astype("float32")
    model = tiny()
    model.fit(x, y, epochs=2, verbose=0)
    run = RunFolder.create("tiny", tmp_path / "run")
    run.save(model, model.optimizer, None, {"phase": 0})
    continued = tiny()
    run.restore_model(continued)
    run.restore_optimizer(continued.optimizer)
    for a, b in zip(model.variables + model.optimizer.variables, continued.variables + continued.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    continued.fit(x, y, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(model.predict(x, verbose=0), continued.predict(x, verbose=0), atol=1e-6)
    assert run.read_state() == {"phase": 0}


def test_a_folder_without_a_run_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(ValueError, match="not a training run folder"):
        RunFolder(tmp_path).read_config()


@pytest.mark.parametrize("settings, words", [
    ({"epochs": 0, "head_epochs": 0}, "Nothing to train"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"img_size": (16, 16)}, "at least 32x32"),
    ({"balance": "magic"}, "balance must be one of"),
    ({"ema": 1.5}, "ema is a momentum"),
    ({"augmentation": {"sparkle": 1}}, "unknown augmentation field"),
    ({"mixup": -1.0}, "mixup and cutmix are Beta alphas"),
    ({"cutmix": 1.0, "mix_probability": 2.0}, "mix_probability is in"),
    ({"distill_from": "ensemble", "distill_weight": 1.5}, "distill_weight is a share"),
])
def test_a_recipe_that_cannot_train_is_refused_before_any_data_is_loaded(settings, words):
    from skin_demo.training.train import TrainConfig

    with pytest.raises(ValueError, match=words):
        TrainConfig(backbone="custom_cnn", out="unused", **settings).check()


def test_a_new_run_is_not_written_over_an_existing_one(tmp_path):
    """--run-dir pointing at a run that has checkpoints: continue it with --resume instead."""
    from skin_demo.training.train import TrainConfig, train

    run = RunFolder.create("old", tmp_path / "run")
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    model.compile(keras.optimizers.Adam(), "mse")
    model.optimizer.build(model.trainable_variables)
    run.save(model, model.optimizer, None, {"phase": 0, "epoch_in_phase": 1})
    with pytest.raises(ValueError, match="holds a run already; continue it with --resume"):
        train(TrainConfig(backbone="custom_cnn", out=str(tmp_path / "m"), run_dir=str(run.path)))


def test_weight_averaging_keeps_the_mean_of_the_epochs_and_swaps_it_in_only_to_be_scored():
    import keras

    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    seed = keras.Variable(np.array([7, 9], dtype="int64"), dtype="int64", trainable=False)  # like dropout's RNG state
    variables = [*layer.variables, seed]
    average = WeightAverage()
    kernels = []
    for epoch in range(3):
        layer.kernel.assign(np.full((2, 3), float(epoch)))
        seed.assign(np.array([epoch, epoch], dtype="int64"))
        kernels.append(layer.kernel.numpy())
        average.add(variables)
    assert average.count == 3
    with average.swapped_in(variables):
        np.testing.assert_allclose(layer.kernel.numpy(), np.mean(kernels, axis=0))
        assert seed.numpy().tolist() == [2, 2]  # integer state is the current one, never averaged
    np.testing.assert_allclose(layer.kernel.numpy(), kernels[-1])  # training goes on from its own weights


def test_an_epoch_with_mixing_has_soft_labels_that_still_sum_to_one():
    from skin_demo.training.augment import mix_batch

    images = np.random.default_rng(0).integers(0, 255, (16, 32, 48, 3), dtype=np.uint8)
    labels = np.arange(16) % 7
    indices = data.epoch_indices(labels, "oversample", 4, seed=0, epoch=0)
    plain = list(data.epoch_dataset(images, data.one_hot(labels), indices, 4, lambda x, s: x, seed=0, epoch=0))
    mixed = list(data.epoch_dataset(images, data.one_hot(labels), indices, 4, lambda x, s: x, seed=0, epoch=0,
                                    mix_fn=lambda x, y, s: mix_batch(x, y, s, mixup=0.4, probability=1.0)))
    assert len(plain) == len(mixed) == 4
    assert all(set(np.unique(y.numpy())) <= {0.0, 1.0} for _, y in plain)
    for (x, y), (x0, _) in zip(mixed, plain):
        assert x.shape == x0.shape and y.shape == (4, 7)
        np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, atol=1e-6)
    assert any(not set(np.unique(y.numpy())) <= {0.0, 1.0} for _, y in mixed)


def test_distillation_targets_blend_the_label_with_the_teachers_answer():
    from skin_demo.training.distill import soft_targets

    labels = np.array([0, 4, 5])
    teacher = np.random.default_rng(0).dirichlet(np.ones(7), 3).astype("float32")
    np.testing.assert_array_equal(soft_targets(labels, teacher, 0.0), data.one_hot(labels))
    np.testing.assert_allclose(soft_targets(labels, teacher, 1.0), teacher, atol=1e-7)
    blended = soft_targets(labels, teacher, 0.3)
    np.testing.assert_allclose(blended.sum(axis=1), 1.0, atol=1e-6)
    assert (blended.argmax(axis=1) == labels).all(), "with the label's share above half, the label stays on top"
    np.testing.assert_allclose(blended[1, 4], 0.7 + 0.3 * teacher[1, 4], atol=1e-6)


def test_distillation_moves_the_teachers_answer_to_equal_class_priors_as_balanced_batches_see_them():
    from skin_demo.training.distill import soft_targets

    prior = np.array([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    uninformed = np.tile(prior, (2, 1))  # a teacher that only knows the class frequencies
    np.testing.assert_allclose(soft_targets([5, 5], uninformed, 1.0, prior=prior), 1 / 7, atol=1e-6)
    teacher = np.array([[0.1, 0.0, 0.0, 0.0, 0.2, 0.7, 0.0]])
    moved = soft_targets([5], teacher, 1.0, prior=prior)[0]
    assert moved.sum() == pytest.approx(1.0, abs=1e-6) and moved[4] > moved[5] and moved[0] > moved[4]


def test_an_epoch_carries_the_soft_targets_it_is_given_in_batch_order():
    from skin_demo.training.distill import soft_targets

    images = np.random.default_rng(1).integers(0, 255, (14, 32, 48, 3), dtype=np.uint8)
    labels = np.arange(14) % 7
    targets = soft_targets(labels, np.random.default_rng(2).dirichlet(np.ones(7), 14), 0.5)
    indices = data.epoch_indices(labels, "oversample", 7, seed=0, epoch=3)
    batches = list(data.epoch_dataset(images, targets, indices, 7, lambda x, s: x, seed=0, epoch=3))
    np.testing.assert_allclose(np.concatenate([y.numpy() for _, y in batches]), targets[indices], atol=1e-7)
