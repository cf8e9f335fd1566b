"""Training augmentation (skin_demo.training.augment): determinism, each element's effect, Shades of Gray, the
recipe's dict form, batch mixing (mixup / CutMix). Synthetic images only."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
from unit_helpers import synthetic_lesion

from skin_demo.training.augment import NONE, Augmentation, augment, mix_batch, shades_of_gray, shades_of_gray_np

H, W = 150, 200
SEED = tf.constant([2026 * 100_003 + 3, 7], tf.int64)
EVERYTHING = Augmentation(colour_constancy=0.5, cutout=0.5, blur=0.5, vignette=0.5)


def only(**fields) -> Augmentation:
    return dataclasses.replace(NONE, **fields)


@pytest.fixture(scope="module")
def lesions():
    """(8, 150, 200, 3) float32: skin-coloured gradients with a dark oval and noise."""
    return np.stack([synthetic_lesion(H, W, seed=i) for i in range(8)]).astype("float32")


@pytest.fixture(scope="module")
def texture():
    """(8, 150, 200, 3) float32 noise in 60-200: no pixel near black, plenty of high frequencies."""
    return np.random.default_rng(3).uniform(60, 200, (8, H, W, 3)).astype("float32")


@pytest.mark.parametrize("options", [Augmentation(), EVERYTHING], ids=["default", "everything"])
def test_deterministic_for_a_seed_and_in_range(lesions, options):
    first = augment(lesions, SEED, options).numpy()
    again = augment(tf.constant(lesions), tf.constant(SEED.numpy()), options).numpy()
    other = augment(lesions, SEED + [0, 1], options).numpy()
    assert first.shape == lesions.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 5.0
    assert first.min() >= 0.0 and first.max() <= 255.0
    assert np.abs(first - lesions).mean() > 5.0  # it did something


def test_dtype_kept_and_scalar_seed_means_seed_zero(lesions):
    as_uint8 = augment(lesions.astype("uint8"), SEED)
    assert as_uint8.dtype == tf.uint8 and as_uint8.shape == lesions.shape
    np.testing.assert_array_equal(augment(lesions, tf.constant(5, tf.int64)), augment(lesions, [5, 0]))


def test_same_result_inside_tf_data_map(lesions):
    options = EVERYTHING
    seeds = np.array([[11, 0], [11, 1]], dtype="int64")
    ds = tf.data.Dataset.from_tensor_slices((np.stack([lesions[:4], lesions[4:]]), seeds))
    ds = ds.map(lambda x, seed: augment(x, seed, options))
    assert ds.element_spec.shape == (4, H, W, 3)  # static shape survives for Keras
    for batch, out in enumerate(ds):
        np.testing.assert_allclose(out.numpy(), augment(lesions[4 * batch:4 * batch + 4], seeds[batch], options),
                                   atol=1e-3)


def test_none_is_the_identity(lesions):
    np.testing.assert_allclose(augment(lesions, SEED, NONE).numpy(), lesions, atol=1e-4)
    assert NONE.describe() == "none"


def test_switching_one_element_off_leaves_the_other_draws(lesions):
    """Each element has its own sub-stream: an ablation changes one thing only."""
    with_cutout = augment(lesions, SEED, only(flip=True, rotate=True, cutout=1.0)).numpy()
    without = augment(lesions, SEED, only(flip=True, rotate=True)).numpy()
    untouched = (with_cutout == without).all(axis=-1).mean()
    assert 0.6 < untouched < 1.0


# ----------------------------------------------------------------------------- Shades of Gray

def colour_cast(images, gains=(1.3, 1.0, 0.7)):
    return (images * np.array(gains, dtype="float32")).astype("float32")


def test_shades_of_gray_removes_a_colour_cast():
    grey = np.random.default_rng(0).uniform(40, 180, (4, 64, 80, 1)).astype("float32")
    textured = grey * np.random.default_rng(1).uniform(0.9, 1.1, (4, 64, 80, 3)).astype("float32")
    cast = colour_cast(textured)  # reddish, at most 234: no clipping
    fixed = shades_of_gray(cast).numpy()
    before, after = cast.mean(axis=(1, 2)), fixed.mean(axis=(1, 2))
    spread = lambda m: (m.max(axis=1) - m.min(axis=1)) / m.mean(axis=1)  # noqa: E731
    assert (spread(before) > 0.5).all()
    assert (spread(after) < 0.05).all() and (spread(after) < spread(before) / 10).all()
    p_norms = np.mean((fixed / 255.0) ** 6, axis=(1, 2)) ** (1 / 6)  # the estimated illuminant is grey
    np.testing.assert_allclose(p_norms, np.broadcast_to(p_norms.mean(axis=1, keepdims=True), p_norms.shape), rtol=1e-3)


def test_shades_of_gray_tf_and_numpy_agree(lesions):
    images = np.concatenate([lesions[:2], colour_cast(lesions[2:4]), colour_cast(lesions[4:6], (0.8, 1.0, 1.4))])
    batch = shades_of_gray(images).numpy()
    for image, out in zip(images, batch):
        np.testing.assert_allclose(out, shades_of_gray_np(image), atol=0.02)
        np.testing.assert_allclose(shades_of_gray(image).numpy(), out, atol=1e-3)  # one image works too
    np.testing.assert_allclose(shades_of_gray(images[2], p=2.5).numpy(), shades_of_gray_np(images[2], p=2.5), atol=0.02)
    assert shades_of_gray_np(np.zeros((4, 4, 3))).max() == 0.0  # black stays black, no division by zero


def test_colour_constancy_element_is_shades_of_gray(lesions):
    cast = colour_cast(lesions)
    np.testing.assert_allclose(augment(cast, SEED, only(colour_constancy=1.0)), shades_of_gray(cast), atol=1e-3)


# ----------------------------------------------------------------------------- the other elements

def test_vignette_darkens_the_corners_not_the_centre(lesions):
    out = augment(lesions, SEED, only(vignette=1.0)).numpy()
    corners = out[:, [0, 0, -1, -1], [0, -1, 0, -1]]  # (n, 4 corners, 3)
    assert (corners.max(axis=(1, 2)) < 25).all(), corners.max(axis=(1, 2))
    centre = (slice(None), slice(H // 2 - 30, H // 2 + 30), slice(W // 2 - 40, W // 2 + 40))
    np.testing.assert_array_equal(out[centre], lesions[centre])
    assert (augment(lesions, SEED, only(vignette=0.5)).numpy() == lesions).all(axis=(1, 2, 3)).any()


def high_frequency(images):
    return np.mean(np.diff(images, axis=1) ** 2) + np.mean(np.diff(images, axis=2) ** 2)


def test_blur_removes_high_frequencies(texture):
    out = augment(texture, SEED, only(blur=1.0)).numpy()
    assert high_frequency(out) < high_frequency(texture) / 4
    np.testing.assert_allclose(out.mean(), texture.mean(), rtol=0.01)  # blurred, not darkened
    some = augment(texture, SEED, only(blur=0.5)).numpy()
    untouched = (some == texture).all(axis=(1, 2, 3))
    assert untouched.any() and not untouched.all()


def test_cutout_fills_one_rectangle_with_the_mean(texture):
    out = augment(texture, SEED, only(cutout=1.0)).numpy()
    for image, result in zip(texture, out):
        changed = (image != result).any(axis=-1)
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        assert len(rows) and len(cols)
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        assert changed[box].all() and changed.sum() == changed[box].size  # one solid rectangle
        assert changed.mean() <= 0.25 + 0.02
        np.testing.assert_allclose(result[box], np.broadcast_to(image.mean(axis=(0, 1)), result[box].shape),
                                   rtol=1e-4)


def test_crop_and_rotation_leave_no_black_corners(texture):
    options = only(crop_scale=(0.35, 1.2), crop_aspect=(0.75, 4 / 3), rotate=True, flip=True)
    for step in range(4):
        out = augment(texture, SEED + [0, step], options).numpy()
        assert out.min() >= 59.9  # REFLECT fill: every output pixel interpolates image pixels (all >= 60)
        assert np.abs(out - texture).mean() > 10


def test_flips_alone_are_exact_flips(lesions):
    out = augment(lesions, SEED, only(flip=True)).numpy()
    seen = set()
    for image, result in zip(lesions, out):
        candidates = {"none": image, "lr": image[:, ::-1], "ud": image[::-1], "both": image[::-1, ::-1]}
        match = [name for name, c in candidates.items() if np.allclose(result, c, atol=1e-3)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) >= 2


def test_crop_scale_zooms_in():
    ramp = np.broadcast_to(np.linspace(0, 255, W, dtype="float32")[None, None, :, None], (4, H, W, 3))
    out = augment(ramp, SEED, only(crop_scale=(0.25, 0.25))).numpy()  # half the width, shown at full width
    span = out[:, H // 2, -1, 0] - out[:, H // 2, 0, 0]
    np.testing.assert_allclose(span, 255 * 0.5 * (W - 1) / W, atol=2.0)


def test_hsv_changes_colour_but_keeps_the_picture(lesions):
    out = augment(lesions, SEED, only(hsv=True)).numpy()
    assert np.abs(out - lesions).mean() > 5
    for image, result in zip(lesions, out):  # a colour transform: the lesion stays where it was
        correlation = np.corrcoef(image.mean(axis=-1).ravel(), result.mean(axis=-1).ravel())[0, 1]
        assert correlation > 0.95


# ----------------------------------------------------------------------------- the recipe

@pytest.mark.parametrize("options", [Augmentation(), NONE, EVERYTHING,
                                     Augmentation(crop_scale=(0.35, 1.0), blur_factor=(0.4, 0.9), flip=False)])
def test_dict_and_json_round_trip(options):
    assert Augmentation.from_dict(options.to_dict()) == options
    assert Augmentation.from_dict(json.loads(json.dumps(options.to_dict()))) == options
    assert isinstance(options.describe(), str) and options.describe()


def test_recipe_is_checked():
    with pytest.raises(ValueError, match="unknown"):
        Augmentation.from_dict({"cutuot": 0.5})
    with pytest.raises(ValueError, match="probability"):
        Augmentation(blur=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        Augmentation(crop_scale=(1.0, 0.5))
    assert Augmentation.from_dict({"vignette": 0.3}) == Augmentation(vignette=0.3)
    described = EVERYTHING.describe()
    for word in ("rotate", "flips", "HSV", "Shades of Gray", "cutout", "bottleneck", "vignette"):
        assert word in described, described


# ----------------------------------------------------------------------------- speed


# ----------------------------------------------------------------------------- batch mixing

def flat_batch():
    """Four flat images (0, 80, 160, 240 grey) with one-hot labels 0-3: every pixel tells whose share it is."""
    images = np.stack([np.full((H, W, 3), 80.0 * i, np.float32) for i in range(4)])
    return images, tf.one_hot([0, 1, 2, 3], 7)


@pytest.mark.parametrize("seed", range(6))
def test_mixup_mixes_pixels_and_labels_in_the_same_proportion(seed):
    images, labels = flat_batch()
    x, y = mix_batch(images, labels, [seed, 1], mixup=0.4, probability=1.0)
    share = float(y[0, 0])  # image 0 is mixed with image 3 (the batch reversed)
    assert 0.0 <= share <= 1.0 and float(y[0, 3]) == pytest.approx(1 - share, abs=1e-6)
    np.testing.assert_allclose(x[0].numpy(), (1 - share) * 240.0, atol=1e-3)
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_one_box_and_labels_follow_its_area(seed):
    images, labels = flat_batch()
    x, y = mix_batch(images, labels, [seed, 2], cutmix=1.0, probability=1.0)
    first = x[1].numpy()  # image 1 (80) with a box of image 2 (160)
    assert set(np.unique(first)) <= {80.0, 160.0}, "pixels are copied, not blended"
    pasted = (first[..., 0] == 160.0)
    rows, cols = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
    if pasted.any():  # one rectangle
        assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert float(y[1, 2]) == pytest.approx(pasted.mean(), abs=1e-5)
    assert float(y[1, 1]) == pytest.approx(1 - pasted.mean(), abs=1e-5)


def test_mixing_is_deterministic_and_off_means_the_batch_as_it_was():
    images, labels = flat_batch()
    a = mix_batch(images, labels, [3, 4], mixup=0.4, cutmix=1.0)
    b = mix_batch(tf.constant(images), labels, tf.constant([3, 4], tf.int64), mixup=0.4, cutmix=1.0)
    for first, again in zip(a, b):
        np.testing.assert_array_equal(first, again)
    for settings in ({"mixup": 0.0, "cutmix": 0.0}, {"mixup": 0.4, "cutmix": 1.0, "probability": 0.0}):
        x, y = mix_batch(images, labels, [3, 4], **settings)
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)


def test_about_the_asked_share_of_batches_is_mixed_and_both_kinds_occur():
    images, labels = flat_batch()
    kinds = []
    for seed in range(60):
        x = mix_batch(images, labels, [seed, 9], mixup=0.4, cutmix=1.0, probability=0.5)[0].numpy()[0]
        values = np.unique(x)
        kinds.append("none" if np.array_equal(x, images[0]) else "cutmix" if set(values) <= {0.0, 240.0} else "mixup")
    assert 18 <= kinds.count("none") <= 42
    assert kinds.count("cutmix") >= 5 and kinds.count("mixup") >= 5
