"""The settings of ``python -m pipeline evaluate``: one dataclass, its defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.evaluate.asr_worker import PINNED_MODEL

# Every stage of issue 10, in the order they run; this version has the CPU ones.
STAGE_NAMES = ("asr", "timing", "rules", "judge", "prosody", "stats")
MODES = ("fdb-compat", "corrected")


@dataclass(frozen=True)
class EvalSettings:
    root: Path
    tasks: tuple[str, ...] = ()  # empty: every known task present
    prefix: str = ""  # "", "clean_" or "both" (as in `infer`)
    stages: tuple[str, ...] = ()  # empty: every stage whose requirements are present
    fdb_repo: Path | None = None  # the user's FDB checkout (backchannel ground truth)
    run_dir: Path | None = None  # None: runs/eval-<time>
    # fdb-compat: read a 24 kHz output.wav as 16 kHz for backchannel, as FDB does (its
    # published numbers carry that); corrected: resample it first. Both are computed.
    mode: str = field(default="fdb-compat")
    # asr: a .nemo file, or FDB's model (nvidia/parakeet-tdt-0.6b-v2, pinned by revision)
    asr_model: str = PINNED_MODEL
    asr_python: Path | None = None  # None: $FDB_ASR_PYTHON, else .venv-asr/bin/python

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
