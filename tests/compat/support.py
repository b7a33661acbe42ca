"""Test harness pieces of the compatibility suite: the mock backend, the gateway process, waits.

Everything here waits for an event under a deadline and fails with a message that says what
did not happen; nothing sleeps. Every server or process started here is stopped by the
fixture that started it (see conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import boto3
import botocore.config
import websockets
from websockets.asyncio.client import connect

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Default deadline, in seconds, for anything the suite waits for.
TIMEOUT = 10.0

#: User-Agent the WebSocket clients send, so identity.userAgent can be checked.
USER_AGENT = "sockway-compat-tests/1"

#: How much of a non-event request body failure messages show.
PREVIEW_BYTES = 80

#: AWS connection, request and message ids: 15 base64url characters and one `=`.
AWS_ID = re.compile(r"[A-Za-z0-9_-]{15}=")

#: `requestTime` in CLF form, always UTC: `dd/Mon/yyyy:HH:MM:SS +0000`.
CLF_TIME = re.compile(
    r"\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} \+0000"
)


def sockway_bin() -> Path:
    """The binary under test: `$SOCKWAY_BIN` (relative to the repo root) or target/debug/sockway."""
    path = Path(os.environ.get("SOCKWAY_BIN", "target/debug/sockway"))
    return path if path.is_absolute() else REPO_ROOT / path


# --- mock backend --------------------------------------------------------------------


@dataclass
class Reply:
    """What the mock backend answers: an HTTP status, headers and a body."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def lambda_result(status_code: int = 200, body: str | None = None, headers: dict | None = None) -> Reply:
    """A Lambda-proxy result (`{"statusCode": ..., "body": ...}`) sent as an HTTP 200 JSON reply."""
    result: dict[str, Any] = {"statusCode": status_code}
    if body is not None:
        result["body"] = body
    if headers:
        result["headers"] = headers
    return Reply(200, json.dumps(result).encode(), {"Content-Type": "application/json"})


@dataclass
class BackendRequest:
    """One request the gateway made to the mock backend."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def event(self) -> dict:
        """The Lambda-proxy event JSON (fails the test if the body is not a JSON object)."""
        event = json.loads(self.body)
        assert isinstance(event, dict), f"event is not a JSON object: {self.body!r}"
        return event

    def event_or_none(self) -> dict | None:
        try:
            event = json.loads(self.body)
        except ValueError:
            return None
        return event if isinstance(event, dict) else None


def echo_responder(request: BackendRequest) -> Reply:
    """Default behaviour: accept every event; MESSAGE events get their own body back."""
    event = request.event_or_none()
    if event is None:
        return Reply(400, b"not an event")
    if "body" in event:
        return lambda_result(200, event["body"])
    return lambda_result(200)


def event_matches(event: dict | None, event_type: str | None, route_key: str | None,
                  connection_id: str | None) -> bool:
    if event is None:
        return False
    context = event.get("requestContext") or {}
    return (
        (event_type is None or context.get("eventType") == event_type)
        and (route_key is None or context.get("routeKey") == route_key)
        and (connection_id is None or context.get("connectionId") == connection_id)
    )


class MockBackend:
    """An HTTP server on 127.0.0.1:0 that records every request and answers via `responder`.

    Tests replace `responder` (a function from `BackendRequest` to `Reply`) to script answers.
    """

    def __init__(self) -> None:
        self.responder: Callable[[BackendRequest], Reply] = echo_responder
        self._requests: list[BackendRequest] = []
        self._claimed: set[int] = set()
        self._changed = threading.Condition()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.handle_any()

            def do_GET(self) -> None:
                self.handle_any()

            def handle_any(self) -> None:
                request = BackendRequest(self.command, self.path, list(self.headers.items()),
                                         self.read_body())
                backend._record(request)
                try:
                    reply = backend.responder(request)
                except Exception as error:  # A broken responder must show up, not hang.
                    reply = Reply(500, f"responder failed: {error!r}".encode())
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps `close` (which waits for the serve loop) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="mock-backend", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/events"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)

    def _record(self, request: BackendRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def requests(self) -> list[BackendRequest]:
        with self._changed:
            return list(self._requests)

    def wait_request(self, predicate: Callable[[BackendRequest], bool], what: str,
                     timeout: float = TIMEOUT) -> BackendRequest:
        """The first request not returned before that matches `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index, request in enumerate(self._requests):
                    if index not in self._claimed and predicate(request):
                        self._claimed.add(index)
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [summarize(r) for r in self._requests]
                    raise AssertionError(f"backend never received {what} within {timeout}s; "
                                         f"it received: {seen}")
                self._changed.wait(remaining)

    def wait_event_request(self, event_type: str | None = None, route_key: str | None = None,
                           connection_id: str | None = None,
                           timeout: float = TIMEOUT) -> BackendRequest:
        what = f"an event (eventType={event_type}, routeKey={route_key}, connectionId={connection_id})"
        return self.wait_request(
            lambda r: event_matches(r.event_or_none(), event_type, route_key, connection_id),
            what, timeout)

    def wait_event(self, event_type: str | None = None, route_key: str | None = None,
                   connection_id: str | None = None, timeout: float = TIMEOUT) -> dict:
        return self.wait_event_request(event_type, route_key, connection_id, timeout).event

    async def event(self, event_type: str | None = None, route_key: str | None = None,
                    connection_id: str | None = None, timeout: float = TIMEOUT) -> dict:
        """`wait_event` for async tests: waits in a thread so the WebSocket clients keep running."""
        return await asyncio.to_thread(self.wait_event, event_type, route_key, connection_id,
                                       timeout)

    def events(self, event_type: str | None = None, connection_id: str | None = None) -> list[dict]:
        """Every event received so far (claimed or not) matching the filters."""
        found = []
        for request in self.requests():
            event = request.event_or_none()
            if event_matches(event, event_type, None, connection_id):
                found.append(event)
        return found


def summarize(request: BackendRequest) -> str:
    """One line describing a request, for failure messages."""
    event = request.event_or_none()
    if event is None:
        return f"{request.method} {request.path} {request.body[:PREVIEW_BYTES]!r}"
    context = event.get("requestContext") or {}
    return f"{context.get('eventType')} {context.get('routeKey')} {context.get('connectionId')}"


# --- config --------------------------------------------------------------------------


def render_config(backend_uri: str, *, stage: str = "dev", default_route: bool = True,
                  route_response: bool = True, limits: dict[str, Any] | None = None,
                  gateway_extra: str = "", extra: str = "") -> str:
    """A sockway config whose lifecycle, `sendmessage` and `$default` routes go to `backend_uri`."""
    lines = [
        "[gateway]",
        'listen = "127.0.0.1:0"',
        f"stage = {json.dumps(stage)}",
        'api_id = "a1b2c3d4e5"',
        'region = "us-east-1"',
        'route_selection_expression = "$request.body.action"',
        gateway_extra,
        "",
    ]
    if limits:
        lines.append("[limits]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in limits.items()]
        lines.append("")
    lines += [
        '[routes."$connect"]', 'integration = "backend"', "",
        '[routes."$disconnect"]', 'integration = "backend"', "",
        "[routes.sendmessage]", 'integration = "backend"', "",
    ]
    if default_route:
        lines += ['[routes."$default"]', 'integration = "backend"',
                  f"route_response = {'true' if route_response else 'false'}", ""]
    lines += ["[integrations.backend]", 'type = "http"', f"uri = {json.dumps(backend_uri)}", ""]
    lines.append(extra)
    return "\n".join(lines)


# --- gateway process -----------------------------------------------------------------


LISTENING = re.compile(r"^sockway listening on (wss?://(\S+?)(/\S*)?)\s*$")
MANAGEMENT_LISTENING = re.compile(r"^sockway management listening on (http://\S+?)/?\s*$")


class ChildProcess:
    """A process started by a test, with its stdout collected line by line and stderr in a file.

    A reader thread collects stdout lines; `wait_line` waits for one under a deadline.
    `stop` (called by the fixture that started it) sends SIGTERM, then SIGKILL on timeout.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
            cwd=REPO_ROOT, text=True, bufsize=1, env=env,
        )
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stdout, name=f"{name}-stdout",
                                        daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_line(self, pattern: re.Pattern, timeout: float = TIMEOUT) -> re.Match:
        """The first stdout line (already printed or still to come) matching `pattern`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    match = pattern.match(line)
                    if match:
                        return match
                if self._eof:
                    self.process.wait(TIMEOUT)
                    raise AssertionError(
                        f"{self.name} exited with {self.process.returncode} before printing a "
                        f"line matching {pattern.pattern!r}; stdout={self._lines}\n"
                        f"{self.log_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.name} printed no line matching {pattern.pattern!r} within "
                        f"{timeout}s; stdout={self._lines}\n{self.log_tail()}")
                self._changed.wait(remaining)

    def log_tail(self, limit: int = 4000) -> str:
        self._log.flush()
        text = self.log_path.read_bytes().decode("utf-8", "replace")
        return f"--- {self.name} stderr (last {limit} chars) ---\n{text[-limit:]}"

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout}s\n"
                                 f"{self.log_tail()}") from None

    def shutdown(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM and wait for exit; returns the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it does not exit in time. Never raises."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class GatewayProcess(ChildProcess):
    """`sockway serve --config PATH --listen 127.0.0.1:0`; `wait_ready` reads the bound address."""

    def __init__(self, config_path: Path, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        binary = sockway_bin()
        if not binary.is_file():
            raise AssertionError(f"sockway binary not found at {binary} "
                                 "(build it with `cargo build -p sockway` or set SOCKWAY_BIN)")
        argv = [str(binary), "serve", "--config", str(config_path), "--listen", "127.0.0.1:0",
                *extra_args]
        super().__init__("sockway", argv, log_path)
        #: e.g. ws://127.0.0.1:PORT/dev
        self.ws_url = ""
        #: e.g. 127.0.0.1:PORT
        self.addr = ""
        #: The stage path as printed: "/dev", or "" for the empty stage.
        self.stage_path = ""
        #: The @connections endpoint on the shared listener, for boto3's endpoint_url.
        self.management_url = ""

    def wait_ready(self, timeout: float = TIMEOUT) -> None:
        """Waits for the `sockway listening on ws://...` line and records the bound address."""
        match = self.wait_line(LISTENING, timeout)
        self.ws_url = match.group(1).rstrip("/")
        self.addr = match.group(2)
        self.stage_path = (match.group(3) or "").rstrip("/")
        scheme = "https" if self.ws_url.startswith("wss://") else "http"
        self.management_url = f"{scheme}://{self.addr}{self.stage_path}"


# --- clients --------------------------------------------------------------------------


def management_client(endpoint_url: str, verify: str | bool | None = None):
    """boto3's ApiGatewayManagementApi client, unchanged, pointed at sockway (`verify`: the CA
    bundle for an https endpoint)."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        verify=verify,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=botocore.config.Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
        ),
    )


# --- WebSocket client helpers --------------------------------------------------------


def ws_connect(url: str, **kwargs: Any):
    """`websockets` client with the suite's defaults: no keepalive pings, a known User-Agent."""
    options: dict[str, Any] = {
        "open_timeout": TIMEOUT,
        "close_timeout": TIMEOUT,
        "ping_interval": None,
        "user_agent_header": USER_AGENT,
    }
    options.update(kwargs)
    return connect(url, **options)


async def recv(ws, what: str = "a message", timeout: float = TIMEOUT) -> str | bytes:
    try:
        return await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        raise AssertionError(f"client received no {what} within {timeout}s") from None


async def wait_closed(ws, timeout: float = TIMEOUT) -> tuple[int | None, list]:
    """Reads until the connection closes; returns the close code received and any messages read."""
    received = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection was not closed within {timeout}s; "
                                     f"messages received: {received}")
            received.append(await asyncio.wait_for(ws.recv(), remaining))
    except TimeoutError:
        raise AssertionError(f"connection was not closed within {timeout}s; "
                             f"messages received: {received}") from None
    except websockets.ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), received


def run(coroutine, timeout: float = 60.0):
    """Runs an async test body with an overall deadline."""
    async def bounded():
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())
