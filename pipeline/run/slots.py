"""A server as the batch sees it: an address, a session counter, a hook run before each session
that may restart a dead server, and (for servers this tool started) a forced restart for a
server that is alive but failing every sample."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class ServerGone(Exception):
    """The server died and may not be restarted again: its worker stops and hands its sample to
    the others. Never a sample's fault, so never a sample's record."""


@dataclass
class ServerSlot:
    """One server process the client talks to; counts the sessions it has served us."""

    url: str
    name: str = "server0"
    sessions: int = 0
    # called before every session: restarts a dead server, or raises ServerGone
    ensure_ready: Callable[[], Awaitable[None]] | None = None
    # restarts the server although it runs (the breaker), or raises ServerGone; None: the
    # server is not ours to restart
    force_restart: Callable[[str], Awaitable[None]] | None = None

    async def ready(self) -> None:
        if self.ensure_ready is not None:
            await self.ensure_ready()
