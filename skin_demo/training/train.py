"""Two-phase transfer learning (frozen backbone, then fine-tuning) with validation-based selection."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import matplotlib
import numpy as np
import tensorflow as tf

from ..classes import CLASSES
from ..metrics import compute_metrics, fmt
from ..model_folder import WEIGHTS_FILE, ModelInfo
from ..serving.classifier import Classifier
from . import data
from .backbones import get_backbone
from .calibrate import calibrate
from .evaluate import save_plots
from .factory import build_model, last_conv_layer_name, save_model_folder, set_trainable

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


@dataclass
class TrainConfig:
    backbone: str
    out: str
    img_size: tuple[int, int] | None = None
    head_epochs: int = 3
    epochs: int = 12  # fine-tuning epochs (or all epochs when training from scratch)
    batch_size: int = 32
    balance: str = "weights"
    optimizer: str = "adam"
    head_lr: float = 1e-3
    lr: float = 1e-4  # fine-tuning peak learning rate (warm-up, then cosine decay to 0 over `epochs`)
    unfreeze: float = 1.0  # fraction of backbone layers unfrozen in phase 2
    label_smoothing: float = 0.05
    dropout: float = 0.3
    patience: int = 4
    from_scratch: bool = False
    init_from: str | None = None  # continue from this model folder's weights (same backbone and size)
    strategy: str = "default"
    seed: int = 0
    data_dir: str | None = None
    limit: int | None = None  # at most this many images per class and split (smoke tests)
    verbose: int | None = None
    extra: dict = field(default_factory=dict)


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


def _optimizer(name: str, learning_rate):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "sgd":  # Inception-ResNet-v2 study: SGD with Nesterov momentum
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer must be adam or sgd, not {name!r}")


def snapshot_weights(model) -> dict:
    """Weights by variable path: get_weights() order changes when layers are (un)frozen."""
    return {v.path: v.numpy() for v in model.weights}


def restore_weights(model, snapshot: dict) -> None:
    for variable in model.weights:
        variable.assign(snapshot[variable.path])


def _balanced_accuracy_callback(x_val, y_val, batch_size, patience):
    """Scores validation balanced accuracy each epoch, keeps the best weights, stops on a plateau."""
    class ValidationSelection(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_weights, self.wait, self.history = -1.0, None, 0, []

        def start_phase(self):
            self.wait = 0

        def on_epoch_end(self, epoch, logs=None):
            probs = self.model.predict(x_val, batch_size=batch_size * 2, verbose=0)
            scores = compute_metrics(y_val, probs)
            score, auc = scores["balanced_accuracy"], scores["macro_auc"] or float("nan")
            if logs is not None:  # validation is scored here only, so every number comes from compute_metrics
                logs.update(val_loss=scores["log_loss"], val_accuracy=scores["accuracy"],
                            val_balanced_accuracy=score, val_macro_auc=auc)
            self.history.append({**{k: float(v) for k, v in (logs or {}).items()}})
            print(f"  val balanced accuracy {score:.4f}, macro AUC {auc:.4f}", flush=True)
            if score > self.best:
                self.best, self.best_weights, self.wait = score, snapshot_weights(self.model), 0
            else:
                self.wait += 1
                if self.wait >= patience:
                    self.model.stop_training = True

    return ValidationSelection()


def save_curves(history: list[dict], path: Path, phase_starts: list[int]) -> None:
    epochs = np.arange(1, len(history) + 1)
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", ax_loss), ("val_loss", ax_loss), ("accuracy", ax_score),
                    ("val_accuracy", ax_score), ("val_balanced_accuracy", ax_score), ("val_macro_auc", ax_score)):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [np.nan if v is None else v for v in values], marker=".", label=key)
    for ax in (ax_loss, ax_score):
        for start in phase_starts[1:]:
            ax.axvline(start + 0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax_loss.set_title("loss")
    ax_score.set_title("accuracy / validation selection metric")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _earlier_runs(init_from) -> list[dict]:
    """The runs a continued model already went through (oldest first), so its card tells the whole story."""
    if not init_from:
        return []
    earlier = ModelInfo.read(init_from)
    run = {"training": earlier.training, "training_seconds": earlier.training_seconds, "epochs_run": earlier.epochs_run}
    return [*earlier.continued_from, run]


def train(config: TrainConfig) -> Path:
    """Train, select on validation, save the model folder, and score val and test splits."""
    keras.utils.set_random_seed(config.seed)
    backbone = get_backbone(config.backbone)
    size = tuple(config.img_size or backbone.input_size)
    verbose = config.verbose if config.verbose is not None else (1 if os.isatty(1) else 2)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    split = {}
    for name in data.SPLITS:
        paths, labels = data.labelled_split(name, config.data_dir)
        if config.limit:
            keep = np.concatenate([np.flatnonzero(labels == c)[:config.limit] for c in range(len(CLASSES))])
            paths, labels = [paths[i] for i in np.sort(keep)], labels[np.sort(keep)]
        t0 = time.time()
        split[name] = (data.load_images(paths, size), labels)
        print(f"{name}: {len(labels)} images decoded in {time.time() - t0:.0f}s", flush=True)
    x_train, y_train = split["train"]
    x_val, y_val = split["val"]
    train_ds, steps = data.make_dataset(x_train, y_train, config.batch_size, training=True,
                                           balance=config.balance, seed=config.seed)
    weights = data.class_weights(y_train) if config.balance == "weights" else None

    strategy = make_strategy(config.strategy)
    with strategy.scope():
        model = build_model(config.backbone, size, pretrained=not (config.from_scratch or config.init_from),
                            dropout=config.dropout, seed=config.seed)
        if config.init_from:
            model.load_weights(str(Path(config.init_from) / WEIGHTS_FILE))
    selection = _balanced_accuracy_callback(x_val, y_val, config.batch_size, config.patience)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    phases = []
    if config.from_scratch:
        phases.append(("scratch", None, config.epochs, config.lr))
    else:
        if config.head_epochs:
            phases.append(("head", 0.0, config.head_epochs, config.head_lr))
        if config.epochs:
            phases.append(("fine-tune", config.unfreeze, config.epochs, config.lr))

    t_start = time.time()
    phase_starts = []
    for phase, fraction, epochs, lr in phases:
        print(f"== phase {phase}: {epochs} epochs, lr {lr}", flush=True)
        phase_starts.append(len(selection.history))
        with strategy.scope():
            if fraction is not None:
                set_trainable(model, fraction)
            if selection.best_weights is not None:
                restore_weights(model, selection.best_weights)
            # warm-up then cosine: Adam's first full-size steps on a just-unfrozen backbone can wreck it
            schedule = lr if phase == "head" else keras.optimizers.schedules.CosineDecay(
                0.0, epochs * steps, warmup_target=lr, warmup_steps=max(1, steps // 2))
            model.compile(optimizer=_optimizer(config.optimizer, schedule), loss=loss,
                          metrics=["accuracy"], jit_compile=False)
        selection.start_phase()
        model.fit(train_ds, steps_per_epoch=steps, epochs=epochs,
                  class_weight=weights, callbacks=[selection], verbose=verbose)
    train_seconds = time.time() - t_start
    restore_weights(model, selection.best_weights)
    model.trainable = True

    info = ModelInfo(
        name=out.name,
        backbone=config.backbone,
        input_size=size,
        last_conv_layer=last_conv_layer_name(model, backbone),
        pretrained="none (from scratch)" if config.from_scratch else "ImageNet",
        training={k: v for k, v in asdict(config).items() if k not in ("out", "data_dir", "verbose")},
        training_seconds=round(train_seconds, 1),
        epochs_run=len(selection.history),
        history=selection.history,
        continued_from=_earlier_runs(config.init_from),
        split_file=data.SPLIT_FILE.name,
        split_sha256=data.split_checksum(),
        parameters=int(model.count_params()),
        environment={"tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()},
    )
    save_model_folder(model, out, info)
    save_curves(selection.history, out / "training_curves.png", phase_starts)

    classifier = Classifier(model, info, out.name)
    for name in ("val", "test"):
        x, y = split[name]
        probs = classifier(x.astype("float32"))
        info.metrics[name] = compute_metrics(y, probs)
        if name == "test":
            save_plots(y, probs, out, title=f"{out.name} (test)")
        print(f"{name}: balanced accuracy {fmt(info.metrics[name]['balanced_accuracy'])}, "
              f"macro AUC {fmt(info.metrics[name]['macro_auc'])}", flush=True)
    info.write(out)
    calibrate(out, classifier, {name: split[name] for name in ("val", "test")})  # writes the model card too
    print(json.dumps({"model": str(out), "test": {k: info.test_metrics[k] for k in
                                                  ("balanced_accuracy", "macro_auc", "accuracy")}}))
    return out
