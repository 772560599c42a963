"""The server as a plain child process (inside the Apptainer image, or for CPU runs).

It runs in its own process group, so stopping it takes every worker it spawned too; its output
goes straight to the run's log file. Its environment carries the run id, so `cleanup` finds the
processes of a run that crashed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import psutil

from pipeline.server.base import (
    RUN_ID_ENV,
    PreflightError,
    ServerBackend,
    ServerError,
    ServerSpec,
    TeardownError,
    log,
)
from pipeline.server.preflight import GpuFacts, VoiceChoice, require_nvidia_smi
from pipeline.server.runtime import (
    BIND_GUARD_DIR,
    LOOPBACK,
    Runtime,
    ServerView,
    loopback_env,
)


def visible_device(gpu: str, parent_env: Mapping[str, str]) -> str:
    """The device to show a server. Under Slurm (or any launcher that already set
    CUDA_VISIBLE_DEVICES) our index counts within the devices we were given, never beyond."""
    given = [d for d in parent_env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not given:
        return gpu
    if gpu.isdigit() and int(gpu) < len(given):
        return given[int(gpu)].strip()
    raise PreflightError(
        f"GPU {gpu} is not among the {len(given)} device(s) this job was given"
        f" (CUDA_VISIBLE_DEVICES={','.join(given)}); use --gpus with indices 0..{len(given) - 1}"
    )


class LocalProcessBackend(ServerBackend):
    runtime = "local"

    def __init__(self, spec: ServerSpec, log_dir: Path) -> None:
        super().__init__(spec, log_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_pid: int | None = None
        self._log_fh: IO[bytes] | None = None

    def argv(self) -> list[str]:
        """The full command line to launch (the Apptainer backend wraps it)."""
        return list(self.spec.command)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec.env)
        if self.spec.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible_device(self.spec.gpu, os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log_fh = self.log_path.open("ab")
        self._log_fh.write(f"=== starting {self.spec.name} ===\n".encode())
        self._log_fh.flush()
        argv = self.argv()
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env=self.child_env(),
                start_new_session=True,  # own process group: killed as a whole
            )
        except OSError as exc:
            self._log_fh.close()
            self._log_fh = None
            raise ServerError(
                f"cannot run the server command {argv[0]!r} ({exc}); check --server-command"
            ) from None
        self.last_pid = self.proc.pid
        log.info("%s: started pid %d on port %d", self.spec.name, self.proc.pid, self.port)

    def exit_code(self) -> int | None:
        if self.proc is None:
            return -1
        return self.proc.poll()

    def listener_is_ours(self) -> bool:
        """A process of our server's group, or a descendant of it, listens on the port
        (Apptainer shares the host's network and PIDs, so this holds for its servers too)."""
        if self.proc is None:
            return False
        try:
            conns = psutil.net_connections(kind="inet")
        except psutil.Error:  # cannot tell: trust the port we reserved
            return True
        owners = {
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == self.port
        }
        ours = set(_live_members(self.proc.pid)) | {self.proc.pid}
        with contextlib.suppress(psutil.Error):  # a runtime may start a session of its own
            ours |= {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        return bool(owners & ours)

    def logs(self, tail: int | None = None) -> str:
        try:
            with self.log_path.open("r", encoding="utf-8", errors="replace") as fh:
                lines = deque(fh, maxlen=tail) if tail else list(fh)
        except FileNotFoundError:
            return ""
        return "".join(lines)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float = 10.0) -> None:
        proc = self.proc
        try:
            if proc is not None:
                if proc.poll() is None:
                    self._signal_group(signal.SIGTERM)
                    try:
                        proc.wait(timeout=grace_s)
                    except subprocess.TimeoutExpired:
                        log.warning(
                            "%s: still running %.0f s after SIGTERM; killing",
                            self.spec.name,
                            grace_s,
                        )
                self._signal_group(signal.SIGKILL)  # the leader if it lingers, stray children
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
                if not self._wait_group_gone(proc.pid, 5.0):
                    raise TeardownError(
                        f"{self.spec.name}: process group {proc.pid} is still running after"
                        " SIGKILL",
                        f"kill -9 -{proc.pid}",
                    )
        finally:
            self.proc = None
            if self._log_fh is not None:
                self._log_fh.close()
                self._log_fh = None

    @staticmethod
    def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
        """Killed processes take a moment to go; a restart must not race them for the port.
        False if the group is still there after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while _live_members(pgid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        doc["pid"] = self.last_pid
        return doc


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (a zombie holds no port, no GPU; where
    PID 1 does not reap, zombies linger and must not count as left behind)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def find_processes(run_id: str | None = None) -> list[tuple[int, str]]:
    """(pid, run id) of live processes started by this tool (Linux /proc)."""
    found = []
    key = f"{RUN_ID_ENV}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(key):
                rid = var[len(key) :].decode(errors="replace")
                if run_id is None or rid == run_id:
                    found.append((int(entry.name), rid))
    return found


class LocalRuntime(Runtime):
    """The server as a child process of this tool, with this machine's paths."""

    name = "local"

    def preflight(self, first_gpu: str | None) -> GpuFacts | None:
        facts = require_nvidia_smi(self.name) if first_gpu is not None else None
        if not self.settings.server_command and importlib.util.find_spec("moshi") is None:
            raise PreflightError(
                f"the moshi server package is not installed in {sys.executable}: install it"
                " (PersonaPlex: pip install 'moshi @ git+https://github.com/NVIDIA/personaplex"
                "#subdirectory=moshi'), run inside the project's image, or pass"
                " --server-command"
            )
        return facts

    def view(self, hf_cache: Path, voice: VoiceChoice) -> ServerView:
        voice_dir = str(voice.folder) if voice.folder else None
        env = loopback_env(str(BIND_GUARD_DIR), os.environ.get("PYTHONPATH"))
        return ServerView(sys.executable, str(hf_cache), LOOPBACK, voice_dir=voice_dir, env=env)

    def backend(self, spec: ServerSpec, log_dir: Path) -> ServerBackend:
        return LocalProcessBackend(spec, log_dir)

    @classmethod
    def remove_leftovers(cls, run_id: str | None) -> list[str]:
        removed = []
        for pid, rid in find_processes(run_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
                removed.append(f"process {pid} (run {rid})")
        return removed
