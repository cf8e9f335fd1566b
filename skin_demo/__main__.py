"""Command line: python -m skin_demo {train,evaluate,predict,explain,push,models,...} ... (see --help of each)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _train(args) -> None:
    from .train import TrainConfig, train

    config = TrainConfig(
        backbone=args.backbone, out=args.out, img_size=tuple(args.img_size) if args.img_size else None,
        head_epochs=args.head_epochs, epochs=args.epochs, batch_size=args.batch_size, balance=args.balance,
        optimizer=args.optimizer, head_lr=args.head_lr, lr=args.lr, unfreeze=args.unfreeze,
        from_scratch=args.from_scratch, init_from=args.init_from, strategy=args.strategy, seed=args.seed, data_dir=args.data,
        limit=args.limit, patience=args.patience, label_smoothing=args.label_smoothing, dropout=args.dropout)
    train(config)


def _evaluate(args) -> None:
    from .evaluate import evaluate_images, fmt, save_plots
    from .predict import Classifier

    classifier = Classifier.from_folder(args.model)
    result, y_true, probs = evaluate_images(classifier, args.images, args.metadata)
    if args.out:
        save_plots(y_true, probs, args.out, title=classifier.name)
    skipped = result["skipped"]
    print(f"{classifier.name}: n={result['n']} accuracy={fmt(result['accuracy'])} "
          f"balanced_accuracy={fmt(result['balanced_accuracy'])} macro_auc={fmt(result['macro_auc'])} "
          f"ece={fmt(result['ece'])}; skipped: {skipped['unknown_class']} unknown class, "
          f"{len(skipped['missing_image'])} missing, {len(skipped['unreadable_image'])} unreadable", file=sys.stderr)
    if args.json:
        print(json.dumps(result))


def _predict(args) -> int:
    """Results for every readable image; an unreadable one gets its own error line and exit code 2 at the end."""
    from .classes import display_name
    from .images import ImageError
    from .predict import Classifier

    classifier = Classifier.from_folder(args.model)
    status = 0
    for image in args.images:
        try:
            probs = classifier.predict(image)
        except ImageError as exc:
            print(f"error: {image}: {exc}", file=sys.stderr)
            status = 2
            continue
        if args.json:
            print(json.dumps({"image": image, "model": classifier.name, "probabilities": probs}))
        else:
            print(image)
            for code, p in probs.items():
                print(f"  {p:7.2%}  {display_name(code)}")
    return status


def _explain(args) -> None:
    """The app's Explain and Compare: probabilities and an overlay PNG per model for one image."""
    from PIL import Image

    from .registry import ModelStore
    from .service import SkinDemo

    demo = SkinDemo(ModelStore(args.registry, lazy=True))
    models = args.model or [next(iter(demo.store.entries))]
    for name in models:  # load only these (the store is lazy), so only they are converted to onnxruntime;
        demo.store.get(name)  # an unavailable one raises ModelUnavailable -> one error line
    if args.method == "lime":
        demo.accelerate()
    probs, results = demo.compare(args.image, models, num_features=args.features, max_samples=args.max_samples,
                                  method=args.method, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    for name, result in results.items():
        path = out / f"{Path(args.image).stem}_{name}_{args.method}.png"
        Image.fromarray(result.overlay).save(path)
        report.append({"model": name, "probabilities": probs[name], "explained": result.label,
                       "weights": result.weights, "samples": result.samples, "seconds": result.seconds,
                       "overlay": str(path)})
        print(f"{name}: {result.summary()} -> {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))


def _push(args) -> None:
    from .registry import HubError, push

    try:
        sha = push(args.model, args.repo, revision=args.revision, private=args.private)
    except HubError as exc:
        raise UserError(str(exc)) from exc
    print(f"pushed {args.model} to {args.repo}; pin it in a registry entry with \"revision\": \"{sha}\"",
          file=sys.stderr)
    print(sha)


def _models(args) -> None:
    from .registry import ModelStore

    store = ModelStore(args.registry)
    for name, entry in store.entries.items():
        if name in store.available:
            height, width = store.available[name].input_size
            print(f"available    {name:<20} {entry.display_name} [{entry.location}, {height}x{width}]")
        else:
            print(f"unavailable  {name:<20} {entry.display_name} [{entry.location}]: {store.unavailable[name]}")


def _benchmark(args) -> None:
    from .benchmark import benchmark_rows, composite_rows, render_table, write_into_readme

    rows = benchmark_rows(args.weights) + composite_rows(args.registry)
    if not rows:
        raise UserError(f"No model folders under {args.weights}.")
    table = render_table(rows)
    print(table)
    if args.readme:
        write_into_readme(table, args.readme)
        print(f"written into {args.readme}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))


def _benchmark_explain(args) -> None:
    from .explain_benchmark import benchmark

    served = None
    if args.compare_served:
        from .registry import ModelStore

        served = ModelStore(args.registry).available
    report = benchmark(args.model, n_images=args.images, compare_dirs=args.compare or (), compare_models=served)
    if args.json:
        print(json.dumps(report))
    else:
        auc = report["auc"]
        print(f"{report['model']}: ours {report['seconds']:.2f}s on {report['runtime']} "
              f"({report['seconds_keras_runtime']:.2f}s on keras, {report['samples']:.0f} samples) vs lime "
              f"{report['lime_seconds']:.2f}s = {report['speedup']:.1f}x; agreement {report['agreement']:.2f}, "
              f"stability {report['stability']:.2f}; deletion AUC lime {auc['lime']['deletion']:.3f} "
              f"gradcam {auc['gradcam']['deletion']:.3f} random {auc['random']['deletion']:.3f}")


def _calibrate(args) -> None:
    from .calibration import calibrate

    info = calibrate(args.model)
    for split in ("val", "test"):
        c = info["metrics"][f"{split}_calibrated"]
        print(f"{split}: ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> "
              f"{c['nll_after']:.4f} (n={c['n']})")
    print(f"temperature {info['temperature']} written to {args.model}/skin_demo.json")


def _ood_fit(args) -> None:
    from .ood import fit_ood

    record = fit_ood(args.model)
    print(json.dumps(record, indent=2))


def _export(args) -> None:
    from .export import compare_with_keras, export

    path = export(args.model, args.format, quantization=args.quantization, out=args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)", file=sys.stderr)
    if args.evaluate:
        print(json.dumps(compare_with_keras(args.model, path, limit=args.limit), indent=2))


def _eda(args) -> None:
    from .eda import write_eda_plots

    for path in write_eda_plots(args.out, args.data):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    from .backbones import BACKBONES

    parser = argparse.ArgumentParser(prog="python -m skin_demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="two-phase transfer learning on HAM10000")
    p.add_argument("--backbone", required=True, choices=sorted(BACKBONES))
    p.add_argument("--out", required=True, help="model folder to write, e.g. weights/mobilenet_v2")
    p.add_argument("--img-size", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--head-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs (all epochs with --from-scratch)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--balance", choices=["weights", "oversample", "cap"], default="weights")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=1e-4, help="peak fine-tuning learning rate")
    p.add_argument("--unfreeze", type=float, default=1.0, help="fraction of backbone layers to fine-tune")
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--from-scratch", action="store_true", help="random initial weights, one phase")
    p.add_argument("--init-from", metavar="FOLDER", help="continue training from a model folder's weights "
                   "(same backbone and input size; use --head-epochs 0)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="HAM10000 folder (default $SKIN_DEMO_DATA or ../shared/data/ham10000)")
    p.add_argument("--limit", type=int, help="use at most N images per class and split (smoke tests)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a model folder on labelled images")
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, help="folder of images named <image_id>.<ext>")
    p.add_argument("--metadata", required=True, help="CSV with image_id and dx columns")
    p.add_argument("--out", help="folder for confusion matrix and ROC plots")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="class probabilities for image files")
    p.add_argument("--model", required=True)
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_predict)

    p = sub.add_parser("explain", help="LIME or Grad-CAM overlays of one image for one or more registry models")
    p.add_argument("image")
    p.add_argument("--model", action="append", help="registry model name; repeat to compare (default: the first)")
    p.add_argument("--method", choices=["lime", "gradcam"], default="lime")
    p.add_argument("--features", type=int, default=5, help="superpixels to highlight")
    p.add_argument("--max-samples", type=int, default=1000, help="LIME's cap on perturbed samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="folder for the overlay PNGs")
    p.add_argument("--registry", help="registry JSON (default $SKIN_DEMO_REGISTRY, else the bundled one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_explain)

    p = sub.add_parser("benchmark", help="size, speed and test metrics of every model under weights/")
    p.add_argument("--weights", default="weights")
    p.add_argument("--registry", help="registry whose TTA/ensemble entries are scored too (default: bundled)")
    p.add_argument("--readme", help="write the table into this README between the benchmark markers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("benchmark-explain", help="fast LIME vs lime's reference path on real test images")
    p.add_argument("--model", required=True, help="model folder, e.g. weights/mobilenet_v2")
    p.add_argument("--images", type=int, default=5, help="number of test-split images")
    compared = p.add_mutually_exclusive_group()
    compared.add_argument("--compare", nargs="+", metavar="MODEL", help="more model folders for the compare-mode timing")
    compared.add_argument("--compare-served", action="store_true", help="time compare mode with every model the "
                          "registry serves (TTA and ensembles included)")
    p.add_argument("--registry", help="with --compare-served: registry JSON (default: the bundled one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_benchmark_explain)

    p = sub.add_parser("eda", help="plots of the HAM10000 metadata and the split")
    p.add_argument("--out", default="docs/eda")
    p.add_argument("--data", help="HAM10000 folder")
    p.set_defaults(func=_eda)

    p = sub.add_parser("push", help="publish a model folder to the Hugging Face Hub; prints the commit sha to pin")
    p.add_argument("--model", required=True, help="model folder, e.g. weights/mobilenet_v2")
    p.add_argument("--repo", required=True, help="Hub repo owner/name (created if missing; token from HF_TOKEN "
                   "or `hf auth login`)")
    p.add_argument("--revision", help="branch to commit to (default main)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func=_push)

    p = sub.add_parser("calibrate", help="fit temperature scaling on the validation split; writes skin_demo.json, "
                       "the reliability diagram and the model card")
    p.add_argument("--model", required=True, help="model folder, e.g. weights/mobilenet_v2")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("ood-fit", help="fit the out-of-distribution warning (training features, validation "
                       "threshold) and score it on test lesions vs non-lesion images")
    p.add_argument("--model", required=True, help="model folder, e.g. weights/mobilenet_v2")
    p.set_defaults(func=_ood_fit)

    p = sub.add_parser("export", help="export a model folder to TFLite (float or int8) or ONNX")
    p.add_argument("--model", required=True, help="model folder, e.g. weights/mobilenet_v2")
    p.add_argument("--format", required=True, choices=["tflite", "onnx"])
    quantization = p.add_mutually_exclusive_group()
    quantization.add_argument("--int8", dest="quantization", action="store_const", const="int8",
                              help="full integer quantisation, ranges from training-split images (TFLite only)")
    quantization.add_argument("--int8-weights", dest="quantization", action="store_const", const="int8-weights",
                              help="int8 weights, float activations: as small, more accurate (TFLite only)")
    p.add_argument("--out", help="file to write (default: inside the model folder)")
    p.add_argument("--evaluate", action="store_true", help="compare size, latency and test balanced accuracy "
                   "with the Keras model")
    p.add_argument("--limit", type=int, help="with --evaluate: score this many random test images only")
    p.set_defaults(func=_export)

    p = sub.add_parser("models", help="list the registry's models, and why any is unavailable")
    p.add_argument("--registry", help="registry JSON (default $SKIN_DEMO_REGISTRY, else the bundled one)")
    p.set_defaults(func=_models)
    return parser


def main(argv=None) -> int:
    from .evaluate import EvaluationError
    from .images import ImageError
    from .modeling import ModelFolderError, WeightsUnavailable

    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (UserError, ImageError, EvaluationError, ModelFolderError, WeightsUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
