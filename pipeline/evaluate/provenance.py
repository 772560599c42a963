"""Per-sample result files that say what made them, so a re-run redoes only what changed.

Every file a stage writes carries, under :data:`EVAL_KEY`, the stage, the sha256 of each input
file and of the stage's configuration, the values the scores are made from, and versions. FDB's
own readers ignore the extra key. Files are written atomically (a temporary file renamed over
the final name): a killed stage leaves the old file or none, and the temporary file of a killed
writer is swept before the sample is done again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.digest import bytes_sha256, file_sha256
from pipeline.results.atomic import TMP_SUFFIX, atomic_write_bytes

EVAL_KEY = "fdb_pipeline"


@dataclass(frozen=True)
class Stamp:
    stage: str
    inputs: dict[str, str]  # file name in the sample folder -> sha256
    config_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "inputs": self.inputs, "config_sha256": self.config_sha256}


def config_sha256(config: dict[str, Any]) -> str:
    return bytes_sha256(json.dumps(config, sort_keys=True).encode())


def stamp_for(stage: str, files: dict[str, Path], config: dict[str, Any]) -> Stamp:
    """The stamp of a sample's current inputs (file name -> path; each must exist)."""
    inputs = {name: file_sha256(files[name]) for name in sorted(files)}
    return Stamp(stage, inputs, config_sha256(config))


def current_values(path: Path, stamp: Stamp) -> dict[str, Any] | None:
    """The values of ``path`` if it was made from exactly these inputs and configuration."""
    try:
        record = json.loads(path.read_text(encoding="utf-8")).get(EVAL_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(record, dict):
        return None
    made_by = {k: record.get(k) for k in ("stage", "inputs", "config_sha256")}
    values = record.get("values")
    return values if made_by == stamp.as_dict() and isinstance(values, dict) else None


def sweep_partials(path: Path) -> None:
    """Remove temporary files a killed writer of ``path`` left behind."""
    for leftover in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)


def write_result(
    path: Path, body: dict[str, Any], stamp: Stamp, values: dict[str, Any], versions: dict[str, str]
) -> None:
    record = {**stamp.as_dict(), "values": values, "versions": versions}
    text = json.dumps({**body, EVAL_KEY: record}, ensure_ascii=False, indent=2) + "\n"
    atomic_write_bytes(path, text.encode())
