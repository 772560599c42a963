"""Start the real upstream Kyutai server (PyPI `moshi` 0.2.13) with a tiny random model.

The server runs in its own virtual environment (made by `scripts/setup-server-env.sh`), as a
subprocess of the test session, through `containers/tiny_moshi/serve.py`. Every model file is
given on the command line, so nothing is downloaded (`HF_HUB_OFFLINE=1` all the same).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class RunningServer:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """WebSocket base URL; the chat endpoint is `url + "/api/chat"`."""
        return f"ws://{self.address}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)


def _probe(host: str, port: int) -> int | None:
    """HTTP status of a plain `GET /api/chat` (aiohttp answers 400 without an Upgrade header)."""
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", "/api/chat")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's whole process group, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # The group may outlive its leader (compile workers): always make sure it is gone.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


@contextlib.contextmanager
def tiny_moshi_server(
    model_dir: Path,
    port: int | None = None,
    *,
    log_path: Path | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    torch_compile: bool = False,
    extra_args: Sequence[str] = (),
) -> Iterator[RunningServer]:
    """Run the real `moshi.server` on `model_dir` until the block exits.

    Ready means `GET /api/chat` answers HTTP 400 (the port opens only after the model is loaded
    and warmed up). `torch_compile=False` sets NO_TORCH_COMPILE=1: moshi otherwise runs
    `torch.compile` on the CPU too, which adds ~12 s to a cold start and changes nothing else.
    """
    model_dir = model_dir.resolve()
    host = "127.0.0.1"
    if port is None:
        port = free_port()
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"tiny-moshi-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if torch_compile:
        env.pop("NO_TORCH_COMPILE", None)
    else:
        env["NO_TORCH_COMPILE"] = "1"
    # The client venv must not leak into the server's interpreter.
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(var, None)
    cmd = [
        str(server_python()),
        str(SERVE),
        *server_args(model_dir, port, host),
        *extra_args,
    ]
    with log_path.open("wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
    server = RunningServer(port=port, proc=proc, log_path=log_path, host=host)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            rc = proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"moshi server exited with code {rc} before it was ready; "
                    f"log {log_path}:\n{server.log_tail()}"
                )
            if _probe(host, port) == 400:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"moshi server not ready after {startup_timeout_s:.0f} s; "
                    f"log {log_path}:\n{server.log_tail()}"
                )
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)
