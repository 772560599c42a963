"""Nothing we start listens beyond loopback: a server that asks for every interface, as the
PersonaPlex server does (`web.run_app(app, port=...)`, --host ignored), is held to 127.0.0.1
under the local runtime."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import psutil
import pytest

from pipeline.config import BenchSettings
from pipeline.server.base import ServerSpec
from pipeline.server.local import LocalProcessBackend, LocalRuntime
from pipeline.server.preflight import VoiceChoice, free_port
from pipeline.server.readiness import wait_ready

# aiohttp's run_app without a host, exactly like the PersonaPlex server
EVERY_INTERFACE_SERVER = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_get("/api/chat", lambda request: web.Response(status=400))
web.run_app(app, port=int(sys.argv[1]), print=None)
"""


def listening(pid: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.mark.parametrize("guarded", [True, False])
def test_a_server_asking_for_every_interface_listens_on_loopback_only(
    tmp_path: Path, guarded: bool
) -> None:
    port = free_port()
    view = LocalRuntime(BenchSettings()).view(tmp_path / "hf", VoiceChoice("NATF2.pt"))
    env = view.env if guarded else {}
    spec = ServerSpec([sys.executable, "-c", EVERY_INTERFACE_SERVER, str(port)], port, env=env)
    with LocalProcessBackend(spec, tmp_path) as backend:
        wait_ready(backend, timeout_s=30)
        assert backend.last_pid is not None
        addresses = listening(backend.last_pid)
    assert addresses  # it did listen
    if guarded:
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses
    else:  # the control: without the guard it listens everywhere, so the test above can fail
        assert not all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses
