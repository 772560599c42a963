"""Per-sample advisory locks: two runs on the same samples (a job resubmitted while the old one
still runs) must never delete each other's temporary files or set aside each other's outputs.

The lock is ``flock`` on a hidden file in the sample's output folder, one per pass
(``.{prefix}output.lock``), taken without waiting: a sample held by another live run is left to
it. The kernel drops the lock when its holder dies, however it dies, so a killed run never
leaves a sample locked. The lock file itself stays (it is empty, and harmless).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pipeline.dataset.discovery import Sample


def lock_path(sample: Sample) -> Path:
    return sample.output_folder / f".{sample.prefix}output.lock"


class SampleLock:
    """``with SampleLock(sample) as held:`` - ``held`` is False when another run holds it.
    ``path`` names another lock file of the sample (the evaluation's, one per stage)."""

    def __init__(self, sample: Sample, path: Path | None = None) -> None:
        self.path = path or lock_path(sample)
        self._fd: int | None = None

    def __enter__(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None
