"""A local OpenAI-compatible endpoint (``POST /v1/chat/completions``) serving scripted replies,
recording every request it receives (body and Authorization header).

Replies: ``ok(text)`` a chat completion, ``status(code, message)`` an OpenAI-shaped error,
``HANG`` never answers (until the server stops). The script is consumed in order; when it is
empty, ``default`` answers.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    text: str = ""
    hang: bool = False


def ok(text: str) -> Reply:
    return Reply(200, text)


def status(code: int, message: str = "scripted error") -> Reply:
    return Reply(code, message)


HANG = Reply(hang=True)


@dataclass
class FakeJudge:
    url: str = ""
    script: deque[Reply] = field(default_factory=deque)
    default: Callable[[dict[str, Any]], Reply] = lambda body: ok('{"behaviour": ["C_RESPOND"]}')
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self.lock:
            self.received.append(body)
            self.headers.append(headers)
            return self.script.popleft() if self.script else self.default(body)


def completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _handler(fake: FakeJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = fake.next_reply(body, headers)
            if reply.hang:
                fake.release.wait(60)
                return
            if reply.status == 200:
                data = completion(body, reply.text)
            else:
                data = {"error": {"message": reply.text, "type": "scripted", "code": None}}
            raw = json.dumps(data).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


@contextmanager
def fake_judge() -> Iterator[FakeJudge]:
    fake = FakeJudge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
