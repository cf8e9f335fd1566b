"""Where things are: the package's resources, the repository, and the ../shared folder beside it."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RESOURCES = PACKAGE_DIR / "resources"
REPO_ROOT = PACKAGE_DIR.parent
SHARED = REPO_ROOT.parent / "shared"  # data sets and ImageNet weights, never copied into the repo
