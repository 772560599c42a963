"""Where the pinned silero VAD model comes from: the ``silero-vad`` wheel, never imported.

The package's own import needs PyTorch, which the evaluation does not. Its wheel ships
``silero_vad/data/silero_vad.onnx``; this module finds that file in an installed distribution
(read through ``importlib.metadata``, which imports nothing) or inside the wheel file itself,
and checks its sha256 against the pin. Nothing is fetched at run time.
"""

from __future__ import annotations

import os
import zipfile
from importlib import metadata
from pathlib import Path

from pipeline.digest import bytes_sha256

SILERO_VERSION = "6.2.3"
SILERO_WHEEL = f"silero_vad-{SILERO_VERSION}-py3-none-any.whl"
ONNX_MEMBER = "silero_vad/data/silero_vad.onnx"
ONNX_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
# The same release's TorchScript model (what FDB's scripts load); only the parity test reads it.
JIT_MEMBER = "silero_vad/data/silero_vad.jit"
JIT_SHA256 = "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720"
WHEEL_DIR_ENV = "FDB_EVAL_WHEELS"
DEFAULT_WHEEL_DIR = Path(".cache") / "eval-wheels"
FETCH_HINT = (
    f"pip download --no-deps silero-vad=={SILERO_VERSION} -d {DEFAULT_WHEEL_DIR}"
    f" (or `make eval-models`; another folder: set {WHEEL_DIR_ENV})"
)


class VadModelError(RuntimeError):
    """The pinned model is missing or is not the pinned file; the message says how to get it."""


def wheel_dirs() -> list[Path]:
    dirs = [Path(os.environ[WHEEL_DIR_ENV])] if os.environ.get(WHEEL_DIR_ENV) else []
    return [*dirs, DEFAULT_WHEEL_DIR]


def _from_installed(member: str) -> bytes | None:
    try:
        dist = metadata.distribution("silero-vad")
    except metadata.PackageNotFoundError:
        return None
    if dist.version != SILERO_VERSION:
        return None
    for file in dist.files or ():
        if str(file) == member:
            return Path(str(dist.locate_file(file))).read_bytes()
    return None


def _from_wheel(member: str) -> tuple[bytes, Path] | None:
    for folder in wheel_dirs():
        wheel = folder / SILERO_WHEEL
        if wheel.is_file():
            try:
                with zipfile.ZipFile(wheel) as archive:
                    return archive.read(member), wheel
            except (zipfile.BadZipFile, KeyError) as exc:
                raise VadModelError(
                    f"{wheel} is not a usable silero-vad wheel ({exc}); delete it and run"
                    f" {FETCH_HINT}"
                ) from exc
    return None


def model_bytes(member: str = ONNX_MEMBER, sha256: str = ONNX_SHA256) -> bytes:
    """The pinned model file's bytes, checked against its sha256."""
    data = _from_installed(member)
    where = f"the installed silero-vad {SILERO_VERSION}"
    if data is None:
        found = _from_wheel(member)
        if found is None:
            looked = ", ".join(str(d / SILERO_WHEEL) for d in wheel_dirs())
            raise VadModelError(
                f"the silero VAD model (silero-vad {SILERO_VERSION}) is not here (looked in"
                f" {looked}); get it with: {FETCH_HINT}"
            )
        data, wheel = found
        where = str(wheel)
    got = bytes_sha256(data)
    if got != sha256:
        raise VadModelError(
            f"{member} in {where} has sha256 {got}, not the pinned {sha256};"
            f" replace it: {FETCH_HINT}"
        )
    return data
