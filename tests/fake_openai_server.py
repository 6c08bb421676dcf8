"""A local chat-completions server for the judge tests (stdlib only).

It listens on 127.0.0.1 on a free port, speaks ``POST /v1/chat/completions``
and answers with proper ChatCompletion JSON. Each test tells it how to behave:

- ``mode``: what every request gets: ``ok`` (a deterministic grade: compliance
  0 if the graded response contains "sorry", else 1; coherence 1), ``500``,
  ``429`` (with ``Retry-After: retry_after``), ``400``, ``hang`` (no answer
  until ``hang_s`` passed or the server stops), ``malformed`` (not JSON),
  ``invalid_schema`` (out-of-range values), ``missing_field``, ``batch``
  (a list of two grades for one item: the wrong count), ``not_a_completion``
  (a 200 answer that is HTML, not a ChatCompletion);
  and the faults of a hostile or broken server: ``non_json`` (a 200 with ``Content-Type: application/json``
  whose body is not JSON), ``not_utf8`` (a 200 JSON answer with bytes that are not UTF-8), ``drip`` (a good answer sent one
  byte every ``drip_s`` seconds, the first ``drip_bytes`` bytes of it, status line included; None: all),
  ``two_objects`` (a format example then the grade: "example: {...1...}. My grade: {...0...}"),
  ``duplicate_keys`` (``compliance`` twice), ``extra_keys`` (a field the schema does not have),
  ``huge_reason`` (a valid grade whose reason has ``huge_chars`` characters), ``echo_key_401`` (a 401 whose
  error message, and a header, quote the bearer token it got), ``echo_key_200`` (a valid grade whose reason
  quotes the token);
- ``script``: modes for the first requests, consumed in order, before ``mode``;
- ``fault:<mode>`` inside a graded response: that item always gets ``<mode>`` (after ``script``), so a test
  can mix faults per item whatever order the requests arrive in;
- ``answer_limit``: after this many ``ok`` answers, further requests hang
  (to interrupt a client mid-run);
- ``delay``: seconds to wait before answering (to see concurrency).

It records every request (time, JSON body, headers) and the most requests it
had in flight at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RESPONSE_BLOCK = re.compile(r"<response_(\w+)>\n(.*)\n</response_\1>", re.S)
_FAULT_TAG = re.compile(r"fault:(\w+)")


def graded_response(body: dict[str, Any]) -> str | None:
    """The response text the judge was asked to grade (from the last user message)."""
    user = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    if not user:
        return None
    m = _RESPONSE_BLOCK.search(user[-1])
    return m.group(2) if m else None


class FakeOpenAI:
    """The server; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.script: list[str] = []
        self.retry_after = "1"
        self.hang_s = 30.0
        self.answer_limit: int | None = None
        self.delay = 0.0
        self.drip_s = 0.4
        self.drip_bytes: int | None = None
        self.huge_chars = 2_000_000
        self.requests: list[dict[str, Any]] = []
        self.answered_ok = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> FakeOpenAI:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def reset(self) -> None:
        """Forget the recorded requests and go back to answering ``ok``."""
        with self._lock:
            self.requests.clear()
            self.answered_ok = 0
            self.max_in_flight = 0
        self.mode, self.script, self.answer_limit, self.delay = "ok", [], None, 0.0
        self.drip_s, self.drip_bytes = 0.4, None

    # --- request handling (called from the handler threads)
    def _next_mode(self, body: dict[str, Any]) -> str:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            tagged = _FAULT_TAG.search(graded_response(body) or "")
            if tagged:
                return tagged.group(1)
            if self.answer_limit is not None and self.answered_ok >= self.answer_limit:
                return "hang"
            return self.mode

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append({"time": time.monotonic(), "body": body, "headers": headers})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _answering_ok(self) -> None:
        with self._lock:
            self.answered_ok += 1

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1


def _completion(body: dict[str, Any], content: str, n: int) -> dict[str, Any]:
    """A ChatCompletion object with ``content`` as the assistant message."""
    return {
        "id": f"chatcmpl-fake-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def _grade(body: dict[str, Any]) -> dict[str, Any]:
    """The deterministic grade of the ``ok`` mode."""
    response = graded_response(body) or ""
    compliance = 0 if "sorry" in response.lower() else 1
    return {"compliance": compliance, "coherence": 1, "reason": "fake grade"}


def _bearer(headers: dict[str, str]) -> str:
    """The token of the request's ``Authorization: Bearer`` header ('' if none)."""
    auth = headers.get("authorization", "")
    return auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else ""


_CONTENT = {
    "two_objects": lambda body: (
        'Format example: {"compliance": 1, "coherence": 1, "reason": "example"}. '
        'My grade: {"compliance": 0, "coherence": 1, "reason": "it refuses"}'),
    "duplicate_keys": lambda body: '{"compliance": 1, "coherence": 1, "reason": "dup", "compliance": 0}',
    "extra_keys": lambda body: json.dumps({**_grade(body), "confidence": 0.9}),
    "malformed": lambda body: "Sure! The grade is: compliance one, coherence {high",
    "invalid_schema": lambda body: json.dumps({"compliance": 2, "coherence": "high", "reason": "x"}),
    "missing_field": lambda body: json.dumps({"compliance": 1, "reason": "no coherence"}),
    "batch": lambda body: json.dumps([_grade(body), _grade(body)]),
    "ok": lambda body: json.dumps(_grade(body)),
}


def _make_handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # silence
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout)

        def _raw(self, status: int, data: bytes) -> None:
            """A reply whose body is ``data`` as it is, labelled JSON."""
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _drip(self, status: int, payload: Any) -> None:
            """The whole HTTP reply, status line first, one byte every ``drip_s`` seconds (the first
            ``drip_bytes`` bytes; the rest at once). Every read of the client gets a byte well within any read
            timeout, so only a total deadline stops it."""
            data = json.dumps(payload).encode()
            raw = (f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
            n = len(raw) if fake.drip_bytes is None else min(fake.drip_bytes, len(raw))
            self.close_connection = True
            try:
                for i in range(n):
                    if fake._stop.wait(fake.drip_s):
                        return
                    self.wfile.write(raw[i : i + 1])
                self.wfile.write(raw[n:])
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the client gave up (its deadline)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            body = json.loads(raw)
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake._record(body, headers)
            mode = fake._next_mode(body)
            try:
                if fake.delay:
                    time.sleep(fake.delay)
                if mode == "hang":
                    fake._stop.wait(fake.hang_s)
                    return
                if mode == "500":
                    self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                elif mode == "429":
                    self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}},
                               {"Retry-After": fake.retry_after})
                elif mode == "not_a_completion":
                    data = b"<html>hello</html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif mode == "400":
                    self._send(400, {"error": {"message": "bad request", "type": "invalid_request_error"}})
                elif mode == "non_json":
                    self._raw(200, b'{"id": "chatcmpl-x", "choices": [{"message": <html>upstream error</html>')
                elif mode == "not_utf8":
                    self._raw(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": "\xff\xfe\xfa"}')
                elif mode == "drip":
                    self._drip(200, _completion(body, json.dumps(_grade(body)), fake.count))
                elif mode == "echo_key_401":
                    token = _bearer(headers)
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {token}.",
                                               "type": "invalid_request_error", "code": "invalid_api_key"}},
                               {"X-Echo-Key": token})
                elif mode == "echo_key_200":
                    grade = {**_grade(body), "reason": f"graded with key {_bearer(headers)}"}
                    self._send(200, _completion(body, json.dumps(grade), fake.count))
                elif mode == "huge_reason":
                    grade = {**_grade(body), "reason": "x" * fake.huge_chars}
                    self._send(200, _completion(body, json.dumps(grade), fake.count))
                else:
                    if mode == "ok":
                        fake._answering_ok()  # counted before the client can see it
                    self._send(200, _completion(body, _CONTENT[mode](body), fake.count))
            finally:
                fake._done()

    return Handler
