"""From whatever a person hands us to the model's input: load_image, fit_to_input, fit_batch and load_fitted.

(Every odd file format and every hostile file is in test_hostile_images.py; this is the plain story.)
"""

import numpy as np
import pytest
from PIL import Image
from unit_helpers import TINY_SIZE, assert_one_sentence, synthetic_lesion, write_image

from skin_demo.images import WORKING_SIDE, ImageError, fit_batch, fit_to_input, load_fitted, load_image

RED, BLUE = (230, 20, 20), (20, 20, 230)


def halves(height, width, left=RED, right=BLUE) -> np.ndarray:
    """An image whose left half is one colour and right half another."""
    image = np.empty((height, width, 3), "uint8")
    image[:, : width // 2], image[:, width // 2:] = left, right
    return image


def test_any_source_of_the_same_photo_loads_as_the_same_rgb_array(tmp_path):
    lesion = synthetic_lesion(150, 200)
    png = write_image(tmp_path / "lesion.png", lesion)
    for source in (png, str(png), png.read_bytes(), Image.open(png), lesion):
        loaded = load_image(source)
        assert loaded.dtype == np.uint8 and loaded.shape == (150, 200, 3)
        np.testing.assert_array_equal(loaded, lesion)
    jpeg = load_image(write_image(tmp_path / "lesion.jpg", lesion, quality=95))
    assert jpeg.shape == (150, 200, 3) and np.abs(jpeg.astype(int) - lesion).mean() < 6  # lossy, noisy


def test_a_big_photo_is_reduced_to_the_working_size_keeping_its_shape(tmp_path):
    big = write_image(tmp_path / "big.bmp", synthetic_lesion(1500, 2000))
    assert load_image(big).shape == (WORKING_SIDE * 3 // 4, WORKING_SIDE, 3)


def test_arrays_of_other_layouts_become_rgb_uint8():
    gray = np.tile(np.linspace(0, 255, 64, dtype="uint8"), (48, 1))
    np.testing.assert_array_equal(load_image(gray), np.stack([gray] * 3, axis=-1))
    unit_floats = np.full((40, 40, 3), 0.5, "float32")
    assert load_image(unit_floats).dtype == np.uint8 and (load_image(unit_floats) == 127).all()
    transparent = np.zeros((40, 40, 4), "uint8")  # fully transparent black: shown over white
    assert (load_image(transparent) == 255).all()
    with pytest.raises(ImageError, match=r"Expected an image array of shape \(height, width, 3\), got \(40, 40, 5\)"):
        load_image(np.zeros((40, 40, 5), "uint8"))


@pytest.mark.parametrize("source, phrase", [
    (np.zeros((8, 8, 3), "uint8"), "The image is too small (8x8); at least 32x32 pixels are needed."),
    (Image.new("RGB", (100, 20)), "The image is too small (100x20); at least 32x32 pixels are needed."),
    (b"", "The file is empty."),
    ("missing.jpg", "File not found: missing.jpg."),
    (12345, "Unsupported input type int; give an image file."),
], ids=["tiny-array", "thin-pil-image", "empty-bytes", "missing-file", "a-number"])
def test_unusable_inputs_get_one_sentence_a_person_can_act_on(source, phrase, tmp_path):
    if isinstance(source, str):
        source = tmp_path / source
    with pytest.raises(ImageError) as refusal:
        load_image(source)
    assert str(refusal.value) == phrase
    assert_one_sentence(str(refusal.value))


def test_an_empty_file_and_a_tiny_image_file_are_refused_in_one_sentence(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    tiny = write_image(tmp_path / "tiny.png", synthetic_lesion(10, 12))
    for path, phrase in ((empty, "The file is empty."), (tiny, "too small (12x10)")):
        with pytest.raises(ImageError) as refusal:
            load_fitted(path, TINY_SIZE)
        assert_one_sentence(str(refusal.value), phrase)


# ------------------------------------------------------------------ fitting to the model's input
def test_a_portrait_photo_meets_a_landscape_model_by_a_quarter_turn_not_a_squash():
    portrait = halves(120, 80)  # taller than wide; red on the left
    fitted = fit_to_input(portrait, TINY_SIZE)
    assert fitted.shape == (*TINY_SIZE, 3) and fitted.dtype == np.float32
    np.testing.assert_array_equal(fitted, fit_to_input(np.rot90(portrait), TINY_SIZE))
    # np.rot90 turns the left edge to the bottom: the lower half is now red, the upper half blue
    np.testing.assert_allclose(fitted[-5:].reshape(-1, 3).mean(axis=0), RED, atol=1)
    np.testing.assert_allclose(fitted[:5].reshape(-1, 3).mean(axis=0), BLUE, atol=1)


def test_a_photo_in_the_model_orientation_is_not_turned_and_a_square_model_turns_nothing():
    landscape = halves(96, 128)
    fitted = fit_to_input(landscape, TINY_SIZE)
    np.testing.assert_allclose(fitted[:, :5].reshape(-1, 3).mean(axis=0), RED, atol=1)
    square = fit_to_input(halves(120, 80), (32, 32))  # portrait into a square: centre crop, no turn
    np.testing.assert_allclose(square[:, :5].reshape(-1, 3).mean(axis=0), RED, atol=1)


def test_a_wider_photo_is_centre_cropped_to_the_model_aspect():
    panorama = np.zeros((48, 192, 3), "uint8")
    panorama[:, 64:128] = (0, 200, 0)  # the middle third is green: all a 48x64 model should see
    fitted = fit_to_input(panorama, TINY_SIZE)
    np.testing.assert_array_equal(fitted, np.broadcast_to(np.float32([0, 200, 0]), (*TINY_SIZE, 3)))


def test_load_fitted_is_load_image_then_fit_to_input(tmp_path):
    path = write_image(tmp_path / "portrait.png", synthetic_lesion(200, 150))
    fitted = load_fitted(path, TINY_SIZE)
    assert fitted.shape == (*TINY_SIZE, 3) and fitted.dtype == np.float32
    assert 0 <= fitted.min() and fitted.max() <= 255
    np.testing.assert_array_equal(fitted, fit_to_input(load_image(path), TINY_SIZE))


def test_fit_batch_turns_one_image_into_a_batch_and_returns_a_fitted_batch_as_is():
    one = fit_batch(synthetic_lesion(150, 200), TINY_SIZE)
    assert one.shape == (1, *TINY_SIZE, 3) and one.dtype == np.float32
    ready = np.zeros((2, *TINY_SIZE, 3), "float32")
    assert fit_batch(ready, TINY_SIZE) is ready, "a batch already at the input size is not copied"
    assert fit_batch(np.zeros((2, 150, 200, 3), "uint8"), TINY_SIZE).shape == (2, *TINY_SIZE, 3)

