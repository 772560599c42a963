"""Is a moshi-style chat server there? ``GET /api/chat`` without a WebSocket upgrade: such a
server (aiohttp) answers HTTP 400 at once, touching neither its session lock nor its model. Used
before a batch against a given server, and while waiting for a started one."""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from pipeline.stream.protocol import CHAT_PATH, DEFAULT_PORT

CHAT_SERVER_STATUS = 400  # the chat route refuses a request without the WebSocket upgrade


class ProbeError(OSError):
    """Nothing answered over HTTP (refused, timed out, not HTTP)."""


def chat_route_status(
    host: str, port: int, timeout_s: float, tls: ssl.SSLContext | None = None
) -> int:
    """The HTTP status of ``GET /api/chat``; ProbeError when nothing answers."""
    conn = (
        http.client.HTTPSConnection(host, port, timeout=timeout_s, context=tls)
        if tls is not None
        else http.client.HTTPConnection(host, port, timeout=timeout_s)
    )
    try:
        conn.request("GET", CHAT_PATH)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise ProbeError(str(exc) or type(exc).__name__) from None
    finally:
        conn.close()


def probe_chat_server(url: str, timeout_s: float, tls: ssl.SSLContext | None = None) -> str | None:
    """None when ``url`` (a ws:// or wss:// chat URL) is a moshi-style chat server; otherwise
    what is wrong, in words that name the address."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or DEFAULT_PORT
    address = f"{host}:{port}"
    try:
        status = chat_route_status(host, port, timeout_s, tls)
    except ProbeError as exc:
        return f"nothing answers at {address} within {timeout_s:.0f} s ({exc})"
    if status != CHAT_SERVER_STATUS:
        return (
            f"{address} answers HTTP {status} on {CHAT_PATH}, not like a moshi or PersonaPlex"
            f" chat server (HTTP {CHAT_SERVER_STATUS} without a WebSocket upgrade)"
        )
    return None
