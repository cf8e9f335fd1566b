"""Explanations drawn on the picture the person uploaded: mapped back through `fit_to_input`'s geometry,
numbered with the ids the table lists, margins the model never saw marked, a legend beside and on it."""

import dataclasses

import numpy as np
import pytest
from PIL import Image
from unit_helpers import synthetic_lesion

from skin_demo.explain import lime, overlay
from skin_demo.images import fit_geometry, fit_to_input

MODEL_SIZE = (150, 200)  # landscape, as the served models
SHAPES = [(300, 200), (200, 300), (150, 200), (100, 100), (151, 200), (480, 640), (640, 480), (97, 333), (333, 97)]


# ------------------------------------------------------------------ geometry
@pytest.mark.parametrize("size", [MODEL_SIZE, (48, 64), (224, 224), (200, 150)])
@pytest.mark.parametrize("shape", SHAPES)
def test_fit_geometry_describes_exactly_what_fit_to_input_does(shape, size):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    geometry = fit_geometry(image.shape, size)
    turned = np.rot90(image) if geometry.turned else image
    top, left, height, width = geometry.crop
    assert 0 <= top and top + height <= turned.shape[0] and 0 <= left and left + width <= turned.shape[1]
    box = turned[top:top + height, left:left + width]
    if box.shape[:2] != tuple(size):
        box = np.asarray(Image.fromarray(box).resize(size[::-1], Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(box.astype("float32"), fit_to_input(image, size))
    seen = geometry.seen()
    assert seen.shape == tuple(shape) and seen.sum() == height * width


def test_a_portrait_upload_maps_back_with_its_cropped_margins_marked_unseen():
    geometry = fit_geometry((300, 200), MODEL_SIZE)
    assert geometry.turned and geometry.crop == (0, 16, 200, 267)
    seen = geometry.seen()
    assert not seen[:16].any() and not seen[283:].any() and seen[16:283].all(), "rows 0-15 and 283-299 were cropped"
    labels = np.arange(MODEL_SIZE[0] * MODEL_SIZE[1]).reshape(MODEL_SIZE)
    back = geometry.to_image(labels, outside=-1)
    assert back.shape == (300, 200) and (back[~seen] == -1).all()
    assert set(np.unique(back[seen]).tolist()) == set(labels.ravel().tolist()), "every model pixel lands somewhere"


@pytest.mark.parametrize("shape", [(300, 200), (480, 640), (333, 97)])
def test_what_the_model_sees_at_a_spot_maps_back_onto_that_spot(shape):
    """A bright square in the upload, found in the model's input and mapped back, covers the square."""
    upload = np.full((*shape, 3), 60, dtype=np.uint8)
    square = np.zeros(shape, bool)
    h, w = shape
    square[h // 3:h // 3 + h // 5, w // 3:w // 3 + w // 4] = True
    upload[square] = 250
    found = fit_to_input(upload, MODEL_SIZE).mean(axis=-1) > 155
    back = fit_geometry(upload.shape, MODEL_SIZE).to_image(found, outside=False)
    assert (back & square).sum() / (back | square).sum() > 0.9


# ------------------------------------------------------------------ LIME on the upload
def lesion_model(batch):
    """Two classes; class 1 grows with dark, textured pixels in the left half of the model's input."""
    batch = np.asarray(batch)
    grey = batch.mean(axis=-1)
    texture = np.abs(np.diff(grey, axis=2))[:, :, :100]
    score = ((grey[:, :, :100] < 110).mean(axis=(1, 2)) + texture.mean(axis=(1, 2)) / 20)
    p = 1 / (1 + np.exp(-8 * (score - 0.3)))
    return np.stack([1 - p, p], axis=1)


@pytest.fixture(scope="module")
def upload():
    return synthetic_lesion(300, 200, seed=3)  # portrait, for a landscape model


@pytest.fixture(scope="module")
def explanation(upload):
    return lime.explain(lesion_model, fit_to_input(upload, MODEL_SIZE), samples=200)


def test_region_rows_list_ids_weights_and_errors_largest_weight_first(explanation):
    rows = overlay.region_rows(explanation)
    assert [row[0] for row in rows] == [j + 1 for j in explanation.top(explanation.regions)]
    assert sorted(row[0] for row in rows) == list(range(1, explanation.regions + 1)), "ids 1..S"
    magnitudes = [abs(weight) for _, weight, _ in rows]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for identifier, weight, error in rows:
        assert weight == explanation.weights[explanation.label][identifier - 1]
        assert error == explanation.weight_errors[explanation.label][identifier - 1] and error >= 0
    assert overlay.region_rows(explanation, limit=3) == rows[:3]
    other = overlay.region_rows(explanation, label=0)
    assert [row[1] for row in other] == pytest.approx([-row[1] for row in rows])


def test_the_picture_comes_back_at_the_upload_s_size_with_the_model_s_unseen_margins_marked(explanation, upload):
    picture = overlay.draw(explanation, upload, class_name="Melanoma")
    assert picture.image.shape == upload.shape and picture.image.dtype == np.uint8
    assert not picture.seen[:16].any() and not picture.seen[283:].any() and picture.seen[16:283].all()
    unseen = ~picture.seen
    outside_legend = unseen.copy()
    if picture.legend_box:
        left, top, right, bottom = picture.legend_box
        outside_legend[top:bottom, left:right] = False
    changed = (picture.image.astype(int) != upload).any(axis=-1)
    assert changed[outside_legend].mean() > 0.95, "greyed"
    assert (picture.image[outside_legend] == overlay.HATCH.astype(np.uint8)).all(axis=-1).mean() > 0.05, "hatched"
    assert "hatched grey: not seen by the model" in picture.legend and "green: supports Melanoma" in picture.legend
    plain = overlay.draw(explanation, upload, num_features=0, numbers=False, legend=False)
    np.testing.assert_array_equal(plain.image[picture.seen], upload[picture.seen]), "nothing else is touched"


def test_the_numbers_drawn_are_the_region_ids_of_the_rows(explanation, upload):
    picture = overlay.draw(explanation, upload, num_features=5, legend=False)
    bare = overlay.draw(explanation, upload, num_features=5, numbers=False, legend=False)
    rows = overlay.region_rows(explanation, limit=5)
    assert picture.rows == rows and list(picture.markers) == [row[0] for row in rows]
    labels = fit_geometry(upload.shape, MODEL_SIZE).to_image(explanation.segments)
    ink = (picture.image != bare.image).any(axis=-1)
    near = np.zeros(ink.shape, bool)
    for identifier, (x, y) in picture.markers.items():
        assert labels[y, x] == identifier - 1, "each number sits inside its own region"
        window = (slice(max(y - 12, 0), y + 13), slice(max(x - 16, 0), x + 17))
        assert ink[window].sum() > 10, f"region {identifier}'s number is drawn"
        near[window] = True
    assert not ink[~near].any(), "the numbers are all that differs"
    tinted = np.isin(labels, [row[0] - 1 for row in rows])
    assert (bare.image[tinted] != upload[tinted]).any(axis=-1).all(), "the numbered regions are tinted"
    assert (bare.image[~tinted & picture.seen] == upload[~tinted & picture.seen]).all()


def test_numbers_of_neighbouring_thin_regions_do_not_cover_each_other(explanation):
    """Two tall strips side by side, each narrower than a number: their deepest points are side by side,
    so the second number moves along its strip instead of being drawn over the first."""
    segments = np.full(MODEL_SIZE, 2)
    segments[:, 96:100], segments[:, 100:104] = 0, 1
    weights = np.zeros((2, 3))
    weights[:, :2] = [[-0.2, -0.1], [0.2, 0.1]]
    strips = dataclasses.replace(explanation, segments=segments, weights=weights, weight_errors=np.zeros((2, 3)),
                                 parents=np.arange(3))
    picture = overlay.draw(strips, num_features=2, legend=False)
    (x1, y1), (x2, y2) = picture.markers.values()
    assert segments[y1, x1] == 0 and segments[y2, x2] == 1, "each number sits inside its own region"
    assert abs(y1 - y2) >= 10, "one below the other, not drawn over it"


def test_the_legend_is_drawn_where_it_hides_no_numbered_region_and_returned_as_text(explanation, upload):
    big = np.asarray(Image.fromarray(upload).resize((600, 900)))  # a phone photo, portrait
    picture = overlay.draw(explanation, big, class_name="Nevus")
    assert picture.image.shape == big.shape
    left, top, right, bottom = picture.legend_box
    assert 0 <= left < right <= 600 and 0 <= top < bottom <= 900
    for x, y in picture.markers.values():
        assert not (left <= x < right and top <= y < bottom)
    assert picture.legend.splitlines()[:2] == ["green: supports Nevus", "red: opposes Nevus"]
    tiny = overlay.draw(explanation, explanation.image.astype("uint8"))  # too small for a legend: text only
    assert tiny.image.shape == (*MODEL_SIZE, 3) and "not seen" not in tiny.legend and tiny.seen.all()
    assert tiny.legend_box is None and tiny.legend.startswith("green: supports class 1")


def test_without_an_upload_the_picture_is_the_model_s_input(explanation):
    picture = overlay.draw(explanation, numbers=False, legend=False)
    np.testing.assert_array_equal(picture.image, overlay.overlay(explanation))


def test_grad_cam_is_drawn_on_the_upload_too(upload):
    heat = np.zeros(MODEL_SIZE, dtype="float32")
    heat[50:100, 80:120] = 1.0
    picture = overlay.gradcam_overlay(fit_to_input(upload, MODEL_SIZE), heat, picture=upload)
    assert picture.shape == upload.shape and picture.dtype == np.uint8
    assert (picture[:16] != upload[:16]).any(axis=-1).mean() > 0.95, "the unseen margin is marked"
    model_size = overlay.gradcam_overlay(fit_to_input(upload, MODEL_SIZE), heat)
    assert model_size.shape == (*MODEL_SIZE, 3)
