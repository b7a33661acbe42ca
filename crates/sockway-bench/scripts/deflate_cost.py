"""What permessage-deflate costs the gateway: memory per idle connection and CPU per message.

    .venv/bin/python crates/sockway-bench/scripts/deflate_cost.py [--connections N] [--messages M]

Runs the release gateway (`$SOCKWAY_BIN`, default target/release/sockway) with a two-way
`$default` route on a mock integration that answers every message with a fixed 1 KiB JSON
body, and the Python `websockets` client, which negotiates permessage-deflate as browsers do.
For each mode it starts a fresh gateway, opens N connections that each send M messages of
about 1 KiB of chat-like JSON (reading every answer), then holds them idle and reads the
gateway's RSS; then it times 20,000 more round trips on 20 of them and reads the gateway's CPU.

Modes: no compression; deflate where the client keeps its context (the default of browsers
and `websockets`: the gateway keeps up to its 32 KiB window of history per connection); the
same with `client_max_window_bits = 10` in the gateway's config (1 KiB); deflate with
`client_no_context_takeover` (no history at all).

A Python client is slow (about 2,000 round trips/s here), so rates are not reported: memory
and CPU per message are properties of the gateway, whatever drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../.."))
BINARY = os.environ.get("SOCKWAY_BIN", os.path.join(REPO, "target/release/sockway"))

ANSWER = json.dumps({"type": "chat", "room": "general", "messages": [
    {"user": f"user{i % 7}", "text": "see you at the standup in five minutes"} for i in range(16)]})

CONFIG = r"""
[gateway]
listen = "127.0.0.1:0"
stage = "dev"
route_selection_expression = "\\$default"

[limits]
max_connections_per_ip = 0
idle_timeout = "0s"
heartbeat_interval = "0s"

[throttling]
connect_rate_limit = 0

[access_log]
enabled = false

[routes."$default"]
integration = "answer"
route_response = true

[integrations.answer]
type = "mock"
status_code = 200
body = '''{answer}'''
{deflate}
"""


def message(index: int) -> str:
    """About 1 KiB of chat-like JSON, different each time."""
    return json.dumps({"action": "chat", "seq": index, "room": "general", "items": [
        {"user": f"user{(index + i) % 11}", "text": f"message {index}.{i}: on my way, {i} minutes"}
        for i in range(14)]})


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gateway:
    def __init__(self, deflate: str):
        self.dir = tempfile.TemporaryDirectory()
        path = os.path.join(self.dir.name, "sockway.toml")
        with open(path, "w") as file:
            file.write(CONFIG.format(answer=ANSWER, deflate=deflate))
        self.log = open(os.path.join(self.dir.name, "sockway.log"), "w+")
        self.process = subprocess.Popen([BINARY, "serve", "--config", path],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.log.seek(0)
            found = re.search(r"listening on (ws://\S+)", self.log.read())
            if found:
                self.url = found.group(1)
                return
            time.sleep(0.05)
        self.log.seek(0)
        output = self.log.read()
        self.stop()
        raise RuntimeError(f"the gateway did not start:\n{output}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.dir.cleanup()


async def measure(name: str, deflate_config: str, extensions, args) -> dict:
    gateway = Gateway(deflate_config)
    try:
        pid = gateway.process.pid
        options = {"ping_interval": None, "max_size": None, "open_timeout": 30}
        if extensions is None:
            options["compression"] = None
        else:
            options["extensions"] = extensions
        first = await connect(gateway.url, **options)
        await first.send(message(0))
        await first.recv()
        await asyncio.sleep(0.5)
        rss_one = rss_kib(pid)
        sockets = [first]
        negotiated = first.response.headers.get("Sec-WebSocket-Extensions")

        async def open_one(index: int):
            ws = await connect(gateway.url, **options)
            for count in range(args.messages):
                await ws.send(message(index * 1000 + count))
                await ws.recv()
            return ws

        for start in range(1, args.connections, 200):
            batch = range(start, min(start + 200, args.connections))
            sockets += await asyncio.gather(*(open_one(index) for index in batch))
        await asyncio.sleep(2)
        rss_all = rss_kib(pid)

        round_trips = 20_000
        workers = sockets[:20]
        cpu_before = cpu_seconds(pid)

        async def chat(ws, base: int):
            for count in range(round_trips // len(workers)):
                await ws.send(message(base + count))
                await ws.recv()

        await asyncio.gather(*(chat(ws, 10_000_000 + i * 100_000) for i, ws in enumerate(workers)))
        cpu = cpu_seconds(pid) - cpu_before
        await asyncio.gather(*(ws.close() for ws in sockets))
        return {
            "mode": name,
            "negotiated": negotiated or "-",
            "rss_per_connection_kib": (rss_all - rss_one) / (len(sockets) - 1),
            "cpu_per_round_trip_us": cpu / round_trips * 1e6,
            "rss_one_kib": rss_one,
            "rss_all_kib": rss_all,
        }
    finally:
        gateway.stop()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=40,
                        help="messages each connection sends before idling (40 KiB fills a 32 KiB window)")
    args = parser.parse_args()
    enabled = "[permessage_deflate]\nenabled = true\n"
    modes = [
        ("off", "", None),
        ("deflate, client keeps context (window 15)", enabled,
         [ClientPerMessageDeflateFactory(client_max_window_bits=True)]),
        ("deflate, client keeps context (window capped at 10)",
         enabled + "client_max_window_bits = 10\n",
         [ClientPerMessageDeflateFactory(client_max_window_bits=True)]),
        ("deflate, client_no_context_takeover", enabled,
         [ClientPerMessageDeflateFactory(client_no_context_takeover=True)]),
    ]
    results = []
    for name, config, extensions in modes:
        result = await measure(name, config, extensions, args)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    base = results[0]
    print(f"N = {args.connections} connections, {args.messages} messages of ~1 KiB each before "
          f"idling; CPU over 20,000 round trips (1 KiB in, 1 KiB out)")
    print("| mode | negotiated | RSS per idle connection | gateway CPU per round trip |")
    print("|---|---|---|---|")
    for result in results:
        print(f"| {result['mode']} | `{result['negotiated']}` | "
              f"{result['rss_per_connection_kib']:.2f} KiB "
              f"({result['rss_per_connection_kib'] - base['rss_per_connection_kib']:+.2f}) | "
              f"{result['cpu_per_round_trip_us']:.0f} µs "
              f"({result['cpu_per_round_trip_us'] / base['cpu_per_round_trip_us']:.2f}×) |")


if __name__ == "__main__":
    asyncio.run(main())
