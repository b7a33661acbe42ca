#!/usr/bin/env python3
"""Backend of the sockway chat example: AWS Lambda-style handlers behind a small HTTP server.

sockway POSTs every WebSocket event (the AWS Lambda-proxy event JSON) to `/events`. This
server hands the event to the handler for its route key and answers with the handler's
result. The handlers have the exact signature and return shape of AWS Lambda handlers,
so the same functions run unchanged behind AWS API Gateway:

    $connect     on_connect      remember the connection id
    $disconnect  on_disconnect   forget it
    sendmessage  send_message    POST `data` to every connection through @connections
    $default     default         tell the client how to talk to this app

`GET /` serves the chat page (`index.html`) with the gateway's WebSocket URL filled in, and
`GET /sockway-resume.js` the resuming client it uses (`clients/js/sockway-resume.js`).
Standard library only.

When `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set (as they are in a Lambda
function), `@connections` calls are signed with them (SigV4, service `execute-api`, region
`AWS_REGION`, default us-east-1), as boto3 would sign them: a gateway with
`[[management.credentials]]` (docker-compose.yml's) requires that. Without them calls go
unsigned, which a gateway without credentials accepts from its own machine.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import html
import json
import os
import pathlib
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Set from `--callback-url`. On AWS Lambda this would be an environment variable, or the
# URL would be built from the event, which is what `callback_url` falls back to.
CALLBACK_URL: str | None = None


class ConnectionStore:
    """The ids of the open connections, shared by the request threads.

    A plain lock is enough: every operation is a few lines of set manipulation and no
    lock is held while talking to the network.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()

    def add(self, connection_id: str) -> None:
        with self._lock:
            self._ids.add(connection_id)

    def discard(self, connection_id: str) -> None:
        with self._lock:
            self._ids.discard(connection_id)

    def snapshot(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)


CONNECTIONS = ConnectionStore()


# --- Lambda handlers -----------------------------------------------------------------


def on_connect(event, context):
    CONNECTIONS.add(event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": "Connected."}


def on_disconnect(event, context):
    CONNECTIONS.discard(event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": "Disconnected."}


def send_message(event, context):
    try:
        data = json.loads(event["body"])["data"]
    except (KeyError, TypeError, ValueError):
        return {"statusCode": 400, "body": 'Expected {"action":"sendmessage","data":"..."}'}
    if not isinstance(data, str):
        data = json.dumps(data)
    endpoint = callback_url(event)
    for connection_id in CONNECTIONS.snapshot():
        try:
            post_to_connection(endpoint, connection_id, data.encode("utf-8"))
        except urllib.error.HTTPError as error:
            if error.code == HTTPStatus.GONE:
                # The client went away before its $disconnect reached us.
                CONNECTIONS.discard(connection_id)
            else:
                log(f"post to {connection_id} failed: HTTP {error.code}")
        except urllib.error.URLError as error:
            log(f"post to {connection_id} failed: {error.reason}")
            return {"statusCode": 500, "body": "Could not reach the @connections API."}
    return {"statusCode": 200, "body": "Data sent."}


def default(event, context):
    return {
        "statusCode": 200,
        "body": 'Unknown action. Send {"action":"sendmessage","data":"hello"}.',
    }


HANDLERS = {
    "$connect": on_connect,
    "$disconnect": on_disconnect,
    "sendmessage": send_message,
    "$default": default,
}


# --- @connections --------------------------------------------------------------------


def callback_url(event) -> str:
    """The `@connections` endpoint: `--callback-url`, else built from the event as AWS documents."""
    if CALLBACK_URL:
        return CALLBACK_URL.rstrip("/")
    request_context = event["requestContext"]
    domain_name = request_context["domainName"]
    stage = request_context.get("stage", "")
    scheme = "https" if domain_name.endswith(".amazonaws.com") else "http"
    return f"{scheme}://{domain_name}/{stage}" if stage else f"{scheme}://{domain_name}"


def post_to_connection(endpoint: str, connection_id: str, data: bytes) -> None:
    """POST `data` to one connection; raises `urllib.error.HTTPError` on 4xx/5xx."""
    url = f"{endpoint}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    access_key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret_access_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access_key_id and secret_access_key:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        headers.update(sigv4_headers("POST", url, data, access_key_id, secret_access_key,
                                     region, os.environ.get("AWS_SESSION_TOKEN")))
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def sigv4_headers(method: str, url: str, body: bytes, access_key_id: str, secret_access_key: str,
                  region: str, session_token: str | None = None,
                  now: datetime.datetime | None = None) -> dict[str, str]:
    """The headers that sign a request with AWS Signature Version 4 for API Gateway
    (`execute-api`): `X-Amz-Date`, `Authorization` and, with a session token,
    `X-Amz-Security-Token`. The URL has no query string; the request must send `Host` as the
    URL's authority (urllib does)."""
    parts = urllib.parse.urlsplit(url)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/execute-api/aws4_request"
    signed = {"host": parts.netloc, "x-amz-date": amz_date}
    if session_token:
        signed["x-amz-security-token"] = session_token
    names = ";".join(sorted(signed))
    canonical_request = "\n".join([
        method,
        # Every service but S3 encodes the (already encoded) path once more: @ is %40 and
        # an id's %3D is %253D.
        urllib.parse.quote(parts.path or "/", safe="/~"),
        parts.query,
        "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
        names,
        hashlib.sha256(body).hexdigest(),
    ])
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = f"AWS4{secret_access_key}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers = {
        "X-Amz-Date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, "
                         f"SignedHeaders={names}, Signature={signature}",
    }
    if session_token:
        headers["X-Amz-Security-Token"] = session_token
    return headers


# --- HTTP server ---------------------------------------------------------------------


class LambdaContext:
    """The few attributes of the AWS Lambda context object that handlers commonly read."""

    function_name = "sockway-chat-backend"

    def __init__(self, event) -> None:
        self.aws_request_id = event.get("requestContext", {}).get("requestId", "")

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


class Handler(BaseHTTPRequestHandler):
    """`POST /events` runs a Lambda handler; `GET /` serves the chat page."""

    server_version = "sockway-chat-backend"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/events":
            self.send_text(HTTPStatus.NOT_FOUND, "not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = json.loads(self.rfile.read(length))
            route_key = event["requestContext"]["routeKey"]
        except (KeyError, TypeError, ValueError):
            self.send_text(HTTPStatus.BAD_REQUEST, "expected an API Gateway WebSocket event\n")
            return
        handler = HANDLERS.get(route_key, default)
        result = handler(event, LambdaContext(event))
        self.send_bytes(HTTPStatus.OK, "application/json", json.dumps(result).encode())

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/sockway-resume.js" and self.server.resume_client.is_file():
            script = self.server.resume_client.read_bytes()
            self.send_bytes(HTTPStatus.OK, "text/javascript; charset=utf-8", script)
            return
        if path not in ("/", "/index.html"):
            self.send_text(HTTPStatus.NOT_FOUND, "not found\n")
            return
        page = self.server.page.encode("utf-8")
        self.send_bytes(HTTPStatus.OK, "text/html; charset=utf-8", page)

    def send_text(self, status: HTTPStatus, text: str) -> None:
        self.send_bytes(status, "text/plain; charset=utf-8", text.encode())

    def send_bytes(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log(f"{self.address_string()} {format % args}")


#: The resuming WebSocket client the page loads: clients/js in the repository.
REPOSITORY_RESUME_CLIENT = (
    pathlib.Path(__file__).resolve().parent.parent.parent / "clients" / "js" / "sockway-resume.js"
)


def log(message: str) -> None:
    print(f"backend: {message}", file=sys.stderr, flush=True)


def render_page(ws_url: str) -> str:
    template = (pathlib.Path(__file__).with_name("index.html")).read_text(encoding="utf-8")
    return template.replace("__SOCKWAY_WS_URL__", html.escape(ws_url, quote=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port to bind, 0 for any (default 8081)")
    parser.add_argument(
        "--callback-url",
        help="the @connections endpoint, e.g. http://127.0.0.1:8080/dev "
        "(default: built from each event's domainName and stage)",
    )
    parser.add_argument(
        "--ws-url",
        default="ws://127.0.0.1:8080/dev",
        help="the gateway URL the chat page connects to (default ws://127.0.0.1:8080/dev)",
    )
    parser.add_argument(
        "--resume-client",
        type=pathlib.Path,
        default=REPOSITORY_RESUME_CLIENT,
        help="sockway-resume.js, served at /sockway-resume.js (default: the repository's "
        "clients/js/sockway-resume.js)",
    )
    args = parser.parse_args(argv)

    global CALLBACK_URL
    CALLBACK_URL = args.callback_url

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.page = render_page(args.ws_url)
    server.resume_client = args.resume_client
    host, port = server.server_address[:2]
    print(f"chat backend listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
