"""User stories for fast LIME explanations and Grad-CAM, on real images and a really trained model."""

import numpy as np
import pytest

from skin_demo.explain import faithfulness, gradcam, lime, overlay
from skin_demo.training import data as dataset
from skin_demo.serving.classifier import Classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tiny_classifier, test_images):
    """Class code -> real test image at the tiny model's input size."""
    return {code: tiny_classifier.prepare(path) for code, path in test_images.items()}


@pytest.fixture(scope="module")
def melanoma(images):
    return images["mel"]


def test_explanation_agrees_with_lime_on_the_same_segmentation(tiny_classifier, images):
    """Averaged over three lesions: lime's own top-5 at 1000 samples moves by about one superpixel per seed.

    At one stage (COARSE_REGIONS): lime's reference samples the whole picture with its own fill, which is
    what a one-stage map does; a coarse-to-fine map samples differently by design (lime.py's docstring)."""
    agreements = []
    for code in ("mel", "nv", "bkl"):
        ours = lime.explain(tiny_classifier, images[code], seed=0, detail=lime.COARSE_REGIONS)
        reference = faithfulness.lime_reference(tiny_classifier, images[code], ours.segments, ours.label,
                                           batch_size=128)
        agreements.append(faithfulness.agreement(ours, reference))
        assert ours.samples <= 1000
    assert np.mean(agreements) >= 0.6


def test_same_seed_gives_the_same_explanation(tiny_classifier, melanoma):
    first = lime.explain(tiny_classifier, melanoma, seed=3)
    second = lime.explain(tiny_classifier, melanoma, seed=3)
    np.testing.assert_array_equal(first.segments, second.segments)
    np.testing.assert_array_equal(first.masks, second.masks)
    np.testing.assert_array_equal(first.weights, second.weights)


def test_perturbed_images_are_rendered_as_lime_renders_them(tiny_classifier, melanoma):
    from lime.lime_image import LimeImageExplainer

    segments = lime.segment(melanoma)
    lime_explainer = LimeImageExplainer(random_state=0)
    seen, lime_masks = [], []
    lime_data_labels = lime_explainer.data_labels

    def keep_masks(*args, **kwargs):
        masks, labels = lime_data_labels(*args, **kwargs)
        lime_masks.append(masks)
        return masks, labels

    def recording_model(batch):
        seen.append(np.array(batch))
        return tiny_classifier(batch)

    lime_explainer.data_labels = keep_masks
    lime_explainer.explain_instance(melanoma, recording_model, top_labels=1, num_samples=40, batch_size=40,
                                    segmentation_fn=lambda _: np.array(segments))
    ours = lime.render(melanoma, segments, lime_masks[0], lime.hidden_fill(melanoma, segments, "mean"))
    np.testing.assert_allclose(ours, np.concatenate(seen), atol=1e-3)


def test_compare_mode_uses_the_same_segmentation_and_masks(tiny_classifier, second_tiny_model_dir, melanoma):
    second = Classifier.from_folder(second_tiny_model_dir)
    views = lime.compare({"first": tiny_classifier, "second": second}, melanoma, seed=1)
    np.testing.assert_array_equal(views["first"].segments, views["second"].segments)
    np.testing.assert_array_equal(views["first"].masks, views["second"].masks)
    varied = np.isin(views["first"].parents, np.flatnonzero(np.bincount(views["first"].parents) > 1)).sum()
    assert views["first"].samples == lime.default_samples(varied, views["first"].coarse_samples)
    assert not np.allclose(views["first"].probabilities, views["second"].probabilities)


def test_compare_runs_a_network_shared_by_an_ensemble_once_per_batch(tiny_model_dir, second_tiny_model_dir,
                                                                      melanoma):
    """An ensemble compared with its own members reuses their forward passes, and its answer is still their mean."""
    from skin_demo.serving.composite import EnsembleClassifier

    first, second = Classifier.from_folder(tiny_model_dir), Classifier.from_folder(second_tiny_model_dir)
    calls = {"first": 0, "second": 0}
    for name, member in (("first", first), ("second", second)):
        def counting(images, raw=member.raw_probabilities, name=name):
            calls[name] += len(images)
            return raw(images)
        member.raw_probabilities = counting
    views = lime.compare({"first": first, "second": second, "ensemble": EnsembleClassifier([first, second])},
                            melanoma, samples=200)
    assert calls == {"first": 200, "second": 200}
    np.testing.assert_allclose(views["ensemble"].probabilities,
                               (views["first"].probabilities + views["second"].probabilities) / 2, atol=1e-6)


def test_gradcam_map_has_the_image_size_and_is_non_negative(tiny_classifier, melanoma):
    """For the predicted class, as the app explains it (another class may have no positive evidence at all)."""
    predicted = int(tiny_classifier(melanoma[None])[0].argmax())
    heatmap = gradcam.gradcam(tiny_classifier, melanoma, class_index=predicted)
    assert heatmap.shape == melanoma.shape[:2]
    assert heatmap.min() >= 0 and heatmap.max() > 0
    picture = overlay.gradcam_overlay(melanoma, heatmap)
    assert picture.shape == melanoma.shape and picture.dtype == np.uint8


def test_explanations_delete_evidence_faster_than_a_random_ranking(tiny_classifier):
    paths, _ = dataset.labelled_split("test")
    chosen = np.random.default_rng(0).choice(len(paths), 8, replace=False)
    ours, random = [], []
    for index in chosen:
        image = tiny_classifier.prepare(paths[index])
        result = lime.explain(tiny_classifier, image)
        shuffled = np.random.default_rng(int(index)).permutation(result.segments.max() + 1)
        for ranking, scores in ((np.argsort(-result.weights[result.label]), ours), (shuffled, random)):
            scores.append(faithfulness.deletion_insertion_auc(  # regions hidden as the explanation's samples hid them
                tiny_classifier, image, result.segments, ranking, result.label,
                fill_segments=result.fill_segments)["deletion"])
    assert np.mean(ours) < np.mean(random)


def test_cli_compares_two_models_and_writes_their_overlays(registry_file, test_images, tmp_path, capsys):
    import json

    from PIL import Image

    from skin_demo.__main__ import main

    image = test_images["bcc"]
    status = main(["explain", image, "--model", "tiny_a", "--model", "tiny_b", "--registry", str(registry_file),
                   "--out", str(tmp_path), "--target", "nv", "--detail", "30", "--json"])
    assert status == 0
    output = capsys.readouterr()
    report = json.loads(output.out.strip().splitlines()[-1])
    assert [r["model"] for r in report] == ["tiny_a", "tiny_b"]
    assert "explained class: nv (as asked)" in output.err and "agreement of the top 5 regions" in output.err
    for r in report:
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-4 and lime.default_samples(0) <= r["samples"] <= 1000
        assert Image.open(r["overlay"]).size == Image.open(image).size  # drawn on the image, at its size
        assert r["explained"] == "nv" and r["detail"] == 30 and len(r["weights"]) == r["regions"] >= 30
        assert list(r["errors"]) == list(r["weights"]) and len(r["numbered"]) == 5
        assert r["agreement"][r["model"]] == 1.0 and 0 <= r["agreement"]["tiny_b" if r["model"] == "tiny_a"
                                                                         else "tiny_a"] <= 1
    assert main(["explain", str(tmp_path / "missing.jpg"), "--registry", str(registry_file)]) == 2
    assert main(["explain", image, "--model", "gone", "--registry", str(registry_file)]) == 2
    capsys.readouterr()
    for bad, message in ((["--target", "moles"], "Unknown class 'moles'"), (["--detail", "3"], "from 5 to 50, not 3")):
        assert main(["explain", image, "--model", "tiny_a", "--registry", str(registry_file), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_benchmark_reports_lime_and_ours_from_the_same_run(tiny_model_dir, second_tiny_model_dir):
    from skin_demo.bench.explanations import benchmark

    report = benchmark(tiny_model_dir, n_images=1, compare_dirs=[second_tiny_model_dir])
    assert report["runtime"] == "onnxruntime" and report["images"] == 1
    assert report["speedup"] == pytest.approx(report["lime_seconds"] / report["seconds"])
    assert lime.default_samples(0) <= report["samples"] <= 1000
    assert 0 <= report["agreement"] <= 1 and 0 <= report["stability"] <= 1
    assert report["stability_se"] is None, "one image: no spread over images to report"
    assert report["top_regions_clear"] + report["top_regions_tied"] == 5 * 5, "each seed's top 5, flagged or not"
    assert all(share is None or 0 <= share <= 1 for share in (report["kept_when_clear"], report["kept_when_tied"]))
    assert set(report["auc"]) == {"lime", "gradcam", "random"}
    assert report["detail"] == lime.DEFAULT_DETAIL and report["regions"] >= lime.DEFAULT_DETAIL
    assert report["compare"]["models"] == ["tiny_v2", "tiny_v2_b"]
    assert all(lime.default_samples(0) <= n <= 1000 for n in report["compare"]["samples"].values())
