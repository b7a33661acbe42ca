"""Run inside a gateway's network namespace by test_image.py: one WebSocket round trip and the
operations endpoints, reported as one JSON object on standard output.

    python ws_probe.py ws://127.0.0.1:8080/dev http://127.0.0.1:8080
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from websockets.sync.client import connect

TIMEOUT = 10.0


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def main() -> None:
    ws_url, root = sys.argv[1], sys.argv[2].rstrip("/")
    with connect(ws_url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as socket:
        socket.send('{"action":"hello"}')
        reply = socket.recv(timeout=TIMEOUT)
    report = {
        "reply": reply,
        "health": status_of(f"{root}/health"),
        "ready": status_of(f"{root}/ready"),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
