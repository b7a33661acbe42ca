"""Connection resume in a cluster when a node dies: a connection that moved away from the node
that minted its id stays resumable on the survivors (docs/resume.md, "Cluster mode").

Three real gateway processes on a real redis-server; the client speaks the resume protocol
itself (subprotocols and the resume frame), drops its TCP connection without a close frame and
resumes on another node.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import urllib.error
import urllib.parse
import urllib.request

import pytest

from support import recv, render_config, run, ws_connect

RESUME = "sockway.resume.v1"
REDIS_READY = re.compile(r".*Ready to accept connections")

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="needs redis-server (scripts/test installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cluster(backend, start_process, start_gateway, nodes: int = 3):
    port = free_port()
    redis = start_process("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no"])
    redis.wait_line(REDIS_READY)
    gateways = []
    for index in range(nodes):
        extra = (f'[cluster]\nredis_url = "redis://127.0.0.1:{port}"\nnode_id = "node-{index}"\n'
                 'node_timeout = "3s"\n\n[resume]\nwindow = "30s"\n')
        gateways.append(start_gateway(render_config(backend.uri, extra=extra)))
    return gateways


async def open_resumable(url: str, token: str | None = None, count: int = 0):
    """A socket offering resume (with `token` and `count` when given) and its resume frame."""
    protocols = [RESUME] + ([f"sockway.resume.token.{token}.{count}"] if token else [])
    ws = await ws_connect(url, subprotocols=protocols)
    return ws, json.loads(await recv(ws, "the resume frame"))


def test_a_connection_that_moved_away_from_a_killed_node_resumes_on_a_third(
        backend, start_process, start_gateway):
    """Minted on node 0, moved to node 1 by a resume; node 0 is SIGKILLed; the client drops
    again and resumes on node 2: node 1 holds the connection, so it must resume there, keep its
    id and get the post made while it was away.

    Fails against main at ad5ce6b: until the survivors have found node 0 dead
    (`cluster.node_timeout`), node 2 refuses the resume with 4410, which tells the client the
    connection is gone; the client starts over and node 1 keeps the connection suspended until
    its window ends ($disconnect 1006 "not resumed within the resume window"). The same resume
    a few seconds later (after the survivors' `a node was lost`) succeeds. Found by
    tests/soak/run.sh --mode resume."""
    first, holder, third = start_cluster(backend, start_process, start_gateway)

    async def body():
        ws, frame = await open_resumable(first.ws_url)
        connection_id = frame["connectionId"]
        ws.transport.abort()
        ws, frame = await open_resumable(holder.ws_url, frame["token"], 0)
        assert frame["resumed"] is True and frame["connectionId"] == connection_id, frame

        first.signal(signal.SIGKILL)
        first.wait_exit()
        ws.transport.abort()
        # The connection is suspended on its holder, node 1, which is alive.
        status = await post(holder, connection_id, b"while away")
        assert status == 200
        ws, frame = await open_resumable(third.ws_url, frame["token"], 0)
        try:
            assert frame["resumed"] is True and frame["connectionId"] == connection_id, frame
            assert await recv(ws, "the post made while away") == "while away"
            # Resumed, the connection never ended: no $disconnect so far.
            assert backend.events("DISCONNECT", connection_id) == []
        finally:
            await ws.close()

    run(body())


async def post(gateway, connection_id: str, data: bytes) -> int:
    """POST @connections through `gateway`; the status."""
    return await asyncio.to_thread(post_blocking, gateway, connection_id, data)


def post_blocking(gateway, connection_id: str, data: bytes) -> int:
    url = f"{gateway.management_url}/@connections/{urllib.parse.quote(connection_id, safe='')}"
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_connection_that_passed_through_a_killed_node_resumes_on_the_node_that_minted_it(
        backend, start_process, start_gateway):
    """Minted on node 0, moved to node 1, then to node 2 by resumes; node 1 is SIGKILLed and the
    survivors find it dead; the client drops and resumes on node 0: node 2 holds the connection,
    so it must resume, keep its id and get the post made while it was away.

    Fails against main at ad5ce6b: node 0 refuses the resume with 4410 even after the survivors
    have found node 1 dead, while node 2 holds the connection suspended until its window ends.
    Found by tests/soak/run.sh --mode resume."""
    minted, passed, holder = start_cluster(backend, start_process, start_gateway)

    async def body():
        ws, frame = await open_resumable(minted.ws_url)
        connection_id = frame["connectionId"]
        for node in (passed, holder):
            ws.transport.abort()
            ws, frame = await open_resumable(node.ws_url, frame["token"], 0)
            assert frame["resumed"] is True and frame["connectionId"] == connection_id, frame

        # A connection of node 1's own: its $disconnect ("Gateway node lost") shows that the
        # survivors found node 1 dead.
        witness, witness_frame = await open_resumable(passed.ws_url)
        passed.signal(signal.SIGKILL)
        passed.wait_exit()
        lost = await backend.event("DISCONNECT", connection_id=witness_frame["connectionId"])
        assert lost["requestContext"]["disconnectReason"] == "Gateway node lost", lost
        witness.transport.abort()
        ws.transport.abort()
        assert await post(holder, connection_id, b"while away") == 200
        ws, frame = await open_resumable(minted.ws_url, frame["token"], 0)
        try:
            assert frame["resumed"] is True and frame["connectionId"] == connection_id, frame
            assert await recv(ws, "the post made while away") == "while away"
            assert backend.events("DISCONNECT", connection_id) == []
        finally:
            await ws.close()

    run(body())
