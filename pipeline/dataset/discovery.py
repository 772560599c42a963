"""Find the benchmark's samples: ``<root>/<task>/<sample id>/{prefix}input.wav``.

Outputs go beside the inputs, or - for a read-only dataset - under an output root that mirrors
the dataset's ``<task>/<sample id>/`` folders.

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
# The passes of a sample folder: input.wav -> output.wav, clean_input.wav -> clean_output.wav.
# Only v1.5 has the clean pass (its evaluation scores the two outputs against each other).
PASSES = ("", "clean_")
BOTH = "both"


class DatasetError(ValueError):
    """The dataset root or a task selection is wrong; raised before anything runs."""


@dataclass(frozen=True)
class Sample:
    task: str
    sample_id: str
    folder: Path
    prefix: str = ""
    out_folder: Path | None = None  # where the outputs go; None: beside the input

    @property
    def output_folder(self) -> Path:
        """The folder of this sample's outputs, locks and temporary files."""
        return self.folder if self.out_folder is None else self.out_folder

    @property
    def key(self) -> str:
        """``task/id``, and ``task/id (clean_)`` for the clean pass: unique within a run."""
        base = f"{self.task}/{self.sample_id}"
        return f"{base} ({self.prefix})" if self.prefix else base

    @property
    def input_path(self) -> Path:
        return self.folder / f"{self.prefix}input.wav"

    @property
    def output_path(self) -> Path:
        return self.output_folder / f"{self.prefix}output.wav"

    @property
    def text_path(self) -> Path:
        # never output.json: the evaluation's ASR writes that name
        return self.output_folder / f"{self.prefix}output_text.json"


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


def passes_of(task: str, prefix: str) -> tuple[str, ...]:
    """The prefixes to run in a task's folders: ``both`` is both passes for a v1.5 task and
    the main pass for a v1.0 task (which has no clean input)."""
    if prefix != BOTH:
        return (prefix,)
    return PASSES if task in TASKS_V15 else PASSES[:1]


def check_output_root(root: Path, output_root: Path) -> None:
    """An output root must not be the dataset itself or lie inside it (outputs would be
    discovered as sample folders), and must be creatable."""
    if output_root.resolve() == root.resolve() or root.resolve() in output_root.resolve().parents:
        raise DatasetError(
            f"output root {output_root} lies inside the dataset root {root}; pick a folder"
            " outside it, or drop --output-root to write beside the inputs"
        )
    if output_root.exists() and not output_root.is_dir():
        raise DatasetError(f"output root {output_root} is not a folder; pass a folder")


def discover(
    root: Path,
    tasks: tuple[str, ...] | list[str] = (),
    prefix: str = "",
    output_root: Path | None = None,
) -> list[Sample]:
    """List every sample (folder and pass) of the selected tasks, in a deterministic order:
    task by task, folders in natural order, a folder's passes one after the other. With
    ``output_root``, each sample's outputs go to ``output_root/<task>/<sample id>/``."""
    if output_root is not None:
        check_output_root(root, output_root)
    samples: list[Sample] = []
    for task in select_tasks(root, tasks):
        folders = [p for p in (root / task).iterdir() if p.is_dir() and not p.name.startswith(".")]
        for folder in sorted(folders, key=lambda p: _natural_key(p.name)):
            out = None if output_root is None else output_root / task / folder.name
            for pass_prefix in passes_of(task, prefix):
                samples.append(Sample(task, folder.name, folder, pass_prefix, out))
    return samples
