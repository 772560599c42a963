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
from pipeline.evaluate.fdb_repo import BackchannelTruth
from pipeline.evaluate.judge_sources import JudgePrompts
from pipeline.evaluate.settings import EvalSettings
from pipeline.evaluate.vad import OnnxVad

if TYPE_CHECKING:  # the judge's client imports the openai SDK: only when a judge asks
    from pipeline.evaluate.judge_client import JudgeClient

Metrics = dict[str, float | int | str | None]


@dataclass
class EvalContext:
    """What every stage may use: the settings, the VAD session and the judge's client (each
    made once, on first use) and the FDB data read from ``--fdb-repo``."""

    settings: EvalSettings
    truth: BackchannelTruth | None = None
    prompts: JudgePrompts | None = None
    _vad: OnnxVad | None = field(default=None, repr=False)
    _judge: JudgeClient | None = field(default=None, repr=False)

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


class Stage(ABC):
    name: ClassVar[str]

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

    @abstractmethod
    def aggregate(self, ctx: EvalContext, task: str, values: list[dict[str, Any]]) -> Metrics:
        """One task's metrics from its samples' values."""


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
