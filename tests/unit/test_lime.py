"""LIME works with any function from a batch of images to probabilities, not only with our networks.

The 'model' here is plain numpy: it looks for bright red stripes in one box of the picture. Hiding
a superpixel paints it in its mean colour, which turns the stripes dark red, so the explanation must
point at the box and nowhere else: with one stage of ~12 regions (`COARSE`) the box is one region,
at the default detail it is cut into pieces that share its weight.
"""

import numpy as np
import pytest

from skin_demo.explain import faithfulness, lime, regions
from skin_demo.explain import overlay as lime_overlay

HEIGHT, WIDTH = 48, 64
BOX = (slice(6, 22), slice(8, 28))
COARSE = dict(detail=lime.COARSE_REGIONS)  # one stage, the regions of the fast explainer before coarse to fine


def striped_picture() -> np.ndarray:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype("float32")
    rgb = np.stack([190 + 40 * x / WIDTH, 150 + 50 * y / HEIGHT, np.full_like(x, 130)], axis=-1)
    rgb += np.random.default_rng(0).normal(0, 3, rgb.shape)
    rgb[BOX] = (60, 0, 0)
    rgb[BOX[0], BOX[1].start:BOX[1].stop:2] = (255, 0, 0)  # every other column bright red
    return np.clip(rgb, 0, 255).astype("float32")


def red_stripe_detector(batch: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) RGB 0-255 -> (n, 2): P(stripes) grows with the share of bright red pixels in the box."""
    assert batch.dtype == np.float32 and batch.shape[1:] == (HEIGHT, WIDTH, 3)
    box = batch[:, BOX[0], BOX[1]]
    bright_red = ((box[..., 0] > 200) & (box[..., 1] < 80)).mean(axis=(1, 2)) * 2  # half the box when intact
    p = 0.1 + 0.8 * bright_red
    return np.stack([1 - p, p], axis=1)


@pytest.fixture(scope="module")
def picture():
    return striped_picture()


@pytest.fixture(scope="module")
def explanation(picture):
    return lime.explain(red_stripe_detector, picture, seed=0, **COARSE)


@pytest.fixture(scope="module")
def detailed(picture):
    """At the default detail: coarse to fine."""
    return lime.explain(red_stripe_detector, picture, seed=0)


@pytest.fixture(scope="module")
def in_box():
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[BOX] = True
    return mask


def test_the_explanation_points_at_the_region_that_drives_the_output(explanation, in_box):
    assert explanation.label == 1, "explains the predicted class"
    top = explanation.top(1)[0]
    weights = explanation.weights[1]
    assert in_box[explanation.segments == top].mean() > 0.9, "the top superpixel is the striped box"
    assert weights[top] > 0.5
    others = np.delete(weights, top)
    assert np.abs(others).max() < 0.05 * weights[top], "superpixels the function ignores get ~0 weight"
    np.testing.assert_allclose(explanation.weights[0], -weights, atol=1e-6)  # two classes summing to one


def test_at_the_default_detail_the_box_is_cut_into_pieces_that_carry_its_weight(detailed, explanation, in_box):
    assert detailed.label == 1 and detailed.regions >= lime.DEFAULT_DETAIL > explanation.regions
    weights = detailed.weights[1]
    top = detailed.top(1)[0]
    assert in_box[detailed.segments == top].mean() > 0.9, "the top region is a piece of the striped box"
    pieces = [j for j in range(detailed.regions) if in_box[detailed.segments == j].mean() > 0.9]
    assert len(pieces) >= 3 and set(detailed.top(len(pieces)).tolist()) == set(pieces), "the box's pieces lead"
    assert weights[pieces].sum() == pytest.approx(explanation.weights[1][explanation.top(1)[0]], abs=0.1)
    outside = [j for j in range(detailed.regions) if not in_box[detailed.segments == j].any()]
    assert np.abs(weights[outside]).max() < 0.05 * weights[top], "regions away from the box get ~0 weight"


def test_the_masks_are_complementary_pairs_from_orthogonal_blocks(explanation):
    masks = explanation.masks
    regions = explanation.segments.max() + 1
    assert explanation.samples == lime.default_samples(regions)
    assert explanation.samples % 2 == 0 and abs(explanation.samples - lime.BLOCKS * lime.block_rows(regions)) <= 1
    assert masks.shape == (explanation.samples, regions)
    assert masks[0].all() and not masks[1].any(), "the first pair: everything shown, then nothing"
    np.testing.assert_array_equal(masks[0::2] + masks[1::2], 1)
    np.testing.assert_allclose(explanation.probabilities[0], red_stripe_detector(explanation.image[None])[0])
    block = lime.block_rows(regions)
    for rows in (masks[:block], masks[block:2 * block]):  # each region shown in half, each two together in a quarter
        signs = 2 * rows - 1
        np.testing.assert_array_equal(signs.T @ signs, block * np.eye(regions))
    odd = lime.perturbation_masks(7, 5, seed=1)
    assert odd.shape == (7, 5) and (odd[0:6:2] + odd[1:6:2] == 1).all()


def test_a_pooled_kernel_keeps_interactions_of_two_regions_out_of_the_weights():
    """With both rows of a pair weighted alike, y = linear + c * s_i * s_j (+-1 coding) gives the linear weights."""
    masks = lime.orthogonal_pairs(40, 6, seed=3)  # not a whole block: orthogonality is not what this rests on
    signs = 2 * masks - 1
    linear = signs @ np.array([0.3, -0.2, 0.1, 0.0, 0.05, 0.0]) / 2
    probabilities = np.stack([linear, linear + 0.2 * signs[:, 1] * signs[:, 4]], axis=1)
    pooled = lime.ridge_fit(masks, probabilities, pooled_kernel=True)
    np.testing.assert_allclose(pooled.weights[1], pooled.weights[0], atol=1e-12)
    plain = lime.ridge_fit(masks, probabilities)
    assert np.abs(plain.weights[1] - plain.weights[0]).max() > 1e-3, "lime's own kernel lets it leak in"


def test_the_same_seed_repeats_the_explanation_and_another_seed_samples_differently(picture, detailed, in_box):
    again = lime.explain(red_stripe_detector, picture, seed=0)
    np.testing.assert_array_equal(again.segments, detailed.segments)
    np.testing.assert_array_equal(again.masks, detailed.masks)
    np.testing.assert_array_equal(again.weights, detailed.weights)
    np.testing.assert_array_equal(again.weight_errors, detailed.weight_errors)
    other = lime.explain(red_stripe_detector, picture, seed=1)
    assert not np.array_equal(other.masks[:len(detailed.masks)], detailed.masks[:len(other.masks)])
    assert in_box[other.segments == other.top(1)[0]].mean() > 0.9, "but finds the same region"


def test_two_stages_share_one_mask_stream_occlusion_rows_then_pairs_over_the_refined_pieces(detailed):
    masks, parents, n_coarse = detailed.masks, detailed.parents, detailed.coarse_samples
    regions = int(parents.max()) + 1
    assert n_coarse == 1 + regions < detailed.samples <= 1000, "the image, then each coarse region hidden alone"
    coarse = masks[:n_coarse]
    np.testing.assert_array_equal(coarse[0], 1)
    for row, parent in enumerate(range(regions), start=1):  # a coarse row gives all its pieces the same bit
        np.testing.assert_array_equal(coarse[row], parents != parent)
    fine = masks[n_coarse:]
    refined = np.isin(parents, np.flatnonzero(np.bincount(parents) > 1))
    assert refined.any() and (fine[:, ~refined] == 1).all(), "the rest of the picture stays shown"
    np.testing.assert_array_equal(fine[0::2][:, refined] + fine[1::2][:, refined], 1)
    rendered = lime.render(detailed.image, detailed.segments, masks[:4],
                           lime.hidden_fill(detailed.image, detailed.fill_segments))
    np.testing.assert_allclose(red_stripe_detector(rendered), detailed.probabilities[:4])


def test_the_weights_are_lime_base_s_ridge_and_the_standard_errors_come_with_them(explanation):
    masks, probabilities = explanation.masks, explanation.probabilities
    fit = lime.ridge_fit(masks, probabilities, errors=True)
    for label in (0, 1):
        weights, score = lime.lime_weights(masks, probabilities, label)
        np.testing.assert_allclose(fit.weights[label], weights, atol=1e-8)
        assert fit.scores[label] == pytest.approx(score, abs=1e-8)
    pooled = lime.ridge_fit(masks, probabilities, errors=True, pooled_kernel=True)  # what explanations use
    np.testing.assert_allclose(explanation.weights, pooled.weights)
    np.testing.assert_allclose(explanation.weight_errors, pooled.errors)
    assert (pooled.errors >= 0).all() and np.isfinite(pooled.errors).all()
    np.testing.assert_allclose(pooled.weights, fit.weights, atol=0.05)  # the same picture as lime's kernel


def test_the_function_sees_batches_of_at_most_batch_size_read_only_images(picture):
    seen = []

    def recording(batch):
        seen.append((len(batch), batch.flags.writeable))
        return red_stripe_detector(batch)

    result = lime.explain(recording, picture, samples=120, batch_size=16)
    assert result.samples == 120 and sum(n for n, _ in seen) == 120
    assert max(n for n, _ in seen) <= 16 and not any(writeable for _, writeable in seen)


def test_the_overlay_tints_only_the_chosen_superpixels(explanation, picture):
    picture_uint8 = np.rint(picture).astype("uint8")
    chosen = explanation.segments == explanation.top(1)[0]
    overlay = lime_overlay.overlay(explanation, num_features=1)
    assert overlay.shape == (HEIGHT, WIDTH, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay[~chosen], picture_uint8[~chosen])
    assert (overlay[chosen].astype(int) != picture_uint8[chosen]).any(axis=1).all()
    assert overlay[chosen][:, 1].mean() > picture_uint8[chosen][:, 1].mean() + 50, "tinted green: evidence for"
    np.testing.assert_array_equal(lime_overlay.overlay(explanation, num_features=0), picture_uint8)
    everything = lime_overlay.overlay(explanation, num_features=100)  # more than there are superpixels: all of them
    assert everything.shape == picture_uint8.shape and (everything != picture_uint8).any(axis=2).mean() > 0.9


# ------------------------------------------------------------------ faithfulness
def test_a_faithful_ranking_deletes_the_evidence_first(explanation, picture):
    ranking = np.argsort(-explanation.weights[1])
    faithful = faithfulness.deletion_insertion_auc(red_stripe_detector, picture, explanation.segments, ranking, 1)
    backwards = faithfulness.deletion_insertion_auc(red_stripe_detector, picture, explanation.segments,
                                                    ranking[::-1], 1)
    assert faithful["deletion"] < backwards["deletion"] - 0.5
    assert faithful["insertion"] > backwards["insertion"] + 0.5


def test_a_coarse_to_fine_ranking_deletes_the_evidence_first_with_its_own_fill(detailed, picture):
    faithful = faithfulness.explanation_auc(red_stripe_detector, detailed)
    backwards = faithfulness.deletion_insertion_auc(red_stripe_detector, picture, detailed.segments,
                                                    np.argsort(detailed.weights[1]), 1,
                                                    fill_segments=detailed.fill_segments)
    assert faithful["deletion"] < backwards["deletion"] - 0.5
    assert faithful["insertion"] > backwards["insertion"] + 0.5


def test_a_heat_map_on_the_box_ranks_the_box_superpixel_first(explanation, in_box):
    ranking = faithfulness.ranking_from_heatmap(explanation.segments, in_box.astype("float32"))
    assert ranking[0] == explanation.top(1)[0]
    assert sorted(ranking) == list(range(explanation.segments.max() + 1))


def test_lime_itself_finds_the_same_region_on_our_segmentation(explanation, picture):
    reference = faithfulness.lime_reference(red_stripe_detector, picture, explanation.segments, 1,
                                            num_samples=300, batch_size=100)
    assert faithfulness.agreement(explanation, reference, k=1) == 1.0


@pytest.mark.parametrize("a, b, expected", [
    ([1, 2, 3], [3, 2, 1], 1.0),
    ([1, 2, 3], [4, 5], 0.0),
    ([1, 2, 3, 4], [3, 4, 5, 6], 2 / 6),
    (np.array([7]), [7, 8], 0.5),
    ([], [], 1.0),
])
def test_jaccard_is_shared_over_all(a, b, expected):
    assert faithfulness.jaccard(a, b) == pytest.approx(expected)


def test_a_numbered_region_within_two_standard_errors_of_the_first_one_left_out_is_flagged_tied():
    weights = np.array([0.30, -0.20, 0.11, 0.10, 0.02])  # the top 3 by |weight|, then 0.10 is the first left out
    errors = np.full(5, 0.01)
    assert regions.tied_with_rest(weights, errors, k=3).tolist() == [False, False, True, False, False], (
        "0.11 vs 0.10 ± 0.014")
    assert not regions.tied_with_rest(weights, errors / 10, k=3).any(), "precise enough to tell them apart"
    assert not regions.tied_with_rest(weights, np.full(5, np.nan), k=3).any(), "unknown errors flag nothing"
    assert not regions.tied_with_rest(weights, errors, k=5).any(), "nothing left out, nothing to swap with"
    assert regions.tied_with_rest(-weights, errors, k=3)[2], "by |weight|"
    shuffled = np.array([0.105, 0.30, 0.02, 0.15, -0.20])  # ranks: 1, 4, 3 numbered; 0 is the first left out
    uncertain = np.array([0.01, 0.01, 0.01, 0.001, 0.1])  # region 4's large error reaches down to 0.105
    assert regions.tied_with_rest(shuffled, uncertain, k=3).tolist() == [False, False, False, False, True], (
        "the flag sits on the region, wherever it is in the array and in the ranking")
