"""Hostile and broken files through the command line with a really trained model (the loader and the
classifier take the whole corpus in tests/unit/test_hostile_images.py)."""

import re
import subprocess
import sys
from pathlib import Path

from make_bad_images import CASES
from skin_demo.classes import CLASSES

REPO = Path(__file__).resolve().parents[2]
CLI_GOOD = "photo.jpg"
CLI_BAD = ["empty.jpg", "truncated.jpg", "document.jpg", "bomb.png", "tiny_8x8.png", "iphone.heic"]
MESSAGES = {case.name: case.message for case in CASES}


def test_cli_reports_each_bad_file_and_still_predicts_the_good_one(corpus_dir, tiny_model_dir):
    """One CLI run (TensorFlow starts once): results on stdout, one line per bad file on stderr, exit code 2."""
    files = [str(corpus_dir / name) for name in [CLI_GOOD, *CLI_BAD]]
    result = subprocess.run([sys.executable, "-m", "skin_demo", "predict", "--model", str(tiny_model_dir), *files],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0] == files[0]
    assert len(re.findall(r"^\s+\d+\.\d+%", result.stdout, flags=re.MULTILINE)) == len(CLASSES)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(CLI_BAD)
    for name, line in zip(CLI_BAD, errors):
        assert name in line and MESSAGES[name] in line
