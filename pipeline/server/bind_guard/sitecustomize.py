"""Loopback only, whatever the server binds.

fdb-pipeline puts this folder on the server's PYTHONPATH (local and Apptainer runtimes), so
Python imports it at start-up. With FDB_PIPELINE_BIND set, an asyncio server that would listen
on every interface (host None, "", 0.0.0.0 or ::) listens on that address instead. The
PersonaPlex server ignores --host (`web.run_app(app, port=...)`): without this it would listen
on every interface of an HPC node, where anyone could take its session lock or name a pickle
as voice_prompt. Stdlib only; nothing happens without the variable.
"""

import os

_BIND = os.environ.get("FDB_PIPELINE_BIND")
_EVERY_INTERFACE = (None, "", "0.0.0.0", "::")

if _BIND:
    import asyncio.base_events as _base_events

    _create_server = _base_events.BaseEventLoop.create_server

    async def _create_server_on_bind(self, protocol_factory, host=None, port=None, *a, **kw):  # type: ignore[no-untyped-def]
        if host in _EVERY_INTERFACE:
            host = _BIND
        return await _create_server(self, protocol_factory, host, port, *a, **kw)

    _base_events.BaseEventLoop.create_server = _create_server_on_bind  # type: ignore[method-assign]
