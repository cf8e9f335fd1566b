"""A training run's folder, outside the repository: its config, a checkpoint after every epoch, and its log.

Sessions on this machine end after a few hours and a running process is killed, so a long schedule
spans several processes: `python -m skin_demo train --resume RUN_DIR` reads the config back and
continues from the last completed epoch with the same weights, optimizer state (moments, step count,
so the schedule position; EMA averages), the running weight average (--average-from), selection
state (best score and its weights), dropout RNG state and history. Everything of one epoch is one .npz file (arrays in variable order, named by
path, and the state as JSON; no pickle) written under a temporary name and renamed, so a run killed
mid-save resumes from the previous complete checkpoint; `state.json` beside it is a readable copy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..paths import REPO_ROOT

RUNS_ENV = "SKIN_DEMO_RUNS"
CONFIG_FILE, STATE_FILE, LOG_FILE, CHECKPOINT_FILE = "config.json", "state.json", "train.log", "checkpoint.npz"
# runs checkpointed before the single-file checkpoint kept these three files beside state.json
LEGACY_FILES = {"model": "model_variables.npz", "optimizer": "optimizer_variables.npz", "best": "best_weights.npz"}


def runs_dir() -> Path:
    """$SKIN_DEMO_RUNS, else runs/ beside the repository (like ../shared: never inside the work tree)."""
    return Path(os.environ.get(RUNS_ENV) or REPO_ROOT.parent / "runs")


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        names = json.loads(str(stored["__names__"]))
        return {name: stored[f"a{i}"] for i, name in enumerate(names)}


def values_of(variables) -> dict[str, np.ndarray]:
    """Variables' values in their order, named by position and path ("12:block_1_expand/kernel")."""
    return {f"{i}:{variable.path}": variable.numpy() for i, variable in enumerate(variables)}


def assign_values(variables, values: dict[str, np.ndarray], what: str = "weights") -> None:
    """The inverse of `values_of`, by position: a model built the same way lists its variables in the same
    order (also after layers are frozen), while Keras numbers the paths of a second model in one process."""
    variables, stored = list(variables), list(values.values())
    shapes_differ = [v.path for v, a in zip(variables, stored) if tuple(v.shape) != a.shape]
    if len(stored) != len(variables) or shapes_differ:
        raise ValueError(f"The saved {what} ({len(stored)} arrays) do not fit this model's {len(variables)} "
                         "variables: they belong to another model or phase.")
    for variable, array in zip(variables, stored):
        variable.assign(array)


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, name: str, path=None) -> "RunFolder":
        folder = Path(path) if path else runs_dir() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder)

    # ------------------------------------------------------------------ config and state
    def write_config(self, config: dict) -> None:
        (self.path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict:
        path = self.path / CONFIG_FILE
        if not path.is_file():
            raise ValueError(f"{self.path} is not a training run folder (no {CONFIG_FILE}).")
        return json.loads(path.read_text())

    def read_state(self) -> dict | None:
        """The state of the last complete checkpoint (None before the first epoch ended)."""
        if (self.path / CHECKPOINT_FILE).is_file():
            return json.loads(str(self._checkpoint()["state"]))
        legacy = self.path / STATE_FILE
        return json.loads(legacy.read_text()) if legacy.is_file() and (self.path / LEGACY_FILES["model"]).is_file() else None

    def log(self, line: str) -> None:
        print(line, flush=True)
        with open(self.path / LOG_FILE, "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    # ------------------------------------------------------------------ checkpoints
    def save(self, model, optimizer, best: dict | None, state: dict, average: dict | None = None) -> None:
        """Everything needed to continue after the epoch `state` describes, in one file replaced at once."""
        arrays = {"state": np.array(json.dumps(state))}
        for kind, values in (("model", values_of(model.variables)), ("optimizer", values_of(optimizer.variables)),
                             ("best", best or {}), ("average", average or {})):
            arrays[f"{kind}_names"] = np.array(json.dumps(list(values)))
            arrays.update({f"{kind}_{i}": value for i, value in enumerate(values.values())})
        partial = self.path / (CHECKPOINT_FILE + ".part.npz")
        np.savez(partial, **arrays)
        partial.replace(self.path / CHECKPOINT_FILE)
        (self.path / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")  # for people and tools

    def _checkpoint(self) -> dict[str, np.ndarray]:
        with np.load(self.path / CHECKPOINT_FILE, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}

    def _arrays(self, kind: str) -> dict[str, np.ndarray]:
        if not (self.path / CHECKPOINT_FILE).is_file():
            legacy = LEGACY_FILES.get(kind)  # no legacy file holds a weight average
            return _load_arrays(self.path / legacy) if legacy and (self.path / legacy).is_file() else {}
        stored = self._checkpoint()
        if f"{kind}_names" not in stored:  # a checkpoint written before this kind existed
            return {}
        names = json.loads(str(stored[f"{kind}_names"]))
        return {name: stored[f"{kind}_{i}"] for i, name in enumerate(names)}

    def restore_model(self, model) -> None:
        assign_values(model.variables, self._arrays("model"), "model variables")

    def restore_optimizer(self, optimizer) -> None:
        assign_values(optimizer.variables, self._arrays("optimizer"), "optimizer variables")

    def best_weights(self) -> dict | None:
        return self._arrays("best") or None

    def weight_average(self) -> dict | None:
        return self._arrays("average") or None
