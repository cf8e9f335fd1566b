"""Command line: python -m skin_demo {train,evaluate,predict,explain,push,models,...} ... (see --help of each).

Each command imports its own part of the package when it runs: TensorFlow, Gradio and lime take
seconds to import, and `--help` or a wrong argument should answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .images import ImageError  # noqa: E402  (light: Pillow and numpy only)
from .model_folder import INFO_FILE, ModelFolderError  # noqa: E402


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that states a wrong argument in one line (exit code 2) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"error: {message.rstrip('.')} (see {self.prog} --help).\n")


def _existing(kind: str):
    """argparse type: a path that must exist as a 'file' or a 'folder'."""
    def check(value: str) -> str:
        path = Path(value)
        if (path.is_file() if kind == "file" else path.is_dir()):
            return value
        if path.exists():
            other = "folder" if kind == "file" else "file"
            raise argparse.ArgumentTypeError(f"{value} is a {other}, not a {kind}")
        raise argparse.ArgumentTypeError(f"{value} does not exist")
    return check


def _writable(kind: str):
    """argparse type: where to write a 'folder' (made if missing) or a 'file' (in an existing folder), or
    'file-or-folder' (a file, or an existing folder to write into)."""
    def check(value: str) -> str:
        path = Path(value)
        if kind == "folder" and path.exists() and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{value} is a file; give a folder to write into")
        if kind == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{value} is a folder; give a file name")
        if kind != "folder" and not path.is_dir() and not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write {value}: the folder {path.parent} does not exist")
        return value
    return check


MODEL_FOLDER, FOLDER, FILE = _existing("folder"), _existing("folder"), _existing("file")


def _train(args) -> None:
    from .training.factory import WeightsUnavailable
    from .training.run_folder import RunFolder
    from .training.train import TrainConfig, train

    if args.resume:
        config = TrainConfig.from_dict(RunFolder(args.resume).read_config())
        config.run_dir = args.resume
    elif not (args.backbone and args.out):
        raise UserError("train needs --backbone and --out (or --resume RUN_DIR to continue a run).")
    else:
        augmentation = _augmentation(args.augment, args.no_augment)
        config = TrainConfig(
            backbone=args.backbone, out=args.out, img_size=tuple(args.img_size) if args.img_size else None,
            head_epochs=args.head_epochs, epochs=args.epochs, batch_size=args.batch_size, balance=args.balance,
            optimizer=args.optimizer, head_lr=args.head_lr, lr=args.lr, warmup_epochs=args.warmup_epochs,
            unfreeze=args.unfreeze, label_smoothing=args.label_smoothing, dropout=args.dropout,
            patience=args.patience, ema=args.ema, average_from=args.average_from, augmentation=augmentation,
            mixup=args.mixup, cutmix=args.cutmix, mix_probability=args.mix_probability,
            extra_data=args.extra_data, extra_per_class=args.extra_per_class,
            distill_from=args.distill_from, distill_weight=args.distill_weight,
            distill_balanced=args.distill_balanced,
            logit_adjustment=args.logit_adjustment, score_test=args.score_test,
            from_scratch=args.from_scratch, init_from=args.init_from, strategy=args.strategy, seed=args.seed,
            data_dir=args.data, limit=args.limit, run_dir=args.run_dir)
    try:
        train(config, resume=bool(args.resume))
    except WeightsUnavailable as exc:
        raise UserError(str(exc)) from None


def _augmentation(settings: list[str], off: bool) -> dict:
    """--augment name=value ... over the default Augmentation (or over none with --no-augment)."""
    from .training.augment import NONE, Augmentation

    values = (NONE if off else Augmentation()).to_dict()
    for setting in settings or []:
        name, _, text = setting.partition("=")
        if name not in values or not text:
            raise UserError(f"--augment takes name=value with a name among {', '.join(values)}; got {setting!r}.")
        try:
            values[name] = ({"true": True, "false": False}[text.lower()] if text.lower() in ("true", "false")
                            else [float(v) for v in text.split(",")] if "," in text else float(text))
        except ValueError:
            raise UserError(f"--augment {setting}: {text!r} is not a number, true/false or a low,high pair.") from None
    return Augmentation.from_dict(values).to_dict()


def _evaluate(args) -> None:
    from .metrics import fmt
    from .serving.classifier import Classifier
    from .training.evaluate import evaluate_images, save_plots

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
    from .serving.classifier import Classifier

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
    """The app's Explain and Compare: probabilities, one class explained by every model (`--target`, else the
    first model's top class), an overlay PNG per model on the image at its own size, and (--json) the weight
    and standard error of every region by id, with how far the models' numbered regions agree."""
    from PIL import Image

    from .serving.service import DEFAULT_DETAIL, SkinDemo, check_detail, resolve_target
    from .serving.store import ModelStore

    detail = DEFAULT_DETAIL if args.detail is None else check_detail(args.detail)  # bad settings: one line, at once
    resolve_target(args.target)
    demo = SkinDemo(ModelStore(args.registry, lazy=True))
    if not (args.model or demo.store.entries):
        raise UserError("The registry lists no model; give one with --model NAME and --registry FILE.")
    models = args.model or [next(iter(demo.store.entries))]
    for name in models:  # load only these (the store is lazy), so only they are converted to onnxruntime;
        demo.store.get(name)  # an unavailable one raises ModelUnavailable -> one error line
    if args.method == "lime":
        demo.accelerate()
    comparison = demo.compare(args.image, models, num_features=args.features, max_samples=args.max_samples,
                              method=args.method, seed=args.seed, target=args.target, detail=detail)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    for name, result in comparison.results.items():
        path = out / f"{Path(args.image).stem}_{name}_{args.method}.png"
        Image.fromarray(result.overlay).save(path)
        report.append({"model": name, "probabilities": comparison.probabilities[name], **result.to_dict(),
                       "agreement": comparison.agreement.get(name, {}), "overlay": str(path)})
        print(f"{name}: {result.summary()} -> {path}", file=sys.stderr)
    why = "as asked" if comparison.chosen else f"the top class of {comparison.first}"
    print(f"explained class: {comparison.label} ({why})", file=sys.stderr)
    if len(comparison.agreement) > 1:
        print(f"agreement of the top {comparison.agreement_k} regions (same regions, same sign):", file=sys.stderr)
        for name, row in comparison.agreement.items():
            print(f"  {name}: " + ", ".join(f"{other} {value:.2f}" for other, value in row.items() if other != name),
                  file=sys.stderr)
    if args.json:
        print(json.dumps(report))


def _push(args) -> None:
    from .training.publish import HubError, push

    try:
        sha = push(args.model, args.repo, revision=args.revision, private=args.private)
    except HubError as exc:
        raise UserError(str(exc)) from exc
    print(f"pushed {args.model} to {args.repo}; pin it in a registry entry with \"revision\": \"{sha}\"",
          file=sys.stderr)
    print(sha)


def _models(args) -> None:
    from .serving.store import ModelStore

    store = ModelStore(args.registry)
    for name, entry in store.entries.items():
        if name in store.available:
            height, width = store.available[name].input_size
            print(f"available    {name:<20} {entry.display_name} [{entry.location}, {height}x{width}]")
        else:
            print(f"unavailable  {name:<20} {entry.display_name} [{entry.location}]: {store.unavailable[name]}")
    if args.split:
        _rank(store, args.split)


def _rank(store, split: str) -> None:
    """Every available entry scored as served on `split`, best first by the selection rule."""
    from .metrics import LEVEL, TIE, fmt, fmt_interval, rank_by_validation
    from .training.evaluate import evaluate_split

    scores = {name: evaluate_split(classifier, split) for name, classifier in store.available.items()}
    print(f"\n{split} split, as served, best first (highest macro AUC within {TIE} of the best balanced accuracy; "
          f"{LEVEL:.0%} intervals from bootstrap resamples of the split's lesions):")
    print("| entry | balanced accuracy | interval | macro AUC | interval | accuracy | nv recall | mel recall | ECE |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name in rank_by_validation(scores):
        s = scores[name]
        interval = {key: fmt_interval(s["intervals"].get(key), "-") for key in ("balanced_accuracy", "macro_auc")}
        print(f"| {name} | {s['balanced_accuracy']:.3f} | {interval['balanced_accuracy']} | {fmt(s['macro_auc'], '.3f')} "
              f"| {interval['macro_auc']} | {s['accuracy']:.3f} | {s['per_class']['nv']['recall']:.2f} | "
              f"{s['per_class']['mel']['recall']:.2f} | {s['ece']:.3f} |")


def _benchmark(args) -> None:
    from .bench.models import benchmark_rows, composite_rows, render_table, write_into_readme

    rows = benchmark_rows(args.weights)
    if not rows:
        raise UserError(f"No model folders under {args.weights}.")
    rows += composite_rows(args.registry)
    table = render_table(rows)
    print(table)
    if args.readme:
        write_into_readme(table, args.readme)
        print(f"written into {args.readme}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows))


def _benchmark_explain(args) -> None:
    from .bench.explanations import benchmark
    from .serving.service import DEFAULT_DETAIL, check_detail
    from .serving.store import ModelStore

    detail = DEFAULT_DETAIL if args.detail is None else check_detail(args.detail)  # bad settings: one line, at once
    served = None
    if args.compare_served:
        served = ModelStore(args.registry).available
    load = None
    if args.entry:  # a fresh copy per call; an unknown or unavailable entry raises at the first, before any work
        load = lambda: ModelStore(args.registry, lazy=True).get(args.entry)  # noqa: E731
    report = benchmark(args.model, n_images=args.images, compare_dirs=args.compare or (), compare_models=served,
                       detail=detail, load=load)
    if args.json:
        print(json.dumps(report))
    else:
        auc = report["auc"]
        print(f"{report['model']}: ours {report['seconds']:.2f}s on {report['runtime']} "
              f"({report['seconds_keras_runtime']:.2f}s on keras, {report['samples']:.0f} samples) vs lime "
              f"{report['lime_seconds']:.2f}s = {report['speedup']:.1f}x; agreement {report['agreement']:.2f}, "
              f"stability {report['stability']:.2f}{_plus_minus(report['stability_se'])}; "
              f"deletion AUC lime {auc['lime']['deletion']:.3f} "
              f"gradcam {auc['gradcam']['deletion']:.3f} random {auc['random']['deletion']:.3f}")
        kept = {flag: report[f"kept_when_{flag}"] for flag in ("clear", "tied")}
        print("top-5 regions kept by the other seeds: "
              + "; ".join(f"{flag} {'-' if share is None else f'{share:.1%}'} of {report[f'top_regions_{flag}']}"
                          for flag, share in kept.items()))


def _plus_minus(standard_error) -> str:
    """' ± SE over images', or nothing when there was one image."""
    return "" if standard_error is None else f" ± {standard_error:.2f} (standard error over images)"


def _calibrate(args) -> None:
    from .training.calibrate import calibrate, calibrate_ensemble, class_prior
    from .training.data import labelled_split

    if args.entry:
        if args.logit_adjustment or args.score_test:
            raise UserError("--logit-adjustment and --score-test are for a model folder; an ensemble's entry gets "
                            "only a temperature.")
        fit = calibrate_ensemble(args.entry, args.registry)
        print(f"val: ECE {fit['ece_before']:.4f} -> {fit['ece_after']:.4f}, NLL {fit['nll_before']:.4f} -> "
              f"{fit['nll_after']:.4f} (n={fit['n']}, from the members' stored validation predictions)")
        print(f"temperature {fit['temperature']} written to the registry entry {args.entry}")
        return
    if args.registry:
        raise UserError("--registry goes with --entry; a model folder keeps its temperature in its own skin_demo.json.")
    prior = class_prior(labelled_split("train")[1]) if args.logit_adjustment else None
    info = calibrate(args.model, prior=prior, score_test=args.score_test)
    for split in [name for name in ("val", "test") if f"{name}_calibrated" in info.metrics]:
        c = info.metrics[f"{split}_calibrated"]
        print(f"{split}: ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> "
              f"{c['nll_after']:.4f} (n={c['n']})")
    print(f"temperature {info.temperature} written to {args.model}/{INFO_FILE}")
    if "test" in info.metrics:  # what the folder serves changed: the Leaderboard's stored predictions too
        from .model_folder import PREDICTIONS_FILE, StoredPredictions
        from .training.evaluate import save_plots, save_split_predictions

        save_split_predictions(args.model)
        stored = StoredPredictions.read(Path(args.model) / PREDICTIONS_FILE)  # the card's plots, of the test split
        save_plots(stored.labels, stored.probabilities, Path(args.model), title=f"{info.name} (test)")


def _ood_fit(args) -> None:
    from .training.fit_ood import fit_ood

    record = fit_ood(args.model)
    print(json.dumps(record, indent=2))


def _export(args) -> None:
    from .training.export import compare_with_keras, export

    path = export(args.model, args.format, quantization=args.quantization, out=args.out)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)", file=sys.stderr)
    if args.evaluate:
        print(json.dumps(compare_with_keras(args.model, path, limit=args.limit), indent=2))


def _store_predictions(args) -> None:
    """The folder's served probabilities on a split (and with TTA, when a registry entry serves it so), kept in
    the folder: test for the Leaderboard, with a check that they reproduce the model card; val for checking
    which entry is best on validation without running the models."""
    from .metrics import compute_metrics, fmt
    from .model_folder import ModelInfo, StoredPredictions
    from .serving.catalog import load_registry
    from .serving.store import entry_folder
    from .training.card import write_model_card
    from .training.evaluate import save_split_predictions

    folder = Path(args.model).resolve()
    tta = args.tta
    for entry in load_registry(args.registry):
        if entry.tta and not entry.is_hub:
            try:
                tta = tta or entry_folder(entry).resolve() == folder
            except ModelFolderError:  # another entry's folder is missing: not this one
                pass
    info = ModelInfo.read(folder)
    card = info.test_metrics
    served_ece = info.served_test_ece
    saved = save_split_predictions(folder, split=args.split, tta=tta, directory=args.data)
    if args.split == "test":
        write_model_card(folder)  # its test numbers get their intervals from what is now stored
    for path in saved:
        stored = StoredPredictions.read(path)
        scores = compute_metrics(stored.labels, stored.probabilities)
        versus = (f" (model card: {fmt(card.get('balanced_accuracy'))}, {fmt(served_ece)} as served)"
                  if card and stored.served_as == "model" and stored.split == "test" else "")
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB, {len(stored.labels)} {stored.split} images, "
              f"{stored.served_as}): balanced accuracy {fmt(scores['balanced_accuracy'])}, "
              f"ECE {fmt(scores['ece'])}{versus}", file=sys.stderr)


def _eda(args) -> None:
    from .training.eda import write_eda_plots

    for path in write_eda_plots(args.out, args.data):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    from .training.backbones import BACKBONES

    parser = _Parser(prog="python -m skin_demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="two-phase transfer learning on HAM10000, checkpointed every epoch")
    p.add_argument("--backbone", choices=sorted(BACKBONES))
    p.add_argument("--out", type=_writable("folder"), help="model folder to write, e.g. weights/mobilenet_v2")
    p.add_argument("--resume", metavar="RUN_DIR", type=FOLDER, help="continue a run that was stopped (its folder "
                   "holds the config; every other option is ignored)")
    p.add_argument("--run-dir", type=_writable("folder"), help="checkpoint folder (default: a new folder under "
                   "$SKIN_DEMO_RUNS, else runs/ beside the repository)")
    p.add_argument("--img-size", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--head-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=12, help="fine-tuning epochs (all epochs with --from-scratch)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--balance", default="weights", help="oversample (balanced batches), weights (class weights in "
                   "the loss) or cap (450 per class)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=1e-4, help="peak fine-tuning learning rate")
    p.add_argument("--warmup-epochs", type=float, default=0.5, help="linear warm-up before the cosine decay")
    p.add_argument("--ema", type=float, default=0.0, help="momentum of a moving average of the weights during "
                   "fine-tuning, scored each epoch and kept instead of them (e.g. 0.999); 0 = off")
    p.add_argument("--average-from", type=int, default=0, metavar="EPOCH", help="average the weights of every "
                   "fine-tuning epoch from this one on (SWA); the average is scored each epoch and kept; 0 = off")
    p.add_argument("--augment", nargs="+", metavar="NAME=VALUE", help="augmentation settings over the default, "
                   "e.g. vignette=0.3 cutout=0.5 crop_scale=0.35,1")
    p.add_argument("--no-augment", action="store_true", help="start from no augmentation at all")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mix batches with mixup, "
                   "weight ~ Beta(ALPHA, ALPHA); 0 = off")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA", help="mix batches with CutMix "
                   "(with --mixup too: one or the other at even odds); 0 = off")
    p.add_argument("--mix-probability", type=float, default=0.5, help="share of batches mixed (default 0.5)")
    p.add_argument("--extra-data", metavar="bcn|FOLDER", help="add BCN_20000 images (training only)")
    p.add_argument("--extra-per-class", type=int, help="at most this many extra images per class")
    p.add_argument("--distill-from", metavar="ENTRY|FOLDER", help="also train toward the served probabilities "
                   "of a registry entry (e.g. ensemble) or model folder on the training images (distillation)")
    p.add_argument("--distill-weight", type=float, default=0.5, help="the teacher's share of each target (default "
                   "0.5; the label has the rest)")
    p.add_argument("--distill-natural-prior", dest="distill_balanced", action="store_false", help="keep the "
                   "teacher's probabilities at the training set's class frequencies (default: moved to equal priors, "
                   "as balanced batches see the classes)")
    p.add_argument("--logit-adjustment", action="store_true", help="choose tau in log p + tau log prior on "
                   "validation (a decision rule stored with the model)")
    p.add_argument("--no-test", dest="score_test", action="store_false", help="do not score the test split "
                   "(ablation runs: choices are made on validation, the test split is scored once at the end)")
    p.add_argument("--unfreeze", type=float, default=1.0, help="fraction of backbone layers to fine-tune")
    p.add_argument("--label-smoothing", type=float, default=0.05)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--from-scratch", action="store_true", help="random initial weights, one phase")
    p.add_argument("--init-from", metavar="FOLDER", type=MODEL_FOLDER, help="continue training from a model folder's weights "
                   "(same backbone and input size; use --head-epochs 0)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=FOLDER, help="HAM10000 folder (default $SKIN_DEMO_DATA or ../shared/data/ham10000)")
    p.add_argument("--limit", type=int, help="use at most N images per class and split (smoke tests)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a model folder on labelled images")
    p.add_argument("--model", required=True, type=MODEL_FOLDER)
    p.add_argument("--images", required=True, type=FOLDER, help="folder of images named <image_id>.<ext>")
    p.add_argument("--metadata", required=True, type=FILE, help="CSV with image_id and dx columns")
    p.add_argument("--out", type=_writable("folder"), help="folder for confusion matrix and ROC plots")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="class probabilities for image files")
    p.add_argument("--model", required=True, type=MODEL_FOLDER)
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_predict)

    p = sub.add_parser("explain", help="LIME or Grad-CAM overlays of one image for one or more registry models, "
                       "all explaining one class")
    p.add_argument("image", type=FILE)
    p.add_argument("--model", action="append", help="registry model name; repeat to compare (default: the first)")
    p.add_argument("--method", choices=["lime", "gradcam"], default="lime")
    p.add_argument("--target", metavar="CLASS", help="class to explain for every model: a code (mel, nv, ...) or "
                   "its name (default: the first model's top class)")
    p.add_argument("--detail", type=int, metavar="N", help="regions in the LIME map, 5-50 (default 25): more is "
                   "finer and slower")
    p.add_argument("--features", type=int, default=5, help="regions to number on the picture (and to compare "
                   "between models)")
    p.add_argument("--max-samples", type=int, default=1000,
                   help="LIME's cap on perturbed samples (the default design stops far below it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", type=_writable("folder"), help="folder for the overlay PNGs")
    p.add_argument("--registry", type=FILE, help="registry JSON (default $SKIN_DEMO_REGISTRY, else the bundled one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_explain)

    p = sub.add_parser("benchmark", help="size, speed and test metrics of every model under weights/")
    p.add_argument("--weights", default="weights", type=FOLDER)
    p.add_argument("--registry", type=FILE, help="registry whose TTA/ensemble entries are scored too (default: bundled)")
    p.add_argument("--readme", type=_writable("file"), help="write the table into this README between the benchmark markers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("benchmark-explain", help="fast LIME vs lime's reference path on real test images")
    explained = p.add_mutually_exclusive_group(required=True)
    explained.add_argument("--model", type=MODEL_FOLDER, help="model folder, e.g. weights/mobilenet_v2")
    explained.add_argument("--entry", metavar="NAME", help="a registry entry (TTA and ensembles too), e.g. the "
                           "default one")
    p.add_argument("--images", type=int, default=5, help="number of test-split images")
    p.add_argument("--detail", type=int, metavar="N", help="regions in the LIME map, 5-50 (default: the app's, 25)")
    compared = p.add_mutually_exclusive_group()
    compared.add_argument("--compare", nargs="+", metavar="MODEL", type=MODEL_FOLDER, help="more model folders for the compare-mode timing")
    compared.add_argument("--compare-served", action="store_true", help="time compare mode with every model the "
                          "registry serves (TTA and ensembles included)")
    p.add_argument("--registry", type=FILE, help="with --entry or --compare-served: registry JSON (default: the "
                   "bundled one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_benchmark_explain)

    p = sub.add_parser("eda", help="plots of the HAM10000 metadata and the split")
    p.add_argument("--out", default="docs/eda", type=_writable("folder"))
    p.add_argument("--data", type=FOLDER, help="HAM10000 folder")
    p.set_defaults(func=_eda)

    p = sub.add_parser("push", help="publish a model folder to the Hugging Face Hub; prints the commit sha to pin")
    p.add_argument("--model", required=True, type=MODEL_FOLDER, help="model folder, e.g. weights/mobilenet_v2")
    p.add_argument("--repo", required=True, help="Hub repo owner/name (created if missing; token from HF_TOKEN "
                   "or `hf auth login`)")
    p.add_argument("--revision", help="branch to commit to (default main)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func=_push)

    p = sub.add_parser("calibrate", help="fit temperature scaling on the validation split; writes skin_demo.json, "
                       "the reliability diagram and the model card (an ensemble: its registry entry)")
    calibrated = p.add_mutually_exclusive_group(required=True)
    calibrated.add_argument("--model", type=MODEL_FOLDER, help="model folder, e.g. weights/mobilenet_v2")
    calibrated.add_argument("--entry", metavar="NAME", help="an ensemble of the registry, e.g. ensemble: its own "
                            "temperature, from its members' stored validation predictions")
    p.add_argument("--registry", type=FILE, help="with --entry: registry JSON to update (default $SKIN_DEMO_REGISTRY, "
                   "else the bundled one)")
    p.add_argument("--logit-adjustment", action="store_true", help="first choose tau in log p + tau log prior "
                   "on validation")
    p.add_argument("--score-test", action="store_true", help="also score the test split of a run trained with "
                   "--no-test (once, after the choices made on validation)")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("ood-fit", help="fit the out-of-distribution warning (training features, validation "
                       "threshold) and score it on test lesions vs non-lesion images")
    p.add_argument("--model", required=True, type=MODEL_FOLDER, help="model folder, e.g. weights/mobilenet_v2")
    p.set_defaults(func=_ood_fit)

    p = sub.add_parser("export", help="export a model folder to TFLite (float or int8) or ONNX")
    p.add_argument("--model", required=True, type=MODEL_FOLDER, help="model folder, e.g. weights/mobilenet_v2")
    p.add_argument("--format", required=True, choices=["tflite", "onnx"])
    quantization = p.add_mutually_exclusive_group()
    quantization.add_argument("--int8", dest="quantization", action="store_const", const="int8",
                              help="full integer quantisation, ranges from training-split images (TFLite only)")
    quantization.add_argument("--int8-weights", dest="quantization", action="store_const", const="int8-weights",
                              help="int8 weights, float activations: as small, more accurate (TFLite only)")
    p.add_argument("--out", type=_writable("file-or-folder"), help="file to write, or a folder to write it into "
                   "(default: the model folder)")
    p.add_argument("--evaluate", action="store_true", help="compare size, latency and test balanced accuracy "
                   "with the Keras model")
    p.add_argument("--limit", type=int, help="with --evaluate: score this many random test images only")
    p.set_defaults(func=_export)

    p = sub.add_parser("store-predictions", help="keep a model folder's served test-split probabilities in it "
                       "(the app's Leaderboard draws ROC curves and reliability diagrams from them)")
    p.add_argument("--model", required=True, type=MODEL_FOLDER, help="model folder, e.g. weights/mobilenet_v2")
    p.add_argument("--registry", type=FILE, help="registry JSON whose \"tta\": true entries on this folder get "
                   "TTA predictions too (default $SKIN_DEMO_REGISTRY, else the bundled one)")
    p.add_argument("--tta", action="store_true", help="store the TTA predictions even if no registry entry asks")
    p.add_argument("--split", choices=("test", "val"), default="test", help="the internal split (default test, "
                   "the Leaderboard's; val lets a test check the default entry without running the models)")
    p.add_argument("--data", type=FOLDER, help="HAM10000 folder (default $SKIN_DEMO_DATA or ../shared/data/ham10000)")
    p.set_defaults(func=_store_predictions)

    p = sub.add_parser("models", help="list the registry's models, and why any is unavailable")
    p.add_argument("--registry", type=FILE, help="registry JSON (default $SKIN_DEMO_REGISTRY, else the bundled one)")
    p.add_argument("--split", choices=("val", "test"), help="also score every available entry on this internal "
                   "split as served and rank them (choose the default entry with val)")
    p.set_defaults(func=_models)
    return parser


def main(argv=None) -> int:
    """Run one command; a problem the user can fix is one line on stderr and exit code 2, never a traceback."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or an argument argparse refused (already said in one line)
        return exit_.code
    try:
        status = args.func(args)
    except (UserError, ImageError, ModelFolderError, ValueError) as exc:  # ValueError: RegistryError, data errors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that passed the checks but still cannot be read or written
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
