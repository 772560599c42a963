"""Find the benchmark's samples: ``<root>/<task>/<sample id>/{prefix}input.wav``.

Order is deterministic (tasks in the order given or known, sample ids in natural order). A sample
folder is always listed, even when its input is missing: the runner turns that into a failed
sample with a reason, so nothing silently shrinks the benchmark.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

TASKS_V15 = ("user_interruption", "user_backchannel", "talking_to_other", "background_speech")
TASKS_V10 = (
    "candor_pause_handling",
    "candor_turn_taking",
    "icc_backchannel",
    "synthetic_pause_handling",
    "synthetic_user_interruption",
)
KNOWN_TASKS = TASKS_V15 + TASKS_V10


class DatasetError(ValueError):
    """The dataset root or a task selection is wrong; raised before anything runs."""


@dataclass(frozen=True)
class Sample:
    task: str
    sample_id: str
    folder: Path
    prefix: str = ""

    @property
    def key(self) -> str:
        return f"{self.task}/{self.sample_id}"

    @property
    def input_path(self) -> Path:
        return self.folder / f"{self.prefix}input.wav"

    @property
    def output_path(self) -> Path:
        return self.folder / f"{self.prefix}output.wav"

    @property
    def text_path(self) -> Path:
        # never output.json: the evaluation's ASR writes that name
        return self.folder / f"{self.prefix}output_text.json"


def _natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def present_tasks(root: Path) -> list[str]:
    return [t for t in KNOWN_TASKS if (root / t).is_dir()]


def _in_image_hint() -> str:
    """Inside an Apptainer/Singularity image a host folder may exist and yet be invisible."""
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return (
            " (inside this Apptainer image only the host's $HOME, /tmp and current folder are"
            " visible by default: if it is on the host, bind it: apptainer run --bind DIR ...)"
        )
    return ""


def select_tasks(root: Path, requested: tuple[str, ...] | list[str]) -> list[str]:
    """Check the root and the requested tasks; default to every known task present."""
    if not root.exists():
        raise DatasetError(
            f"dataset root {root} does not exist; pass --root DIR with the tasks{_in_image_hint()}"
        )
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder; pass the folder that holds tasks")
    present = present_tasks(root)
    if not requested:
        if not present:
            found = sorted(p.name for p in root.iterdir() if p.is_dir())[:10]
            raise DatasetError(
                f"no known task folder under {root} (found: {found or 'nothing'}); expected some"
                f" of {', '.join(KNOWN_TASKS)} - point --root at the folder that holds them"
            )
        return present
    chosen: list[str] = []
    for task in requested:
        if task not in KNOWN_TASKS:
            raise DatasetError(
                f"unknown task {task!r}; known tasks: {', '.join(KNOWN_TASKS)}"
                f" (present under {root}: {', '.join(present) or 'none'})"
            )
        if not (root / task).is_dir():
            raise DatasetError(
                f"task folder {root / task} does not exist; present under {root}:"
                f" {', '.join(present) or 'none'}"
            )
        if task not in chosen:
            chosen.append(task)
    return chosen


def discover(root: Path, tasks: tuple[str, ...] | list[str] = (), prefix: str = "") -> list[Sample]:
    """List every sample folder of the selected tasks, in a deterministic order."""
    samples: list[Sample] = []
    for task in select_tasks(root, tasks):
        folders = [p for p in (root / task).iterdir() if p.is_dir() and not p.name.startswith(".")]
        for folder in sorted(folders, key=lambda p: _natural_key(p.name)):
            samples.append(Sample(task=task, sample_id=folder.name, folder=folder, prefix=prefix))
    return samples
