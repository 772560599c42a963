"""Is the server ready? A TCP connect plus ``GET /api/chat`` answered with HTTP 400 (aiohttp's
answer to a WebSocket route without an Upgrade header): it touches neither the session lock nor
the model. Every poll first checks the server is still alive, so a crash is seen at once; an
answer counts only when what listens on the port is our own server, never another job's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from pipeline.server.base import ServerBackend, ServerExited, ServerTimeout, log
from pipeline.stream.probe import CHAT_SERVER_STATUS, ProbeError, chat_route_status


def probe(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """One readiness probe: True when the chat route answers as a chat server does."""
    try:
        return chat_route_status(host, port, timeout_s) == CHAT_SERVER_STATUS
    except ProbeError:
        return False


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_ready(
    backend: ServerBackend,
    timeout_s: float,
    poll_s: float = 0.1,
    on_poll: Callable[[float], None] | None = None,
    log_tail: int = 40,
    cancel: threading.Event | None = None,
) -> float:
    """Block until ``backend`` answers the probe; return the seconds waited.

    Raises ServerExited as soon as the server has exited, ServerTimeout after ``timeout_s``;
    both carry the last lines of its log.
    """
    t0 = time.monotonic()
    foreign_seen = False
    while cancel is None or not cancel.is_set():
        code = backend.exit_code()
        if code is not None:
            raise ServerExited(
                f"{backend.spec.name} exited with code {code} during start-up",
                backend.logs(tail=log_tail),
            )
        if probe(backend.host, backend.port):
            if backend.listener_is_ours():
                return time.monotonic() - t0
            if not foreign_seen:
                foreign_seen = True
                log.warning(
                    "%s: port %d answers, but not from our server (another job's?);"
                    " waiting for ours",
                    backend.spec.name,
                    backend.port,
                )
        waited = time.monotonic() - t0
        if waited > timeout_s:
            state = "open but not answering" if port_open(backend.host, backend.port) else "closed"
            raise ServerTimeout(
                f"{backend.spec.name} not ready after {timeout_s:.0f} s (port {backend.port}"
                f" {state});"
                " raise --startup-timeout if the model is still downloading or loading",
                backend.logs(tail=log_tail),
            )
        if on_poll is not None:
            on_poll(waited)
        time.sleep(poll_s)
    raise ServerTimeout(f"{backend.spec.name}: waiting for readiness was cancelled")
