"""The echo backend of the Autobahn run: an `http` integration that answers every MESSAGE
event with a Lambda-proxy result whose body is the event's body, unchanged.

Text messages come back as text; binary messages arrive base64-encoded with
`isBase64Encoded: true` and go back the same way, so the gateway sends them as binary frames
with the same bytes. Any other event (`$connect`, `$disconnect`) gets a bare 200.

    python3 echo_backend.py

binds 127.0.0.1 on a free port and prints `echo backend listening on http://127.0.0.1:PORT`
once it accepts requests. Standard library only.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    """Answers every POSTed Lambda-proxy event with the echo of its body."""

    # Keep-alive: the gateway pools its connections to the backend.
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes; with Nagle's algorithm the body waits for the
    # gateway's delayed ACK of the head (about 40 ms a message: 9.7.x/9.8.x send 1000 each).
    disable_nagle_algorithm = True

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        event = json.loads(self.rfile.read(length))
        result: dict[str, object] = {"statusCode": 200}
        if event.get("requestContext", {}).get("eventType") == "MESSAGE":
            result["body"] = event.get("body", "")
            result["isBase64Encoded"] = bool(event.get("isBase64Encoded", False))
        reply = json.dumps(result).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # One line per request would drown the run's output (9.7.x sends thousands).
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"echo backend listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
