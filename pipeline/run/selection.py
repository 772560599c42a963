"""Which of the dataset's samples a run takes: all of them, those a samples file lists, and of
those one shard (``--shard K/N``), as a Slurm array task does.

Shards are the plan's lanes (:func:`pipeline.run.plan.assign`): samples dealt in dataset order
to the shard with the least audio so far. The same samples and N give the same shards, every
sample is in exactly one, and the shards finish at about the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.config import ConfigError, InferSettings, flag_for
from pipeline.dataset.discovery import Sample
from pipeline.run import plan


def shard(samples: Sequence[Sample], index: int, count: int) -> list[Sample]:
    """Shard ``index`` of ``count`` (0-based), in dataset order."""
    return plan.assign(samples, count)[index]


def read_keys(path: Path) -> list[str]:
    """A samples file: one sample key a line (blank lines and ``#`` comments ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"samples file {path} cannot be read ({exc.strerror or exc}); check"
            f" {flag_for('samples_file')}"
        ) from None
    keys = [line.strip() for line in text.splitlines()]
    return [k for k in keys if k and not k.startswith("#")]


def keys_text(keys: Iterable[str], header: str = "") -> str:
    """A samples file's text (what :func:`read_keys` reads back)."""
    lines = [f"# {line}" for line in header.splitlines()] + list(keys)
    return "\n".join(lines) + "\n"


def listed(samples: Sequence[Sample], keys: Sequence[str], path: Path) -> list[Sample]:
    """The samples whose keys ``path`` lists, in dataset order; a key the dataset lacks is an
    error naming the file (written for another --root, --task or --prefix?)."""
    wanted = set(keys)
    unknown = wanted - {s.key for s in samples}
    if unknown:
        first = sorted(unknown)[:3]
        raise ConfigError(
            f"samples file {path} lists {len(unknown)} sample(s) not in this dataset (e.g."
            f" {', '.join(first)}); was it written for another --root, --task or --prefix?"
        )
    return [s for s in samples if s.key in wanted]


def select(settings: InferSettings, samples: Sequence[Sample]) -> list[Sample]:
    """The run's samples: the listed ones (if a samples file is given), then its shard."""
    chosen = list(samples)
    if settings.samples_file is not None:
        chosen = listed(chosen, read_keys(settings.samples_file), settings.samples_file)
    parts = settings.shard_of()
    if parts is not None:
        chosen = shard(chosen, *parts)
    return chosen
