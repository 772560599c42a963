"""Checks made before any server starts. Each failure is a PreflightError naming the fix."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pipeline.config import default_hf_home
from pipeline.server.base import PreflightError
from pipeline.stream.protocol import VOICE_SUFFIXES

log = logging.getLogger("pipeline")

BUILTIN_VOICES = tuple(
    f"{kind}{i}.pt"
    for kind, count in (("NATF", 4), ("NATM", 4), ("VARF", 5), ("VARM", 5))
    for i in range(count)
)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


PORT_LOCKS = Path(tempfile.gettempdir()) / "fdb-pipeline-ports"
MAX_PORTS_SKIPPED = 64


class PortReservation:
    """Ports this run holds: an advisory lock file per port (in the machine's temp folder), so
    that two runs started together on one node never pick the same port. Held until
    :meth:`release` (the run's teardown); a crashed run's locks go with its process."""

    def __init__(self) -> None:
        self._held: dict[int, IO[bytes] | None] = {}  # port -> its open lock file

    @property
    def ports(self) -> list[int]:
        return list(self._held)

    def take(self, port: int) -> bool:
        """Lock ``port`` unless another run holds it."""
        try:
            if not PORT_LOCKS.is_dir():
                PORT_LOCKS.mkdir(parents=True, exist_ok=True)
                PORT_LOCKS.chmod(0o1777)  # shared by every user of the node, like /tmp
            fh = (PORT_LOCKS / f"{port}.lock").open("ab")
        except OSError as exc:  # no lock to be had here: the port check alone must do
            log.debug("no port lock for %d (%s)", port, exc)
            self._held[port] = None
            return True
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._held[port] = fh
        return True

    def release_one(self, port: int) -> None:
        fh = self._held.pop(port, None)
        if fh is not None:
            fh.close()

    def release(self) -> None:
        for port in self.ports:
            self.release_one(port)


def choose_ports(first: int, count: int) -> PortReservation:
    """``count`` ports from ``first`` up (0: any free ones), skipping those another run of this
    tool holds; a port taken by anything else is an error that names it."""
    held = PortReservation()
    candidate = first
    for _ in range(count + MAX_PORTS_SKIPPED):
        if len(held.ports) == count:
            return held
        port = free_port() if first == 0 else candidate
        candidate += 1
        if port in held.ports or not held.take(port):
            log.info("port %d is held by another run; trying the next one", port)
            continue
        if first != 0 and not port_free(port):
            if port != first:  # past the port asked for: another one will do
                held.release_one(port)
                continue
            held.release()
            raise PreflightError(
                f"port {port} is already in use (another server still running? see"
                " `python -m pipeline cleanup`); pass --port N for another one, or --port 0"
                " to pick free ports"
            )
    if len(held.ports) == count:
        return held
    held.release()
    raise PreflightError(
        f"{MAX_PORTS_SKIPPED} ports from {first} up are held by other runs; pass --port 0 to"
        " pick free ports"
    )


@dataclass
class GpuFacts:
    names: list[str] = field(default_factory=list)
    driver: str | None = None


def gpu_facts() -> GpuFacts | None:
    """What nvidia-smi says (None without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            check=True,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return GpuFacts()
    facts = GpuFacts()
    for line in out.splitlines():
        name, _, driver = line.partition(",")
        facts.names.append(name.strip())
        facts.driver = driver.strip() or facts.driver
    return facts


def require_nvidia_smi(runtime: str) -> GpuFacts:
    facts = gpu_facts()
    if facts is None:
        raise PreflightError(
            f"--runtime {runtime} with a GPU needs the NVIDIA driver, but nvidia-smi is not on"
            " PATH: run on a GPU node (Slurm: --gres=gpu:1), or pass --gpus none for CPU"
        )
    return facts


TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def token_files(hf_cache: Path | None = None) -> list[Path]:
    """Where `hf auth login` (`huggingface-cli login`) saves the token, in the order
    huggingface_hub reads it: ``$HF_TOKEN_PATH``, else the user's HF_HOME; then the cache the
    server is given (its own HF_HOME)."""
    named = os.environ.get("HF_TOKEN_PATH")
    files = [Path(named).expanduser()] if named else [default_hf_home() / "token"]
    if hf_cache is not None and hf_cache.expanduser() / "token" not in files:
        files.append(hf_cache.expanduser() / "token")
    return files


def hf_token(hf_cache: Path | None = None) -> str | None:
    """The user's Hugging Face token: the environment first, then a saved login's token file.
    It goes to the server's environment only; never to argv, a log or the manifest."""
    for name in TOKEN_ENV:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    for path in token_files(hf_cache):
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if token:
            return token
    return None


def repo_cache_dir(hf_cache: Path, repo: str) -> Path:
    return hf_cache.expanduser() / "hub" / ("models--" + repo.replace("/", "--"))


def cached_revision(hf_cache: Path, repo: str) -> str | None:
    """The snapshot the cache's ``main`` ref points to, if the repo was downloaded."""
    ref = repo_cache_dir(hf_cache, repo) / "refs" / "main"
    try:
        return ref.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def weights_cached(hf_cache: Path, repo: str) -> bool:
    snapshots = repo_cache_dir(hf_cache, repo) / "snapshots"
    return any(snapshots.glob("*/*.safetensors")) if snapshots.is_dir() else False


def check_weights(hf_cache: Path, repo: str, local_weights: bool) -> None:
    """A token is needed only to download gated weights that are not cached yet."""
    if local_weights or hf_token(hf_cache) or weights_cached(hf_cache, repo):
        return
    files = " or ".join(str(p) for p in token_files(hf_cache))
    raise PreflightError(
        f"no Hugging Face token (HF_TOKEN is not set, no token file at {files}) and the weights"
        f" of {repo} are not in the Hugging Face cache {hf_cache.expanduser()}: accept the"
        f" licence at https://huggingface.co/{repo}, then `hf auth login` or `export"
        " HF_TOKEN=...` (it is passed to the server only, never logged), or point --hf-cache"
        " (or HF_HOME) at a cache that holds them"
    )


@dataclass(frozen=True)
class VoiceChoice:
    query_value: str  # what the session sends as voice_prompt
    folder: Path | None = None  # a custom voice's folder: served with --voice-prompt-dir


def check_voice(voice: str) -> VoiceChoice:
    """A built-in voice name, or an existing .pt / .wav file. A custom voice's folder becomes
    the server's voice folder and the session names the file only (newer PersonaPlex servers
    refuse paths in voice_prompt)."""
    if voice in BUILTIN_VOICES:
        return VoiceChoice(voice)
    path = Path(voice).expanduser()
    if path.suffix.lower() in VOICE_SUFFIXES and path.is_file():
        path = path.resolve()
        return VoiceChoice(path.name, folder=path.parent)
    raise PreflightError(
        f"unknown voice prompt {voice!r}: use one of the built-in voices"
        f" ({', '.join(BUILTIN_VOICES)}) or the path of an existing .pt or .wav file"
    )
