"""LIME at the detail people asked for: >= 25 regions by coarse to fine, one class for every compared
model, a standard error per weight, and how far models agree.

The 'models' are plain numpy functions of a picture with two striped boxes: hiding a region paints it
in a mean colour, which wipes the stripes, so each function's evidence sits in known pixels.
"""

import dataclasses

import numpy as np
import pytest
from unit_helpers import assert_one_sentence, synthetic_lesion

from skin_demo.explain import faithfulness, lime

HEIGHT, WIDTH = 48, 64
LEFT = (slice(8, 26), slice(6, 26))
RIGHT = (slice(24, 42), slice(38, 58))


def two_boxes() -> np.ndarray:
    """Skin-coloured gradient with a red-striped box on the left and a blue-striped box on the right."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype("float32")
    rgb = np.stack([190 + 40 * x / WIDTH, 150 + 50 * y / HEIGHT, np.full_like(x, 130)], axis=-1)
    rgb += np.random.default_rng(0).normal(0, 3, rgb.shape)
    rgb[LEFT] = (60, 0, 0)
    rgb[LEFT[0], LEFT[1].start:LEFT[1].stop:2] = (255, 0, 0)
    rgb[RIGHT] = (0, 0, 60)
    rgb[RIGHT[0], RIGHT[1].start:RIGHT[1].stop:2] = (0, 0, 255)
    return np.clip(rgb, 0, 255).astype("float32")


def stripes(batch, box, channel) -> np.ndarray:
    """Share of the box's pixels that are bright in `channel` and dark elsewhere, 1.0 when intact."""
    part = batch[:, box[0], box[1]]
    others = [c for c in range(3) if c != channel]
    bright = (part[..., channel] > 200) & (part[..., others] < 80).all(axis=-1)
    return bright.mean(axis=(1, 2)) * 2


def model(red_weight: float, blue_weight: float):
    """Three classes: 0 grows with the red stripes, 1 with the blue ones (negative weights: shrinks), 2 the rest."""
    def predict(batch):
        batch = np.asarray(batch)
        red, blue = stripes(batch, LEFT, 0), stripes(batch, RIGHT, 2)
        a = 0.1 + red_weight * red if red_weight >= 0 else 0.1 - red_weight * (1 - red)
        b = 0.1 + blue_weight * blue if blue_weight >= 0 else 0.1 - blue_weight * (1 - blue)
        return np.stack([a, b, 1 - a - b], axis=1)
    return predict


RED_FIRST, BLUE_FIRST = model(0.5, 0.3), model(0.3, 0.5)


def saturating(batch):
    """A non-linear two-class model: both boxes together count more than each alone."""
    red, blue = stripes(np.asarray(batch), LEFT, 0), stripes(np.asarray(batch), RIGHT, 2)
    p = 1 / (1 + np.exp(-(4 * red * blue + 2 * red - 3)))
    return np.stack([1 - p, p], axis=1)


def in_box(explanation, region, box) -> float:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[box] = True
    return mask[explanation.segments == region].mean()


@pytest.fixture(scope="module")
def picture():
    return two_boxes()


# ------------------------------------------------------------------ detail
def test_the_default_detail_gives_at_least_25_regions_on_a_lesion_image():
    lesion = synthetic_lesion(150, 200).astype("float32")

    def darkness(batch):
        dark = (np.asarray(batch).mean(axis=-1) < 120).mean(axis=(1, 2))
        return np.stack([1 - dark, dark], axis=1)

    explanation = lime.explain(darkness, lesion, samples=100)
    assert lime.DEFAULT_DETAIL >= 25 and explanation.regions >= 25
    assert explanation.weights.shape == explanation.weight_errors.shape == (2, explanation.regions)
    assert sorted(np.unique(explanation.segments)) == list(range(explanation.regions))
    coarse = explanation.fill_segments  # every fine region lies inside one coarse region
    for region in range(explanation.regions):
        assert len(np.unique(coarse[explanation.segments == region])) == 1


@pytest.mark.parametrize("detail", [5, 8, 12, 13, 25, 40, 50])
def test_every_detail_in_range_gives_at_least_that_many_regions(detail):
    lesion = synthetic_lesion(150, 200).astype("float32")
    coarse = lime.coarse_segments(lesion, detail=detail)
    if coarse.max() + 1 >= detail:
        assert detail <= lime.COARSE_REGIONS, "one stage only up to COARSE_REGIONS"
        return
    order = np.argsort(-np.bincount(coarse.ravel()))
    fine, parents = lime.refine(lesion, coarse, order, detail)
    assert fine.max() + 1 >= detail and len(parents) == fine.max() + 1
    np.testing.assert_array_equal(parents[fine], coarse)
    refined = int((np.bincount(parents) > 1).sum())
    shuffled = np.concatenate([order[:refined][::-1], order[refined:]])
    again, _ = lime.refine(lesion, coarse, shuffled, detail, at_least=refined)
    np.testing.assert_array_equal(again, fine), "which regions are refined decides the map, not their order"


@pytest.mark.parametrize("detail", [4, 51, 0, -3, 25.0, 2.5, True, "25", None])
def test_a_detail_out_of_range_is_refused_with_one_sentence(picture, detail):
    with pytest.raises(ValueError) as error:
        lime.explain(RED_FIRST, picture, detail=detail)
    assert_one_sentence(str(error.value), "detail must be a whole number of regions from 5 to 50")
    assert lime.DETAIL_RANGE == (5, 50) and lime.DETAIL_RANGE[0] <= lime.DEFAULT_DETAIL <= lime.DETAIL_RANGE[1]


def test_explaining_two_classes_gives_two_maps_each_refined_where_its_evidence_is(picture):
    red = lime.explain(RED_FIRST, picture, label=0)
    blue = lime.explain(RED_FIRST, picture, label=1)
    assert (red.label, blue.label) == (0, 1)
    # the top piece lies in the box (a piece cut across the box's edge carries its share of the stripes)
    assert in_box(red, red.top(1)[0], LEFT) > 0.6 and in_box(blue, blue.top(1)[0], RIGHT) > 0.6
    assert all(in_box(e, j, box) > 0.6 for e, box in ((red, LEFT), (blue, RIGHT)) for j in e.top(3))
    assert not np.array_equal(red.segments, blue.segments), "each map is cut finer where its class's evidence is"
    pieces = lambda e, box: sum(in_box(e, j, box) > 0.9 for j in range(e.regions))  # noqa: E731
    assert pieces(red, LEFT) > pieces(blue, LEFT) and pieces(blue, RIGHT) > pieces(red, RIGHT)


# ------------------------------------------------------------------ one class for all compared models
def test_compare_explains_the_first_model_s_class_for_every_model(picture):
    assert RED_FIRST(picture[None]).argmax() == 0 and BLUE_FIRST(picture[None]).argmax() == 1
    views = lime.compare({"red": RED_FIRST, "blue": BLUE_FIRST}, picture, seed=2)
    assert {name: view.label for name, view in views.items()} == {"red": 0, "blue": 0}
    np.testing.assert_array_equal(views["red"].segments, views["blue"].segments)
    np.testing.assert_array_equal(views["red"].masks, views["blue"].masks)  # one mask set for every model
    swapped = lime.compare({"blue": BLUE_FIRST, "red": RED_FIRST}, picture, seed=2)
    assert {view.label for view in swapped.values()} == {1}
    chosen = lime.compare({"red": RED_FIRST, "blue": BLUE_FIRST}, picture, label=2, max_samples=100)
    assert {view.label for view in chosen.values()} == {2}


@pytest.mark.parametrize("label", [3, 7, -1, True, 1.0])
def test_a_label_that_is_not_a_class_index_is_refused_with_one_sentence(picture, label):
    with pytest.raises(ValueError) as error:
        lime.compare({"red": RED_FIRST, "blue": BLUE_FIRST}, picture, label=label, max_samples=50)
    assert_one_sentence(str(error.value), "label must be a class index from 0")
    if label in (3, 7):
        assert "from 0 to 2" in str(error.value)


@pytest.mark.parametrize("counts", [dict(samples=1), dict(samples=10.0), dict(max_samples=None),
                                    dict(max_samples=True)])
def test_a_sample_count_that_is_not_a_whole_number_from_2_is_refused_with_one_sentence(picture, counts):
    with pytest.raises(ValueError) as error:
        lime.explain(RED_FIRST, picture, **counts)
    assert_one_sentence(str(error.value), f"{next(iter(counts))} must be a whole number of at least 2")


def test_models_with_different_numbers_of_classes_cannot_be_compared(picture):
    with pytest.raises(ValueError, match="same number of classes"):
        lime.compare({"three": RED_FIRST, "two": saturating}, picture, max_samples=50)


# ------------------------------------------------------------------ standard errors
def test_standard_errors_are_non_negative_and_shrink_with_more_samples(picture):
    for options in (dict(detail=lime.COARSE_REGIONS), {}):
        few = lime.explain(saturating, picture, samples=100, **options)
        many = lime.explain(saturating, picture, samples=800, **options)
        for explanation in (few, many):
            assert (explanation.weight_errors >= 0).all() and np.isfinite(explanation.weight_errors).all()
        assert many.weight_errors[1].mean() < 0.6 * few.weight_errors[1].mean()


def test_standard_errors_match_how_much_the_weights_vary_over_seeds(picture):
    views = [lime.explain(saturating, picture, seed=seed, samples=200,
                          detail=lime.COARSE_REGIONS) for seed in range(12)]
    spread = np.stack([view.weights[1] for view in views]).std(axis=0, ddof=1)
    error = np.mean([view.weight_errors[1] for view in views], axis=0)
    assert 0.5 < np.median(spread / error) < 2


# ------------------------------------------------------------------ agreement
def test_pairwise_agreement_is_high_for_the_same_evidence_and_low_for_other_evidence(picture):
    against_blue = model(0.0, -0.4)  # class 0 falls as the blue stripes show: evidence elsewhere, other sign
    views = lime.compare({"red": RED_FIRST, "blue": BLUE_FIRST, "against": against_blue}, picture, seed=1)
    for measure in ("top_k", "weighted"):
        table = faithfulness.pairwise_agreement(views, measure=measure)
        assert list(table) == ["red", "blue", "against"] and all(table[m][m] == 1.0 for m in table)
        assert all(table[a][b] == table[b][a] and 0 <= table[a][b] <= 1 for a in table for b in table)
        assert table["red"]["blue"] > 0.5 > table["red"]["against"]
    flipped = dataclasses.replace(views["red"], weights=-views["red"].weights)
    assert faithfulness.pairwise_agreement({"red": views["red"], "flipped": flipped})["red"]["flipped"] == 0.0
    other_class = lime.explain(RED_FIRST, picture, label=1, max_samples=100)
    with pytest.raises(ValueError, match="same class"):
        faithfulness.pairwise_agreement({"red": views["red"], "other": other_class})


def test_stability_compares_pixels_when_two_seeds_refine_different_regions(picture):
    a = lime.explain(RED_FIRST, picture, label=0)
    b = dataclasses.replace(a, segments=np.ascontiguousarray(a.segments[::-1]))  # same ids, other pixels
    assert faithfulness.top_overlap(a, a) == 1.0
    assert faithfulness.top_overlap(a, b) < 1.0
    assert faithfulness.stability(RED_FIRST, picture, seeds=range(3), label=0) > 0.85


def test_the_regions_flagged_tied_are_the_ones_other_seeds_drop(picture):
    base = lime.explain(RED_FIRST, picture, label=0, max_samples=100)

    def view(fifth: int, sixth: int):  # regions 0-3 far ahead; the 5th and 6th 0.01 apart, errors 0.01
        weights = np.zeros_like(base.weights)
        weights[0, [0, 1, 2, 3, fifth, sixth]] = [0.5, 0.4, 0.3, 0.2, 0.11, 0.10]
        return dataclasses.replace(base, weights=weights, weight_errors=np.full_like(weights, 0.01))

    kept = faithfulness.tie_flags_kept([view(4, 5), view(5, 4), view(4, 5)])
    assert kept["clear"] == [1.0] * 12, "regions 0-3 of every view: in every other view's top 5"
    assert kept["tied"] == [0.5, 0.0, 0.5], "the fifth: region 4 in two views, region 5 in one"
