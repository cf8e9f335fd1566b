"""Two-phase transfer learning (frozen backbone, then fine-tuning), resumable, selected on validation.

Every element of the recipe is a field of `TrainConfig`, stored in skin_demo.json and on the model
card: class balance (balanced batches, class weights or a per-class cap), augmentation
(`augment.Augmentation`), an optional second clinic's images (`extra_data`, training only),
warm-up + cosine schedule, label smoothing, an exponential moving average of the weights, and a
post-hoc decision rule chosen on validation (`calibrate`). Each epoch is drawn from (seed, epoch)
alone and checkpointed to a run folder (`run_folder.py`), so a run killed at the end of a session
continues with `python -m skin_demo train --resume RUN_DIR` and ends as an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import keras
import matplotlib
import numpy as np
import tensorflow as tf

from ..classes import CLASSES
from ..metrics import TIE, compute_metrics, fmt
from ..model_folder import WEIGHTS_FILE, ModelInfo
from ..serving.classifier import Classifier
from ..serving.engines import traced_forward
from . import data
from .augment import Augmentation, augment, mix_batch
from .backbones import get_backbone
from .calibrate import calibrate, class_prior
from .distill import cached_teacher_probabilities, soft_targets
from .evaluate import save_plots, save_split_predictions
from .extra_data import describe, load_bcn
from .factory import build_model, last_conv_layer_name, save_model_folder, set_trainable
from .run_folder import RunFolder, assign_values, values_of

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

SELECTION_RULE = (f"the epoch with the highest validation macro AUC among those within {TIE} of the best "
                  f"validation balanced accuracy so far (a gain of more than {TIE} always wins)")


@dataclass
class TrainConfig:
    backbone: str
    out: str
    img_size: tuple[int, int] | None = None
    head_epochs: int = 3
    epochs: int = 12  # fine-tuning epochs (or all epochs when training from scratch)
    batch_size: int = 32
    balance: str = "weights"  # data.BALANCES: oversample (balanced batches), weights (class weights), cap
    optimizer: str = "adam"
    head_lr: float = 1e-3
    lr: float = 1e-4  # fine-tuning peak learning rate (warm-up, then cosine decay to 0 over `epochs`)
    warmup_epochs: float = 0.5
    unfreeze: float = 1.0  # fraction of backbone layers unfrozen in phase 2
    label_smoothing: float = 0.05
    dropout: float = 0.3
    patience: int = 4  # epochs without a better validation score before a phase stops; 0 = never
    ema: float = 0.0  # momentum of the weights' moving average, scored and kept instead of the raw weights; 0 = off
    average_from: int = 0  # fine-tuning epoch from which the epochs' weights are averaged (SWA), scored, kept; 0 = off
    augmentation: dict = field(default_factory=lambda: Augmentation().to_dict())
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha); 0 = off (augment.mix_batch)
    cutmix: float = 0.0  # alpha of CutMix's Beta(alpha, alpha); 0 = off
    mix_probability: float = 0.5  # share of batches mixed when mixup or cutmix is on
    extra_data: str | None = None  # "bcn" (BCN_20000 from ../shared) or its folder: training images only
    extra_per_class: int | dict | None = None  # cap on extra images per class (None: all)
    distill_from: str | None = None  # a model folder or registry entry whose served probabilities are also targets
    distill_weight: float = 0.5  # targets: (1 - weight) * one-hot + weight * the teacher's probabilities
    distill_balanced: bool = True  # the teacher's probabilities moved to equal class priors first (distill.soft_targets)
    logit_adjustment: bool = False  # choose tau of log p + tau log prior on validation
    score_test: bool = True  # False for ablation runs: every choice is made on validation, test is scored once
    from_scratch: bool = False
    init_from: str | None = None  # continue from this model folder's weights (same backbone and size)
    strategy: str = "default"
    seed: int = 0
    data_dir: str | None = None
    limit: int | None = None  # at most this many images per class and split (smoke tests)
    run_dir: str | None = None  # checkpoints and log; default: a new folder under run_folder.runs_dir()
    verbose: int | None = None

    def check(self) -> None:
        """Refuse a setting that would only fail after minutes of loading data (one sentence each)."""
        if not phases_of(self):
            raise ValueError("Nothing to train: give --epochs (or --head-epochs) of at least 1.")
        if self.batch_size < 1 or (self.img_size and min(self.img_size) < 32):
            raise ValueError("batch size must be at least 1 and the image size at least 32x32 pixels.")
        if isinstance(self.extra_per_class, int) and self.extra_per_class < 0:
            raise ValueError(f"extra_per_class must be 0 or more, not {self.extra_per_class}.")
        if self.balance not in data.BALANCES:
            raise ValueError(f"balance must be one of {', '.join(data.BALANCES)}, not {self.balance!r}.")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, not {self.optimizer!r}.")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema is a momentum in [0, 1), not {self.ema}.")
        if self.average_from < 0 or (self.average_from and self.ema):
            raise ValueError("average_from is a fine-tuning epoch (0 = off) and does not combine with ema.")
        if min(self.mixup, self.cutmix) < 0 or not 0 <= self.mix_probability <= 1:
            raise ValueError("mixup and cutmix are Beta alphas (0 = off) and mix_probability is in [0, 1].")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight is a share in [0, 1], not {self.distill_weight}.")
        Augmentation.from_dict(self.augmentation)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known})
        config.img_size = tuple(config.img_size) if config.img_size else None
        return config


@dataclass
class Phase:
    name: str
    trainable_fraction: float | None  # None: everything trains (from scratch)
    epochs: int
    lr: float
    warmup: bool  # linear warm-up, then cosine decay (else a constant rate)
    averaged: bool  # a moving average of the weights when config.ema is set: not over a short head phase


def phases_of(config: TrainConfig) -> list[Phase]:
    if config.from_scratch:
        return [Phase("scratch", None, config.epochs, config.lr, True, True)] if config.epochs else []
    head = [Phase("head", 0.0, config.head_epochs, config.head_lr, False, False)] if config.head_epochs else []
    tune = [Phase("fine-tune", config.unfreeze, config.epochs, config.lr, True, True)] if config.epochs else []
    return head + tune


def make_strategy(name: str):
    """'default' (one device), 'mirrored' (all local GPUs/devices), 'multiworker' (TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be default, mirrored or multiworker, not {name!r}")


def make_optimizer(config: TrainConfig, phase: Phase, steps: int):
    """Adam or SGD-Nesterov; warm-up then cosine decay to 0 over the phase (the head phase: constant)."""
    schedule = phase.lr
    if phase.warmup:  # Adam's first full-size steps on a just-unfrozen backbone can wreck it
        warmup = max(1, int(config.warmup_epochs * steps))
        schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, phase.epochs * steps - warmup),
                                                          warmup_target=phase.lr, warmup_steps=warmup)
    ema = dict(use_ema=True, ema_momentum=config.ema) if config.ema and phase.averaged else {}
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule, **ema)
    elif config.optimizer == "sgd":  # Inception-ResNet-v2 study: SGD with Nesterov momentum
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, **ema)
    else:
        raise ValueError(f"optimizer must be adam or sgd, not {config.optimizer!r}")
    # Keras copies the average into the model at the end of every fit(); we fit one epoch at a time and
    # must keep training the raw weights, so the average is only swapped in to be scored (averaged_weights)
    optimizer.finalize_variable_values = lambda variables: None
    return optimizer


@contextmanager
def averaged_weights(optimizer):
    """The optimizer's moving average of the trainable weights swapped into the model, and back after."""
    averages = getattr(optimizer, "_model_variables_moving_average", None) if optimizer.use_ema else None
    if not averages:
        yield
        return
    pairs = list(zip(optimizer._trainable_variables, averages))
    current = [variable.numpy() for variable, _ in pairs]
    for variable, average in pairs:
        variable.assign(average)
    try:
        yield
    finally:
        for (variable, _), value in zip(pairs, current):
            variable.assign(value)


class WeightAverage:
    """The running mean of the model's weights at the ends of epochs (stochastic weight averaging).

    The validation score of single epochs at a high learning rate swings by several points; the mean of
    the last epochs' weights sits in the middle of the region they wander in. Batch-norm statistics are
    averaged with the weights (they are themselves moving averages of nearby weights); integer state
    (dropout seeds) is the current model's.
    """

    def __init__(self, values: dict | None = None, count: int = 0):
        self.values, self.count = values, count

    def add(self, variables) -> None:
        current = values_of(variables)
        self.count += 1
        if self.values is None:
            self.values = current
            return
        for name, value in current.items():
            mean = self.values[name]
            self.values[name] = mean + (value - mean) / self.count if value.dtype.kind == "f" else value

    @contextmanager
    def swapped_in(self, variables):
        """The average in the model (when there is one), and the trained weights back after."""
        if self.values is None:
            yield
            return
        current = values_of(variables)
        assign_values(variables, self.values)
        try:
            yield
        finally:
            assign_values(variables, current)


class Selection:
    """The validation-based choice of weights, and plateau stopping within a phase."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.best = state.get("best")  # {"epoch", "balanced_accuracy", "macro_auc"} of the kept weights
        self.top_balanced_accuracy = state.get("top_balanced_accuracy", -1.0)
        self.wait = state.get("wait", 0)

    def offer(self, epoch: int, scores: dict) -> bool:
        """Whether this epoch's weights replace the kept ones (SELECTION_RULE)."""
        balanced, auc = scores["balanced_accuracy"], scores["macro_auc"] or 0.0
        clear_gain = balanced > self.top_balanced_accuracy + TIE
        close = balanced >= self.top_balanced_accuracy - TIE
        better = self.best is None or clear_gain or (close and auc > self.best["macro_auc"])
        self.top_balanced_accuracy = max(self.top_balanced_accuracy, balanced)
        if better:
            self.best = {"epoch": epoch, "balanced_accuracy": balanced, "macro_auc": auc}
        self.wait = 0 if better else self.wait + 1
        return better

    def state(self) -> dict:
        return {"best": self.best, "top_balanced_accuracy": self.top_balanced_accuracy, "wait": self.wait}


def save_curves(history: list[dict], path: Path) -> None:
    epochs = np.arange(1, len(history) + 1)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", ax_loss), ("val_loss", ax_loss), ("accuracy", ax_score),
                    ("val_accuracy", ax_score), ("val_balanced_accuracy", ax_score), ("val_macro_auc", ax_score)):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [np.nan if v is None else v for v in values], marker=".", label=key)
    phases = [h.get("phase") for h in history]
    for ax in (ax_loss, ax_score):
        for i in range(1, len(phases)):
            if phases[i] != phases[i - 1]:
                ax.axvline(i + 0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax_loss.set_title("loss")
    ax_score.set_title("accuracy / validation selection metric")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scored_weights(config: TrainConfig) -> str:
    if config.ema:
        return "moving average"
    if config.average_from:
        return f"averaged from fine-tuning epoch {config.average_from}"
    return "raw"


def _earlier_runs(init_from) -> list[dict]:
    """The runs a continued model already went through (oldest first), so its card tells the whole story."""
    if not init_from:
        return []
    earlier = ModelInfo.read(init_from)
    run = {"training": earlier.training, "training_seconds": earlier.training_seconds, "epochs_run": earlier.epochs_run}
    return [*earlier.continued_from, run]


def _load_splits(config: TrainConfig, size, run: RunFolder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """HAM10000 train/val/test at `size` (uint8); extra training images appended to train only."""
    split = {}
    for name in [s for s in data.SPLITS if config.score_test or s != "test"]:
        paths, labels = data.labelled_split(name, config.data_dir)
        if config.limit:
            keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:config.limit] for c in range(len(CLASSES))]))
            paths, labels = [paths[i] for i in keep], labels[keep]
        t0 = time.time()
        split[name] = (data.load_images(paths, size), labels)
        run.log(f"{name}: {len(labels)} images decoded in {time.time() - t0:.0f}s")
    if config.extra_data:
        t0 = time.time()
        directory = None if config.extra_data == "bcn" else config.extra_data
        per_class = config.limit or config.extra_per_class
        x_extra, y_extra = load_bcn(size, per_class=per_class, seed=config.seed, directory=directory)
        split["extra"] = (x_extra, y_extra)
        run.log(f"extra training images ({config.extra_data}): {len(y_extra)} decoded in {time.time() - t0:.0f}s, "
                f"per class {describe(y_extra)}")
    return split


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train (or continue the run in `config.run_dir`), select on validation, save and score the model folder."""
    config.check()
    run = RunFolder(config.run_dir) if resume else RunFolder.create(Path(config.out).name, config.run_dir)
    state = run.read_state()
    if state and not resume:
        raise ValueError(f"{run.path} holds a run already; continue it with --resume, or give another --run-dir.")
    if not resume:  # absolute paths, so --resume from another folder writes to the same places
        config.out, config.run_dir = str(Path(config.out).resolve()), str(run.path.resolve())
        config.data_dir = str(Path(config.data_dir).resolve()) if config.data_dir else None
        config.init_from = str(Path(config.init_from).resolve()) if config.init_from else None
        if config.distill_from and Path(config.distill_from).is_dir():  # a folder; else a registry entry's name
            config.distill_from = str(Path(config.distill_from).resolve())
        run.write_config(asdict(config))
    run.log(f"{'resuming' if state else 'starting'} run {run.path} -> {config.out}")
    keras.utils.set_random_seed(config.seed)
    backbone = get_backbone(config.backbone)
    size = tuple(config.img_size or backbone.input_size)
    verbose = config.verbose if config.verbose is not None else (1 if os.isatty(1) else 2)
    out = Path(config.out)

    split = _load_splits(config, size, run)
    (x_ham, y_ham), (x_val, y_val) = split["train"], split["val"]
    x_train, y_train = x_ham, y_ham
    if "extra" in split:
        x_train, y_train = np.concatenate([x_ham, split["extra"][0]]), np.concatenate([y_ham, split["extra"][1]])
    options = Augmentation.from_dict(config.augmentation)
    mixing = config.mixup > 0 or config.cutmix > 0
    mix_fn = (lambda x, y, s: mix_batch(x, y, s, config.mixup, config.cutmix, config.mix_probability)) if mixing else None
    targets = data.one_hot(y_train)
    if config.distill_from:
        teacher = cached_teacher_probabilities(run.path, config.distill_from, x_train, run.log)
        targets = soft_targets(y_train, teacher, config.distill_weight,
                               prior=class_prior(y_ham) if config.distill_balanced else None)
    class_weight = data.class_weights(y_train) if config.balance == "weights" else None
    steps = len(data.epoch_indices(y_train, config.balance, config.batch_size, config.seed, 0,
                                   epoch_size=len(y_ham))) // config.batch_size

    strategy = make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config.backbone, size, pretrained=not (config.from_scratch or config.init_from),
                            dropout=config.dropout, seed=config.seed)
        if config.init_from:
            model.load_weights(str(Path(config.init_from) / WEIGHTS_FILE))
    forward = traced_forward(model, size)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    history = state["history"] if state else []
    selection = Selection(state["selection"] if state else None)
    best_weights = run.best_weights() if state else None
    average = WeightAverage(run.weight_average(), state.get("averaged_epochs", 0)) if state else WeightAverage()
    seconds = state["seconds"] if state else 0.0
    start_phase, start_epoch = (state["phase"], state["epoch_in_phase"]) if state else (0, 0)

    for index, phase in enumerate(phases_of(config)):
        if index < start_phase:
            continue
        continuing = state is not None and index == start_phase
        run.log(f"== phase {phase.name}: {phase.epochs} epochs, lr {phase.lr}, {steps} steps of {config.batch_size}")
        with strategy.scope():
            if phase.trainable_fraction is not None:
                set_trainable(model, phase.trainable_fraction)
            optimizer = make_optimizer(config, phase, steps)
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=False)
            optimizer.build(model.trainable_variables)
            if continuing:
                run.restore_model(model)  # the weights (and dropout RNG states) after the last completed epoch
            if continuing and start_epoch:
                run.restore_optimizer(optimizer)  # moments, step count (the schedule's position), averages
            elif best_weights is not None:
                assign_values(model.variables, best_weights)  # a new phase starts from the best weights so far
        if not (continuing and start_epoch):
            selection.wait = 0
        for epoch in range(start_epoch if continuing else 0, phase.epochs):
            number = len(history)
            indices = data.epoch_indices(y_train, config.balance, config.batch_size, config.seed, number,
                                         epoch_size=len(y_ham))
            dataset = data.epoch_dataset(x_train, targets, indices, config.batch_size,
                                         lambda x, s: augment(x, s, options), config.seed, number, mix_fn)
            t0 = time.time()
            fitted = model.fit(dataset, epochs=1, steps_per_epoch=len(indices) // config.batch_size, shuffle=False,
                               class_weight=class_weight, verbose=verbose)
            epoch_seconds = time.time() - t0
            seconds += epoch_seconds
            averaging = phase.averaged and config.average_from and epoch + 1 >= config.average_from
            if averaging:
                average.add(model.variables)
                first_averaged = number - (epoch + 1 - config.average_from)
                if selection.best is not None and selection.best["epoch"] < first_averaged:
                    selection = Selection()  # the averages compete among themselves, not with raw epochs before
                raw = compute_metrics(y_val, data.predict_uint8(forward, x_val))
                run.log(f"epoch {number + 1} before averaging: val balanced accuracy {raw['balanced_accuracy']:.4f}, "
                        f"macro AUC {fmt(raw['macro_auc'])}, accuracy {raw['accuracy']:.4f}")
            with averaged_weights(optimizer), average.swapped_in(model.variables):  # a no-op until averaging
                scores = compute_metrics(y_val, data.predict_uint8(forward, x_val))
                if selection.offer(number, scores):
                    best_weights = values_of(model.variables)
            record = {"phase": phase.name, **{k: float(v[-1]) for k, v in fitted.history.items()},
                      "val_loss": scores["log_loss"], "val_accuracy": scores["accuracy"],
                      "val_balanced_accuracy": scores["balanced_accuracy"], "val_macro_auc": scores["macro_auc"],
                      "seconds": round(epoch_seconds, 1), "images_per_second": round(len(indices) / epoch_seconds, 1)}
            if averaging:  # what the epoch's own weights scored, beside their average's score above
                record.update(raw_val_balanced_accuracy=raw["balanced_accuracy"], raw_val_macro_auc=raw["macro_auc"])
            history.append(record)
            kept = " (kept)" if selection.best["epoch"] == number else ""
            kept += f" [average of {average.count} epochs]" if averaging else ""
            run.log(f"epoch {number + 1} ({phase.name} {epoch + 1}/{phase.epochs}): loss {record['loss']:.4f}, "
                    f"val balanced accuracy {scores['balanced_accuracy']:.4f}, macro AUC {fmt(scores['macro_auc'])}, "
                    f"accuracy {scores['accuracy']:.4f}; {record['images_per_second']:.0f} images/s{kept}")
            stop = bool(config.patience) and selection.wait >= config.patience
            finished = stop or epoch + 1 == phase.epochs
            run.save(model, optimizer, best_weights, {
                "phase": index + 1 if finished else index, "epoch_in_phase": 0 if finished else epoch + 1,
                "history": history, "selection": selection.state(), "seconds": seconds,
                "averaged_epochs": average.count}, average.values)
            if stop:
                run.log(f"validation has not improved for {config.patience} epochs: phase {phase.name} ends")
                break
        state = None  # later phases start fresh in this process

    assign_values(model.variables, best_weights)
    model.trainable = True
    info = ModelInfo(
        name=out.name,
        backbone=config.backbone,
        input_size=size,
        last_conv_layer=last_conv_layer_name(model, backbone),
        pretrained="none (from scratch)" if config.from_scratch else "ImageNet",
        training={k: v for k, v in asdict(config).items() if k not in ("out", "data_dir", "verbose", "run_dir")},
        training_seconds=round(seconds, 1),
        epochs_run=len(history),
        history=history,
        continued_from=_earlier_runs(config.init_from),
        split_file=data.SPLIT_FILE.name,
        split_sha256=data.split_checksum(),
        parameters=int(model.count_params()),
        environment={"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
        selection={**selection.best, "epoch": selection.best["epoch"] + 1, "rule": SELECTION_RULE,
                   "scored_weights": scored_weights(config)},
    )
    save_model_folder(model, out, info)
    save_curves(history, out / "training_curves.png")

    classifier = Classifier(model, info, out.name)
    evaluation = {name: split[name] for name in (("val", "test") if config.score_test else ("val",))}
    prior = class_prior(y_ham) if config.logit_adjustment else None
    calibrate(out, classifier, evaluation, prior=prior)  # the decision rule, chosen on validation; metrics as served
    shown, (x, y) = list(evaluation.items())[-1]  # the test split's plots; an ablation run's validation plots
    save_plots(y, classifier(x.astype("float32")), out, title=f"{out.name} ({shown})")
    for name in evaluation:
        m = info.metrics[name]
        run.log(f"{name}: balanced accuracy {fmt(m['balanced_accuracy'])}, macro AUC {fmt(m['macro_auc'])}, "
                f"accuracy {fmt(m['accuracy'])}")
    if config.score_test and not config.limit:  # the Leaderboard's curves; smoke runs score a few images only
        save_split_predictions(out, classifier, "test", directory=config.data_dir)
    print(json.dumps({"model": str(out), "run": str(run.path), **{
        name: {k: info.metrics[name][k] for k in ("balanced_accuracy", "macro_auc", "accuracy")} for name in evaluation}}))
    return out
