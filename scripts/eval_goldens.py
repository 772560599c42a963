"""Regenerate ``tests/evaluate/goldens.json``: FDB's own evaluation scripts, run at a pinned
commit from YOUR checkout (never copied here), on the synthetic fixtures of
``tests/evaluate/fixtures.py``. Only numbers come back into the repository.

Needs an environment with torch, torchaudio, silero-vad (the pinned version), scipy, tqdm,
soundfile and soxr - not the project's venv. torchaudio's PyPI wheel is a CUDA build: on a CPU
machine delete its ``torchaudio/lib/*.so`` (resample is pure PyTorch; with no library file
torchaudio imports without its extension). ``make eval-goldens FDB_REPO=...`` does all this.

The shims, each the least that lets FDB's code run offline, unchanged:
- ``torchaudio.load`` reads with soundfile (float32, PCM16/32768: torchaudio's own reading;
  torchaudio >= 2.9 needs torchcodec + FFmpeg for it);
- ``torch.hub.load("snakers4/silero-vad", ...)`` (GitHub's master at run time) returns the
  pinned wheel's TorchScript model, the one ``load_silero_vad()`` gives;
- a script's module-level ``print`` / ``np`` are wrapped to record the values it prints or
  averages (FDB's backchannel script prints its means to 4 decimals only).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.evaluate.fixtures import fixture_digests, make_fixtures  # noqa: E402

EVAL = Path("v1_v1.5") / "evaluation"
SCRIPTS = (
    "get_timing.py",
    "eval_pause_handling.py",
    "eval_smooth_turn_taking.py",
    "eval_backchannel.py",
)


def install_shims() -> None:
    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio
    from silero_vad import load_silero_vad

    def load(path: Any, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, int]:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)

    torchaudio.load = load
    torch.hub.load = lambda *a, **k: (load_silero_vad(), None)


class Recorder:
    """Stands in for a module's ``print`` or ``np``, recording and passing everything on."""

    def __init__(self, numpy: ModuleType | None = None) -> None:
        self.numpy = numpy
        self.calls: list[Any] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:  # print
        self.calls.append(args)

    def __getattr__(self, name: str) -> Any:  # np.<name>
        attr = getattr(self.numpy, name)
        if name != "mean":
            return attr

        def mean(values: Any, *a: Any, **k: Any) -> Any:
            self.calls.append([float(v) for v in values])
            return attr(values, *a, **k)

        return mean


@contextlib.contextmanager
def cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def printed(record: Recorder, label: str) -> float:
    return next(float(args[1]) for args in record.calls if args and args[0] == label)


def run(fdb: Path) -> dict[str, Any]:
    install_shims()
    sys.path.insert(0, str(fdb / EVAL))
    import eval_backchannel
    import eval_pause_handling
    import eval_smooth_turn_taking
    import get_timing
    import numpy as np

    goldens: dict[str, Any] = {"timing": {}, "rules": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data, truth_dir = make_fixtures(Path(tmp))
        goldens["fixtures_sha256"] = fixture_digests(data)
        goldens["truth_sha256"] = hashlib.sha256(
            (truth_dir / "icc_gt_distribution.json").read_bytes()
        ).hexdigest()
        for folder in sorted((data / "user_interruption").iterdir()):
            get_timing.process_folder(folder)
            written = json.loads((folder / "latency_intervals.json").read_text())
            goldens["timing"][f"user_interruption/{folder.name}"] = written
        for task in ("synthetic_pause_handling", "candor_pause_handling"):
            eval_pause_handling.print = record = Recorder()
            eval_pause_handling.eval_pause_handling(str(data / task))
            goldens["rules"][task] = {"tor": printed(record, "Average take turn: ")}
        eval_smooth_turn_taking.print = record = Recorder()
        eval_smooth_turn_taking.eval_smooth_turn_taking(str(data / "candor_turn_taking"))
        goldens["rules"]["candor_turn_taking"] = {
            "tor": printed(record, "Average take turn: "),
            "latency": printed(record, "Average latency: "),
        }
        eval_backchannel.np = record = Recorder(np)
        eval_backchannel.print = Recorder()
        with cwd(truth_dir):  # the script reads ./icc_gt_distribution.json
            eval_backchannel.eval_backchannel(str(data / "icc_backchannel"))
        jsd, tor, freq = record.calls
        goldens["rules"]["icc_backchannel"] = {
            "tor": float(np.mean(tor)),
            "freq": float(np.mean(freq)),
            "jsd": float(np.mean(jsd)),
            "n": len(tor),
        }
    return goldens


def provenance(fdb: Path) -> dict[str, Any]:
    from importlib import metadata

    commit = subprocess.run(
        ["git", "-C", str(fdb), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return {
        "fdb_commit": commit,
        "fdb_scripts_sha256": {
            name: hashlib.sha256((fdb / EVAL / name).read_bytes()).hexdigest() for name in SCRIPTS
        },
        "versions": {d: metadata.version(d) for d in ("torch", "torchaudio", "silero-vad")},
        "shims": "torchaudio.load via soundfile; torch.hub.load -> the silero-vad wheel's model",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fdb-repo", type=Path, required=True, help="your FDB checkout")
    parser.add_argument("--out", type=Path, default=REPO / "tests/evaluate/goldens.json")
    args = parser.parse_args()
    fdb = args.fdb_repo.resolve()
    result = {**provenance(fdb), **run(fdb)}
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
