"""Data files read from the user's Full-Duplex-Bench checkout (``--fdb-repo``) at run time.

FDB's licence (CC BY-NC 4.0) keeps its data out of this project, so the evaluation reads the
one file it needs, the backchannel ground truth, from the user's checkout, and checks it is the
file the published numbers were made with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.digest import file_sha256

# The FDB commit the parity goldens were made at (tests/evaluate/goldens)
FDB_COMMIT = "d7336bda1385872b83b48a8d45d9c0003836a60d"
EVAL_FOLDER = Path("v1_v1.5") / "evaluation"
ICC_TRUTH = "icc_gt_distribution.json"
ICC_TRUTH_SHA256 = "92bcd0ff27246aaa9a0136737b476afd456cd393f003944c3394c140e590f2a8"
CLONE_HINT = (
    "git clone https://github.com/DanielLin94144/Full-Duplex-Bench and pass --fdb-repo"
    f" CHECKOUT (commit {FDB_COMMIT[:12]} was checked)"
)


class FdbRepoError(ValueError):
    """The FDB checkout is missing or holds another version of a file; says what to do."""


@dataclass(frozen=True)
class BackchannelTruth:
    path: Path
    sha256: str
    by_sample: dict[str, list[float]]  # ICC sample id -> the distribution over its bins


def find_fdb_file(repo: Path, name: Path | str) -> Path:
    """A file of FDB's evaluation folder, under a checkout's root or that folder."""
    for candidate in (repo / EVAL_FOLDER / name, repo / name):
        if candidate.is_file():
            return candidate
    raise FdbRepoError(f"no {EVAL_FOLDER / name} under --fdb-repo {repo}; {CLONE_HINT}")


def checked_fdb_file(repo: Path, name: Path | str, expected_sha256: str) -> tuple[Path, str]:
    """The file and its sha256, which must be the one the published numbers were made with."""
    path = find_fdb_file(repo, name)
    digest = file_sha256(path)
    if digest != expected_sha256:
        raise FdbRepoError(
            f"{path} has sha256 {digest}, not the {expected_sha256[:12]}... the published"
            f" numbers were made with; check out FDB commit {FDB_COMMIT[:12]} or its file"
        )
    return path, digest


def load_truth(repo: Path, expected_sha256: str = ICC_TRUTH_SHA256) -> BackchannelTruth:
    """The ground truth, checked (tests pass the digest of their own stand-in)."""
    path, digest = checked_fdb_file(repo, ICC_TRUTH, expected_sha256)
    data = json.loads(path.read_text(encoding="utf-8"))
    return BackchannelTruth(path, digest, {str(k): [float(x) for x in v] for k, v in data.items()})
