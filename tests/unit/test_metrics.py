"""The metrics of every model card: scikit-learn's numbers on a hand-made example, and the calibration error."""

import os

import numpy as np
import pytest
from sklearn import metrics as sk

from skin_demo.classes import CLASSES
from skin_demo.lesions import LESIONS_FILE, lesion_groups
from skin_demo.metrics import (TIE, _weighted_auc, bootstrap_intervals, compute_metrics, expected_calibration_error, fmt,
                               rank_by_validation, reliability_bins)

Y_TRUE = np.array([0, 0, 1, 1, 2, 3, 4, 5, 5, 6, 6, 4, 5, 2])


@pytest.fixture(scope="module")
def probs():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(len(CLASSES)), size=len(Y_TRUE))
    p[np.arange(8), Y_TRUE[:8]] += 2.0  # the first eight are confidently right, the rest are guesses
    return (p / p.sum(axis=1, keepdims=True)).astype("float32")


def test_every_number_equals_scikit_learn(probs):
    y_pred = probs.argmax(axis=1)
    result = compute_metrics(Y_TRUE, probs)
    assert result["n"] == len(Y_TRUE) and result["classes"] == list(CLASSES)
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(Y_TRUE, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(Y_TRUE, y_pred))
    assert result["macro_auc"] == pytest.approx(sk.roc_auc_score(Y_TRUE, probs, multi_class="ovr"))
    assert result["macro_f1"] == pytest.approx(sk.f1_score(Y_TRUE, y_pred, average="macro"))
    assert result["log_loss"] == pytest.approx(sk.log_loss(Y_TRUE, probs), rel=1e-4)
    assert result["confusion_matrix"] == sk.confusion_matrix(Y_TRUE, y_pred, labels=range(7)).tolist()
    recall = sk.recall_score(Y_TRUE, y_pred, labels=range(7), average=None, zero_division=0)
    precision = sk.precision_score(Y_TRUE, y_pred, labels=range(7), average=None, zero_division=0)
    for i, code in enumerate(CLASSES):
        c = result["per_class"][code]
        assert c["recall"] == pytest.approx(recall[i]) and c["precision"] == pytest.approx(precision[i])
        assert c["support"] == int((Y_TRUE == i).sum())
        assert c["auc"] == pytest.approx(sk.roc_auc_score(Y_TRUE == i, probs[:, i]))
        negatives = Y_TRUE != i  # specificity by hand: images not of class i that were not called i
        assert c["specificity"] == pytest.approx((y_pred[negatives] != i).mean())
    assert 0.0 <= result["ece"] <= 1.0


def test_a_class_missing_from_the_labels_has_no_auc_and_is_left_out_of_the_macro_auc(probs):
    keep = Y_TRUE != 3  # no dermatofibroma in this evaluation
    result = compute_metrics(Y_TRUE[keep], probs[keep])
    assert result["per_class"]["df"]["auc"] is None and result["per_class"]["df"]["support"] == 0
    present = [c["auc"] for c in result["per_class"].values() if c["auc"] is not None]
    assert len(present) == 6 and result["macro_auc"] == pytest.approx(np.mean(present))
    assert fmt(result["per_class"]["df"]["auc"]) == "–" and fmt(0.123456) == "0.1235"


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_one_when_sure_and_always_wrong():
    labels = np.array([0, 1, 2, 3])
    sure_and_right = np.eye(len(CLASSES))[labels]
    sure_and_wrong = np.eye(len(CLASSES))[labels + 1]
    assert expected_calibration_error(labels, sure_and_right) == pytest.approx(0.0)
    assert expected_calibration_error(labels, sure_and_wrong) == pytest.approx(1.0)
    # 75 % confident and right 3 times out of 4: calibrated; 95 % confident and right 1 time out of 2: off by 0.45
    probs = np.full((6, len(CLASSES)), 0.25 / 6)
    probs[:4, 0] = 0.75
    probs[4:] = 0.05 / 6
    probs[4:, 0] = 0.95
    labels = np.array([0, 0, 0, 1, 0, 1])
    assert expected_calibration_error(labels, probs) == pytest.approx(2 / 6 * 0.45)
    mean_confidence, accuracy, share = reliability_bins(labels, probs, bins=10)
    assert share.sum() == pytest.approx(1) and np.isnan(accuracy[0])  # empty bins are NaN, not 0
    assert mean_confidence[7] == pytest.approx(0.75) and accuracy[7] == pytest.approx(0.75)


def test_models_are_ranked_by_balanced_accuracy_with_near_ties_broken_by_macro_auc():
    scores = {
        "clearly_best": {"balanced_accuracy": 0.78, "macro_auc": 0.93},
        "tied_lower_auc": {"balanced_accuracy": 0.70, "macro_auc": 0.94},
        "tied_higher_auc": {"balanced_accuracy": 0.70 - TIE / 2, "macro_auc": 0.96},
        "worst": {"balanced_accuracy": 0.60, "macro_auc": None},
    }
    assert rank_by_validation(scores) == ["clearly_best", "tied_higher_auc", "tied_lower_auc", "worst"]
    assert rank_by_validation({}) == []


# ----------------------------------------------------------------------------- bootstrap intervals

def a_test_split(n=600, seed=0):
    """A realistic class mix (nv two thirds, df and vasc ~1-2 %) and a model of middling skill."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(CLASSES), n, p=[.03, .05, .11, .02, .11, .66, .02])
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), y] += 1.5
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_the_resampled_auc_is_scikit_learns_weighted_auc_ties_included():
    y, p = a_test_split()
    p[:40, 2] = 0.25  # ties across both groups
    weights = np.random.default_rng(3).integers(0, 4, (len(y), 3)).astype("float32")
    for c in range(len(CLASSES)):
        ours = _weighted_auc(p[:, c], y == c, weights)
        reference = [sk.roc_auc_score(y == c, p[:, c], sample_weight=w) for w in weights.T]
        np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_intervals_hold_the_split_score_and_narrow_with_more_images():
    y, p = a_test_split(400)
    small = bootstrap_intervals(y, p)
    point = compute_metrics(y, p)
    for metric in ("balanced_accuracy", "accuracy", "macro_auc"):
        low, high = small[metric]
        assert low < point[metric] < high, metric
    assert small["recall_df"][1] - small["recall_df"][0] > small["recall_nv"][1] - small["recall_nv"][0], \
        "a class of a few images is known far less precisely"
    y4, p4 = a_test_split(1600, seed=1)
    large = bootstrap_intervals(y4, p4)
    width = lambda iv: iv["balanced_accuracy"][1] - iv["balanced_accuracy"][0]
    assert width(large) < 0.75 * width(small)
    assert bootstrap_intervals(y, p) == small, "deterministic for a seed"


def test_images_of_one_lesion_are_drawn_together_so_copies_do_not_fake_precision():
    y, p = a_test_split(300)
    copies = 4  # every lesion photographed four times, the same answer each time
    y4, p4 = np.repeat(y, copies), np.repeat(p, copies, axis=0)
    as_images = bootstrap_intervals(y4, p4)
    as_lesions = bootstrap_intervals(y4, p4, groups=np.repeat(np.arange(len(y)), copies))
    width = lambda iv: iv["balanced_accuracy"][1] - iv["balanced_accuracy"][0]
    assert width(as_lesions) > 1.6 * width(as_images)
    assert width(as_lesions) == pytest.approx(width(bootstrap_intervals(y, p)), rel=0.25)


def test_lesion_groups_join_images_of_a_lesion_and_keep_unknown_images_apart():
    import pandas as pd

    table = pd.read_csv(LESIONS_FILE)
    shared = table[table.duplicated("lesion_id", keep=False)].sort_values("lesion_id").head(2)["image_id"].tolist()
    lone = table[~table.duplicated("lesion_id", keep=False)]["image_id"].iloc[0]
    groups = lesion_groups(shared + [lone, "ISIC_unknown_1", "ISIC_unknown_2"])
    assert groups[0] == groups[1] and len(set(groups[1:])) == 4


def test_lesion_groups_follow_a_rewritten_lesions_file(tmp_path):
    path = tmp_path / "lesions.csv"
    path.write_text("image_id,lesion_id\na,L1\nb,L1\n")
    assert lesion_groups(["a", "b"], path).tolist() == [0, 0]
    path.write_text("image_id,lesion_id\na,L1\nb,L2\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later version of the file
    assert lesion_groups(["a", "b"], path).tolist() == [0, 1]
