"""What a stage is, and the registry the runner walks (later stages - asr, judge, prosody -
slot in as more entries of :data:`STAGES`).

A stage works sample by sample: it names the files it reads (their sha256 go into the stamp),
its configuration (hashed too), the file it writes, and computes FDB's body plus the values
its scores are made of; ``aggregate`` turns one task's values into metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.dataset.discovery import Sample
from pipeline.evaluate.asr_client import AsrError, AsrWorker, default_python
from pipeline.evaluate.fdb_repo import BackchannelTruth
from pipeline.evaluate.judge_sources import JudgePrompts
from pipeline.evaluate.settings import EvalSettings
from pipeline.evaluate.vad import OnnxVad

if TYPE_CHECKING:  # the judge's client imports the openai SDK: only when a judge asks
    from pipeline.evaluate.judge_client import JudgeClient

Metrics = dict[str, float | int | str | None]
# the v1.0 task that the asr (crop), rules (TOR, latency) and judge (rating) stages treat apart
INTERRUPTION_TASK = "synthetic_user_interruption"


@dataclass
class EvalContext:
    """What every stage may use: the settings, the VAD session, the ASR worker and the judge's
    client (each made once, on first use; :meth:`close` ends the worker) and the FDB data read
    from ``--fdb-repo``."""

    settings: EvalSettings
    truth: BackchannelTruth | None = None
    prompts: JudgePrompts | None = None
    _vad: OnnxVad | None = field(default=None, repr=False)
    _judge: JudgeClient | None = field(default=None, repr=False)
    _asr: AsrWorker | AsrError | None = field(default=None, repr=False)

    @property
    def vad(self) -> OnnxVad:
        if self._vad is None:
            self._vad = OnnxVad()
        return self._vad

    @property
    def judge(self) -> JudgeClient:
        if self._judge is None:
            from pipeline.evaluate.judge_client import JudgeClient

            self._judge = JudgeClient(self.settings.judge)
        return self._judge

    @property
    def asr_python(self) -> Path:
        return self.settings.asr_python or default_python()

    @property
    def asr(self) -> AsrWorker:
        """The worker; one that failed to start fails every later sample at once, alike."""
        if self._asr is None:
            try:
                self._asr = AsrWorker(self.asr_python, self.settings.asr_model)
            except AsrError as exc:
                self._asr = exc
        if isinstance(self._asr, AsrError):
            raise self._asr
        return self._asr

    def close(self) -> None:
        if isinstance(self._asr, AsrWorker):
            self._asr.close()
        self._asr = None


class Stage(ABC):
    name: ClassVar[str]
    # whether ``stats`` alone reads this stage's files for scores (asr's feed later stages only)
    scored: ClassVar[bool] = True

    @abstractmethod
    def applies(self, sample: Sample) -> bool:
        """Whether this stage scores this sample (task and pass)."""

    def missing(self, ctx: EvalContext, sample: Sample) -> str | None:
        """What this sample would need that this run lacks (None: nothing)."""
        return None

    @abstractmethod
    def output_path(self, sample: Sample) -> Path: ...

    @abstractmethod
    def input_names(self, sample: Sample) -> list[str]:
        """The files of the sample folder the result depends on."""

    @abstractmethod
    def config(self, ctx: EvalContext, sample: Sample) -> dict[str, Any]:
        """Everything else the result depends on (hashed into the stamp)."""

    @abstractmethod
    def compute(self, ctx: EvalContext, sample: Sample) -> tuple[dict[str, Any], dict[str, Any]]:
        """FDB's body of the file and our values."""

    def side_outputs(self, sample: Sample) -> list[Path]:
        """Files written beside :meth:`output_path`, with the same stamp (default: none)."""
        return []

    def compute_files(
        self, ctx: EvalContext, sample: Sample
    ) -> tuple[dict[Path, dict[str, Any]], dict[str, Any]]:
        """FDB's body of every file (side outputs first, the output last) and our values."""
        body, values = self.compute(ctx, sample)
        return {self.output_path(sample): body}, values

    @abstractmethod
    def aggregate(self, ctx: EvalContext, task: str, values: list[dict[str, Any]]) -> Metrics:
        """One task's metrics from its samples' values."""


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
