"""Helpers for tests that use a REAL Docker engine and the CPU variant of containers/Dockerfile.

Not a test module. Everything is built here, on the machine, with no container registry:

- `ensure_engine()`: `scripts/docker-engine.sh start` (installs docker.io, starts dockerd).
- `ensure_cpu_image()`: the base image (`scripts/build-base-image.sh`, debootstrap), the wheels
  (`scripts/fetch-wheels.sh`) and `docker build` of the CPU variant (upstream moshi 0.2.13, CPU
  torch, offline). Idempotent: the scripts skip what exists and docker's layer cache makes a
  repeated build take seconds.
- `ensure_tiny_model_dir()`: the random tiny model, in the folder the local-process tests use.
- `cpu_server_container()`: the tiny server in a container, reachable from the host.

In CI (environment variable CI set) a missing piece raises; locally the test is skipped with the
command that prepares it. A failing `docker build` always raises: that is a bug in the recipe.

Networking: with the engine that `scripts/docker-engine.sh` starts (docker0 bridge, no iptables)
the container's port 8998 is published on 127.0.0.1 at a port docker picks, and the server
inside listens on every interface of the container (the image's SERVER_HOST=auto). If the engine
has no bridge network (dockerd --bridge=none), `-p` silently publishes nothing: the container
then shares the host's network (`--network host`) and the server listens on 127.0.0.1:<free
port>. `engine_network_mode()` says which applies.

The model folder is mounted at the SAME absolute path inside the container: its config.json
names mimi_config.json by an absolute file:// URI.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.real_server import (
    MAKE_TINY_MODEL,
    REPO_ROOT,
    TINY_MOSHI_DIR,
    ensure_tiny_model,
    model_file_flags,
    server_python_available,
    tiny_model_flags,
)

SCRIPTS = REPO_ROOT / "scripts"
ENGINE_SCRIPT = SCRIPTS / "docker-engine.sh"
BASE_IMAGE_SCRIPT = SCRIPTS / "build-base-image.sh"
FETCH_WHEELS_SCRIPT = SCRIPTS / "fetch-wheels.sh"
BUILD_CONTEXT = REPO_ROOT / "containers"
DOCKERFILE = BUILD_CONTEXT / "Dockerfile"
WHEELS_DIR = BUILD_CONTEXT / "wheels"
# the two CPU variants: the build-arguments file and the setup script holding the pins
VARIANTS = {
    "moshi": ("cpu-build-args.txt", "setup-server-env.sh"),
    "personaplex": ("personaplex-cpu-build-args.txt", "setup-personaplex-env.sh"),
}
PERSONAPLEX_CPU_IMAGE = "fdb-server:personaplex-cpu-test"

BASE_IMAGE = "fdb-base:bookworm"
CPU_IMAGE = "fdb-server:cpu-test"
CONTAINER_PORT = 8998
# The folder tests/integration/conftest.py uses too: one tiny model for local and Docker tests.
TINY_MODEL_CACHE = REPO_ROOT / ".cache" / "tiny-moshi"
LOG_DIR = REPO_ROOT / ".cache" / "docker-support"

ENGINE_TIMEOUT_S = 600.0  # includes `apt-get install docker.io` on a bare machine
BASE_IMAGE_TIMEOUT_S = 900.0
FETCH_TIMEOUT_S = 900.0
BUILD_TIMEOUT_S = 1800.0
MODEL_TIMEOUT_S = 600.0
STARTUP_TIMEOUT_S = 120.0
LOG_TAIL_CHARS = 4000

_done: set[str] = set()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str, command: str) -> NoReturn:
    """A missing piece: raise in CI, skip locally with the command that provides it."""
    text = f"{message}\nprepare it with: {command}"
    if in_ci():
        raise RuntimeError(text + "\n(CI never skips: the integration tests must run)")
    pytest.skip(text)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def _run_logged(cmd: Sequence[str], log_name: str, timeout_s: float) -> tuple[int, Path]:
    """Run `cmd` with its output in LOG_DIR/log_name; return (exit code, log path)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / log_name
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # docker 20.10's classic builder, no buildx
    with log_path.open("wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        try:
            result = subprocess.run(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=env,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return 124, log_path
        except OSError as exc:
            log.write(f"\ncannot run {cmd[0]}: {exc}\n".encode())
            return 127, log_path
    return result.returncode, log_path


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock shared by every test process on this machine (pytest-xdist)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with (LOG_DIR / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_engine() -> None:
    """A Docker engine that answers (`scripts/docker-engine.sh start`: install, start, wait)."""
    if "engine" in _done:
        return
    command = f"sudo bash {ENGINE_SCRIPT.relative_to(REPO_ROOT)} start"
    code, log_path = _run_logged(
        ["bash", str(ENGINE_SCRIPT), "start"], "engine.log", ENGINE_TIMEOUT_S
    )
    if code != 0:
        unavailable(
            f"no Docker engine: docker-engine.sh start failed (exit {code}); log {log_path}:\n"
            f"{_tail(log_path)}",
            command,
        )
    _done.add("engine")


def _image_exists(tag: str) -> bool:
    result = subprocess.run(
        ["docker", "image", "inspect", tag],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


def _wheels_stamp(variant: str = "moshi") -> Path:
    """Marks a complete fetch for the variant's current pins (its setup script), the fetch
    script and this project's own dependencies (the SIF's); scripts/build-cpu-sif.sh makes
    and checks the same stamp."""
    digest = hashlib.sha256()
    for script in (
        SCRIPTS / VARIANTS[variant][1],
        FETCH_WHEELS_SCRIPT,
        REPO_ROOT / "pyproject.toml",
    ):
        digest.update(script.read_bytes())
    return WHEELS_DIR / f".fetched-{variant}-{digest.hexdigest()[:16]}"


def cpu_build_args(variant: str = "moshi") -> dict[str, str]:
    """The CPU variant's build arguments, as fetch-wheels.sh wrote them."""
    args: dict[str, str] = {}
    for line in (WHEELS_DIR / VARIANTS[variant][0]).read_text().splitlines():
        if line.strip():
            name, _, value = line.partition("=")
            args[name] = value
    return args


def ensure_wheels(variant: str = "moshi") -> None:
    """Every wheel the offline CPU build needs, in containers/wheels (`fetch-wheels.sh`)."""
    stamp = _wheels_stamp(variant)
    args_file = WHEELS_DIR / VARIANTS[variant][0]
    if stamp.is_file() and args_file.is_file():
        return
    code, log_path = _run_logged(
        ["env", f"SERVER={variant}", "bash", str(FETCH_WHEELS_SCRIPT)],
        f"fetch-wheels-{variant}.log",
        FETCH_TIMEOUT_S,
    )
    if code != 0 or not args_file.is_file():
        unavailable(
            f"fetch-wheels.sh failed (exit {code}); log {log_path}:\n{_tail(log_path)}",
            f"bash {FETCH_WHEELS_SCRIPT.relative_to(REPO_ROOT)}",
        )
    for old in WHEELS_DIR.glob(f".fetched-{variant}-*"):
        old.unlink()
    stamp.touch()


def ensure_base_image(tag: str = BASE_IMAGE) -> str:
    """The Debian bookworm base image, built by debootstrap (`build-base-image.sh`)."""
    ensure_engine()
    code, log_path = _run_logged(
        ["bash", str(BASE_IMAGE_SCRIPT), tag], "base-image.log", BASE_IMAGE_TIMEOUT_S
    )
    if code != 0 or not _image_exists(tag):
        unavailable(
            f"no base image {tag}: build-base-image.sh failed (exit {code}); log {log_path}:\n"
            f"{_tail(log_path)}",
            f"sudo bash {BASE_IMAGE_SCRIPT.relative_to(REPO_ROOT)} {tag}",
        )
    return tag


def ensure_cpu_image(tag: str = CPU_IMAGE, variant: str = "moshi") -> str:
    """The CPU variant of containers/Dockerfile (upstream moshi 0.2.13, CPU torch), built
    offline from the local base image and wheels. Returns `tag`.

    Runs `docker build` once per test session: the layer cache makes it a few seconds when
    nothing changed, and it picks up any change to the Dockerfile, the wheels or tiny_moshi/.
    """
    if f"image:{tag}" in _done:
        return tag
    ensure_engine()
    with _locked("cpu-image"):
        ensure_wheels(variant)
        args = cpu_build_args(variant)
        ensure_base_image(args.get("BASE_IMAGE", BASE_IMAGE))
        cmd = ["docker", "build", "--force-rm", "-f", str(DOCKERFILE), "-t", tag]
        for name, value in args.items():
            cmd += ["--build-arg", f"{name}={value}"]
        cmd.append(str(BUILD_CONTEXT))
        code, log_path = _run_logged(cmd, f"cpu-image-build-{variant}.log", BUILD_TIMEOUT_S)
        if code != 0 or not _image_exists(tag):
            raise RuntimeError(
                f"docker build of {tag} failed (exit {code}); log {log_path}:\n{_tail(log_path)}"
            )
    _done.add(f"image:{tag}")
    return tag


def ensure_tiny_model_dir(
    cache_dir: Path = TINY_MODEL_CACHE, *, seed: int = 0, image: str | None = None
) -> Path:
    """The random tiny model, `<cache_dir>/tiny-seed<seed>` (what the `tiny_model_dir` fixture
    of tests/integration/conftest.py returns for the default cache_dir).

    With the server venv (scripts/setup-server-env.sh) it is made by `real_server.
    ensure_tiny_model`; without it, inside the CPU image (same moshi and torch, so the same
    files, and make_tiny_model.py accepts either's output), owned by the calling user.
    Mount it at the same absolute path in the container (`model_volume()`).
    """
    if server_python_available():
        return ensure_tiny_model(cache_dir, seed=seed)
    image = image or ensure_cpu_image()
    cache_dir = cache_dir.resolve()
    out_dir = cache_dir / f"tiny-seed{seed}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "-e",
        "HOME=/tmp",
        "-v",
        f"{cache_dir}:{cache_dir}",
        image,
        "python",
        f"/opt/{TINY_MOSHI_DIR.name}/{MAKE_TINY_MODEL.name}",
        str(out_dir),
        "--size",
        "tiny",
        "--seed",
        str(seed),
    ]
    with (cache_dir / ".lock").open("w") as lock:  # the lock real_server.ensure_tiny_model takes
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, log_path = _run_logged(cmd, f"tiny-model-seed{seed}.log", MODEL_TIMEOUT_S)
    if code != 0 or not (out_dir / "manifest.json").is_file():
        raise RuntimeError(
            f"make_tiny_model.py in {image} failed (exit {code}); log {log_path}:\n"
            f"{_tail(log_path)}"
        )
    return out_dir


def model_volume(model_dir: Path, mode: str = "ro") -> dict[str, dict[str, str]]:
    """docker-py `volumes=` entry that mounts the model folder at its own absolute path."""
    path = str(model_dir.resolve())
    return {path: {"bind": path, "mode": mode}}


def engine_network_mode() -> str:
    """`bridge` when the engine has its default bridge (publish ports on 127.0.0.1), else
    `host` (dockerd --bridge=none: published ports do nothing; share the host's network)."""
    result = subprocess.run(
        ["docker", "network", "inspect", "bridge"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return "bridge" if result.returncode == 0 else "host"


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(host: str, port: int) -> int | None:
    """HTTP status of `GET /api/chat` (400 = ready: aiohttp refuses the missing upgrade)."""
    conn = http.client.HTTPConnection(host, port, timeout=2.0)
    try:
        conn.request("GET", "/api/chat")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


@dataclass
class ContainerServer:
    container: Any  # docker.models.containers.Container
    port: int
    host: str = "127.0.0.1"
    startup_s: float = 0.0

    @property
    def url(self) -> str:
        """WebSocket base URL; the chat endpoint is `url + "/api/chat"`."""
        return f"ws://{self.host}:{self.port}"

    def logs(self) -> str:
        return bytes(self.container.logs()).decode("utf-8", errors="replace")

    def health(self) -> str | None:
        """Docker's HEALTHCHECK status: starting, healthy, unhealthy (None: no health check)."""
        self.container.reload()
        health = self.container.attrs.get("State", {}).get("Health")
        return None if health is None else str(health.get("Status"))


@contextlib.contextmanager
def cpu_server_container(
    model_dir: Path,
    image: str | None = None,
    *,
    client: Any | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
    extra_args: Sequence[str] = (),
    **run_kwargs: Any,
) -> Iterator[ContainerServer]:
    """The tiny upstream server in a container of the CPU image until the block exits; ready
    (GET /api/chat -> 400 from the host) when the block starts. The container is removed after.
    """
    import docker

    image = image or ensure_cpu_image()
    own_client = client is None
    client = client or docker.from_env(timeout=60)
    mode = engine_network_mode()
    kwargs: dict[str, Any] = {
        "command": [*tiny_model_flags(model_dir.resolve()), *extra_args],
        "detach": True,
        "volumes": model_volume(model_dir),
        "environment": {"HF_HUB_OFFLINE": "1"},
        "labels": {"fdb-pipeline.test": "docker_support"},
    }
    host_port = 0
    if mode == "host":
        host_port = _free_port()
        kwargs["network_mode"] = "host"
        kwargs["environment"].update(SERVER_HOST="127.0.0.1", SERVER_PORT=str(host_port))
    else:
        kwargs["ports"] = {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", None)}
    kwargs.update(run_kwargs)
    t0 = time.monotonic()
    container = client.containers.run(image, **kwargs)
    try:
        if mode != "host":
            container.reload()
            host_port = int(container.ports[f"{CONTAINER_PORT}/tcp"][0]["HostPort"])
        server = ContainerServer(container, host_port)
        deadline = t0 + startup_timeout_s
        while probe(server.host, host_port) != 400:
            container.reload()
            if container.status not in ("created", "running"):
                raise RuntimeError(
                    f"server container exited ({container.attrs['State'].get('ExitCode')}) "
                    f"before it was ready:\n{server.logs()[-LOG_TAIL_CHARS:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"server container not ready after {startup_timeout_s:.0f} s:\n"
                    f"{server.logs()[-LOG_TAIL_CHARS:]}"
                )
            time.sleep(0.1)
        server.startup_s = time.monotonic() - t0
        yield server
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)
        if own_client:
            client.close()


def docker_tiny_args(image: str, model: Path, run_dir: Path, hf_cache: Path) -> list[str]:
    """`bench` options that run the tiny real server inside the CPU image (the model folder is
    mounted at its own path: its config names the Mimi config by absolute path)."""
    return [
        "--runtime", "docker", "--image", image, "--gpus", "none", "--profile", "moshi",
        "--port", "0", "--run-dir", str(run_dir), "--hf-cache", str(hf_cache),
        "--mount", f"{model}:{model}",
        "--server-command", "python /opt/tiny_moshi/serve.py",
        *[f"--server-arg={flag}" for flag in model_file_flags(model)],
    ]  # fmt: skip
