"""A run killed mid-training and resumed with --resume ends as one that went through, on real images."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from skin_demo.model_folder import ModelInfo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 2e-3  # float reductions on 2 threads are not bit-reproducible; a lost epoch or state differs far more


EMA = ("--ema", "0.9")


def train_command(out: Path, run_dir: Path, *extra: str, averaging=EMA) -> list[str]:
    """A tiny recipe with every resumable piece: head + fine-tune phases, balanced batches, batch mixing, a
    weight average (EMA or SWA), a schedule."""
    return [sys.executable, "-m", "skin_demo", "train", "--backbone", "mobilenet_v2_035", "--out", str(out),
            "--img-size", "64", "96", "--head-epochs", "1", "--epochs", "2", "--batch-size", "8", "--limit", "5",
            "--balance", "oversample", "--mixup", "0.4", "--cutmix", "1.0", *averaging, "--patience", "0", "--lr", "3e-4",
            "--run-dir", str(run_dir), *extra]


def history(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "state.json").read_text())["history"]


def run(command, **kwargs):
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# EMA with a teacher (distillation) killed after the head epoch; weight averaging (SWA) killed mid-average,
# after its first fine-tuning epoch
@pytest.mark.parametrize("averaging, killed_after, distilled", [(EMA, 1, True), (("--average-from", "1"), 2, False)],
                         ids=["ema-distilled", "swa"])
def test_a_killed_run_resumes_to_the_same_validation_history(tmp_path, averaging, killed_after, distilled,
                                                            tiny_model_dir):
    teacher = ("--distill-from", str(tiny_model_dir), "--distill-weight", "0.4") if distilled else ()
    run(train_command(tmp_path / "whole", tmp_path / "run_whole", *teacher, averaging=averaging))

    killed = subprocess.Popen(train_command(tmp_path / "resumed", tmp_path / "run_resumed", *teacher, averaging=averaging),
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = tmp_path / "run_resumed" / "state.json"
    deadline = time.monotonic() + 300
    while not (state.is_file() and len(history(tmp_path / "run_resumed")) >= killed_after):
        assert killed.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)  # as a session's end does: no chance to clean up
    killed.wait()
    assert not (tmp_path / "resumed" / "model.weights.h5").exists()
    run([sys.executable, "-m", "skin_demo", "train", "--resume", str(tmp_path / "run_resumed")])

    whole, resumed = history(tmp_path / "run_whole"), history(tmp_path / "run_resumed")
    assert len(whole) == len(resumed) == 3
    for key in ("loss", "val_loss", "val_balanced_accuracy", "val_macro_auc", "val_accuracy"):
        np.testing.assert_allclose([e[key] for e in resumed], [e[key] for e in whole], atol=TOLERANCE, err_msg=key)
    a, b = ModelInfo.read(tmp_path / "whole"), ModelInfo.read(tmp_path / "resumed")
    assert a.selection == b.selection and a.selection["rule"]
    assert "batch mixing: mixup (alpha 0.4) or cutmix (alpha 1)" in (tmp_path / "resumed" / "README.md").read_text()
    assert a.metrics["test"]["balanced_accuracy"] == pytest.approx(b.metrics["test"]["balanced_accuracy"], abs=0.02)
    log = (tmp_path / "run_resumed" / "train.log").read_text()
    assert "resuming run" in log and "epoch 3 (fine-tune 2/2)" in log
    if distilled:  # the teacher answered once, before the first epoch; the resumed process read its answers back
        assert log.count("teacher ") == 2 and "read from teacher.npz" in log and b.training["distill_weight"] == 0.4
        teacher_file = np.load(tmp_path / "run_resumed" / "teacher.npz")
        assert teacher_file["probabilities"].shape == (35, 7)
        np.testing.assert_allclose(teacher_file["probabilities"].sum(axis=1), 1.0, atol=1e-5)
        assert "- distillation: targets 0.6 x the label + 0.4 x the served probabilities" in (
            tmp_path / "resumed" / "README.md").read_text()
    if "--average-from" in averaging:  # the resumed average holds both fine-tuning epochs, as the whole run's
        assert json.loads((tmp_path / "run_resumed" / "state.json").read_text())["averaged_epochs"] == 2
        assert "[average of 2 epochs]" in log
        assert all("raw_val_balanced_accuracy" in e for e in resumed[1:])
        assert b.selection["epoch"] >= 2, "the kept weights are an average, not the head epoch before it"


def test_extra_training_images_never_reach_validation_or_test(tmp_path):
    run(train_command(tmp_path / "extra", tmp_path / "run_extra", "--extra-data", "bcn", "--epochs", "1",
                      "--augment", "vignette=0.3"))
    info = ModelInfo.read(tmp_path / "extra")
    assert info.training["extra_data"] == "bcn" and info.training["augmentation"]["vignette"] == 0.3
    assert info.metrics["val"]["n"] == info.metrics["test"]["n"] == 35  # 5 HAM10000 images per class each
    log = (tmp_path / "run_extra" / "train.log").read_text()
    assert "extra training images (bcn): 35 decoded" in log  # 5 per class, the --limit
