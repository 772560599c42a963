"""The settings of ``python -m pipeline evaluate``: one dataclass, its defaults in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.evaluate.asr_worker import PINNED_MODEL

# Every stage of issue 10, in the order they run; this version has the CPU ones.
STAGE_NAMES = ("asr", "timing", "rules", "judge", "prosody", "stats")
MODES = ("fdb-compat", "corrected")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class JudgeSettings:
    """The LLM judge's endpoint. The key itself is never held here (nor in any record): only
    the NAME of the environment variable that holds it."""

    base_url: str | None = None  # None: the SDK's default (api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"
    model: str | None = None  # None: FDB's model for each task
    timeout_s: float = 60.0  # one request
    attempts: int = 5  # per request: 429 / 5xx / timeout / connection error, with backoff
    reasks: int = 3  # a reply that does not parse is asked again at most this often
    backoff_s: float = 2.0  # the first retry's wait, doubling, randomized (tests: a little)

    def __post_init__(self) -> None:
        if not ENV_NAME.fullmatch(self.api_key_env):
            # never echoed: a key pasted here by mistake must not reach the log
            raise ValueError(
                "--judge-api-key-env takes the NAME of the environment variable that holds the"
                " key (e.g. OPENAI_API_KEY), not the key itself"
            )
        if self.timeout_s <= 0 or self.attempts < 1 or self.reasks < 0:
            raise ValueError("judge timeout must be > 0, attempts >= 1 and re-asks >= 0")


@dataclass(frozen=True)
class EvalSettings:
    root: Path
    tasks: tuple[str, ...] = ()  # empty: every known task present
    prefix: str = ""  # "", "clean_" or "both" (as in `infer`)
    stages: tuple[str, ...] = ()  # empty: every stage whose requirements are present
    fdb_repo: Path | None = None  # the user's FDB checkout (backchannel ground truth)
    run_dir: Path | None = None  # None: runs/eval-<time>
    # where `bench --output-root` put the outputs (None: beside the inputs); the evaluation's
    # files go there too
    output_root: Path | None = None
    # fdb-compat: read a 24 kHz output.wav as 16 kHz for backchannel, as FDB does (its
    # published numbers carry that); corrected: resample it first. Both are computed.
    mode: str = field(default="fdb-compat")
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    # asr: a .nemo file, or FDB's model (nvidia/parakeet-tdt-0.6b-v2, pinned by revision)
    asr_model: str = PINNED_MODEL
    asr_python: Path | None = None  # None: $FDB_ASR_PYTHON, else .venv-asr/bin/python

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
