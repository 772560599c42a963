"""Start the real upstream Kyutai server (PyPI `moshi` 0.2.13) with a tiny random model.

The server runs in its own virtual environment (made by `scripts/setup-server-env.sh`), as a
subprocess of the test session, through `containers/tiny_moshi/serve.py`. Every model file is
given on the command line, so nothing is downloaded (`HF_HUB_OFFLINE=1` all the same).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.server.base import ServerSpec
from pipeline.server.local import LocalProcessBackend
from pipeline.server.preflight import free_port
from pipeline.server.readiness import wait_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MOSHI_DIR = REPO_ROOT / "containers" / "tiny_moshi"
MAKE_TINY_MODEL = TINY_MOSHI_DIR / "make_tiny_model.py"
SERVE = TINY_MOSHI_DIR / "serve.py"
SETUP_COMMAND = "scripts/setup-server-env.sh"
DEFAULT_SERVER_VENV = REPO_ROOT / ".venv-server"
SERVER_PYTHON_ENV = "PIPELINE_SERVER_PYTHON"

STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 40

_made_models: dict[tuple[Path, str, int], Path] = {}


def server_python() -> Path:
    """The python of the server venv: $PIPELINE_SERVER_PYTHON, else <repo>/.venv-server."""
    configured = os.environ.get(SERVER_PYTHON_ENV)
    if configured:
        return Path(configured)
    return DEFAULT_SERVER_VENV / "bin" / "python"


def server_python_available() -> bool:
    python = server_python()
    return python.is_file() and os.access(python, os.X_OK)


def ensure_tiny_model(cache_dir: Path, *, size: str = "tiny", seed: int = 0) -> Path:
    """Generate (once) the random model under `cache_dir` and return its folder.

    `make_tiny_model.py` is itself idempotent (it checks its manifest); a file lock keeps two
    test processes from writing the same folder at once.
    """
    cache_dir = cache_dir.resolve()
    key = (cache_dir, size, seed)
    if key in _made_models:
        return _made_models[key]
    out_dir = cache_dir / f"{size}-seed{seed}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            [
                str(server_python()),
                str(MAKE_TINY_MODEL),
                str(out_dir),
                "--size",
                size,
                "--seed",
                str(seed),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if result.returncode != 0 or not (out_dir / "manifest.json").is_file():
        raise RuntimeError(
            f"make_tiny_model.py failed (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    _made_models[key] = out_dir
    return out_dir


def server_args(model_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """`moshi.server` arguments that name every model file (no download)."""
    return [
        "--host",
        host,
        "--port",
        str(port),
        "--static",
        "none",
        "--device",
        "cpu",
        "--config-path",
        str(model_dir / "config.json"),
        "--moshi-weight",
        str(model_dir / "model.safetensors"),
        "--mimi-weight",
        str(model_dir / "mimi.safetensors"),
        "--tokenizer",
        str(model_dir / "tokenizer.model"),
    ]


def tiny_model_flags(model_dir: Path) -> list[str]:
    """The server flags that name every model file (no download) and run on the CPU."""
    return server_args(model_dir, 0)[6:]


def model_file_flags(model_dir: Path) -> list[str]:
    """The server flags that name every model file; `bench --gpus none` adds `--device cpu`."""
    return server_args(model_dir, 0)[8:]


@dataclass
class RunningServer:
    backend: LocalProcessBackend

    @property
    def host(self) -> str:
        return self.backend.host

    @property
    def port(self) -> int:
        return self.backend.port

    @property
    def log_path(self) -> Path:
        return self.backend.log_path

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """WebSocket base URL; the chat endpoint is `url + "/api/chat"`."""
        return f"ws://{self.address}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return self.backend.logs(tail=lines)


@contextlib.contextmanager
def tiny_moshi_server(
    model_dir: Path,
    port: int | None = None,
    *,
    log_dir: Path | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    torch_compile: bool = False,
    extra_args: Sequence[str] = (),
) -> Iterator[RunningServer]:
    """Run the real `moshi.server` on `model_dir` until the block exits, through the project's
    own local-process backend and readiness probe (what `bench --runtime local` uses).

    `torch_compile=False` sets NO_TORCH_COMPILE=1: moshi otherwise runs `torch.compile` on the
    CPU too, which adds ~12 s to a cold start and changes nothing else.
    """
    model_dir = model_dir.resolve()
    port = port or free_port()
    env = {"HF_HUB_OFFLINE": "1"}
    if not torch_compile:
        env["NO_TORCH_COMPILE"] = "1"
    spec = ServerSpec(
        command=[str(server_python()), str(SERVE), *server_args(model_dir, port), *extra_args],
        port=port,
        env=env,
        run_id=f"tiny-{port}",
    )
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="tiny-moshi-"))
    with _serving(spec, log_dir, startup_timeout_s) as server:
        yield server


@contextlib.contextmanager
def _serving(spec: ServerSpec, log_dir: Path, startup_timeout_s: float) -> Iterator[RunningServer]:
    """A server through the project's own local-process backend and readiness probe (what
    `bench --runtime local` uses), stopped when the block exits."""
    backend = LocalProcessBackend(spec, log_dir)
    backend.start()
    try:
        wait_ready(backend, startup_timeout_s)
        yield RunningServer(backend)
    finally:
        backend.stop(STOP_GRACE_S)


def tiny_bench_args(model_dir: Path) -> list[str]:
    """`bench` options that run the tiny real server as a local process."""
    return [
        "--runtime",
        "local",
        "--profile",
        "moshi",
        "--server-command",
        f"{server_python()} {SERVE}",
        *[f"--server-arg={flag}" for flag in model_file_flags(model_dir.resolve())],
    ]


# --- NVIDIA's PersonaPlex server (moshi-personaplex, vendored commit), tiny random model -------

TINY_PERSONAPLEX_DIR = REPO_ROOT / "containers" / "tiny_personaplex"
PERSONAPLEX_SETUP_COMMAND = "scripts/setup-personaplex-env.sh"
PERSONAPLEX_PYTHON_ENV = "PIPELINE_PERSONAPLEX_PYTHON"


def personaplex_python() -> Path:
    """The python of the PersonaPlex venv: $PIPELINE_PERSONAPLEX_PYTHON, else
    <repo>/.venv-personaplex."""
    configured = os.environ.get(PERSONAPLEX_PYTHON_ENV)
    return Path(configured) if configured else REPO_ROOT / ".venv-personaplex" / "bin" / "python"


def personaplex_available() -> bool:
    python = personaplex_python()
    return python.is_file() and os.access(python, os.X_OK)


def ensure_tiny_personaplex(cache_dir: Path) -> Path:
    """Generate (once) the tiny PersonaPlex model, its 18 voices and a custom .wav voice."""
    out_dir = cache_dir.resolve() / "tiny"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            [
                str(personaplex_python()),
                str(TINY_PERSONAPLEX_DIR / "make_tiny_personaplex.py"),
                str(out_dir),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"make_tiny_personaplex.py failed (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return out_dir


def personaplex_command(model_dir: Path) -> list[str]:
    """The launcher: NVIDIA's server, tiny configuration, offline (weights and voices local)."""
    launcher = TINY_PERSONAPLEX_DIR / "serve.py"
    return [str(personaplex_python()), str(launcher), "--tiny-model", str(model_dir.resolve())]


def tiny_personaplex_bench_args(model_dir: Path) -> list[str]:
    """`bench` options that run the tiny real PersonaPlex server as a local process (the weight
    flag tells bench the weights are local: no token, no download; `--gpus none` gives it
    `--device cpu`: PersonaPlex's default is cuda)."""
    return [
        "--runtime", "local", "--profile", "personaplex",
        "--server-command", " ".join(personaplex_command(model_dir)),
        f"--server-arg=--moshi-weight={model_dir.resolve() / 'model.safetensors'}",
    ]  # fmt: skip


@contextlib.contextmanager
def tiny_personaplex_server(model_dir: Path, log_dir: Path) -> Iterator[RunningServer]:
    """The real PersonaPlex server on the tiny model until the block exits."""
    port = free_port()
    flags = ["--host", "127.0.0.1", "--port", str(port), "--static", "none", "--device", "cpu"]
    spec = ServerSpec(
        command=[*personaplex_command(model_dir), *flags],
        port=port,
        env={"HF_HUB_OFFLINE": "1", "NO_TORCH_COMPILE": "1"},
        run_id=f"tiny-personaplex-{port}",
    )
    with _serving(spec, log_dir, STARTUP_TIMEOUT_S) as server:
        yield server
