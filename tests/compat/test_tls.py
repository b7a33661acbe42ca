"""`wss://` and `https://` with the TLS stack Python users have (OpenSSL, through `ssl`).

Over TLS 1.3 the gateway protects the records itself once the handshake is done; over TLS 1.2
rustls does. Both carry messages smaller than a record, exactly one record, and many records,
back-to-back messages that arrive several records to a read, and boto3's pushes over `https://`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest

from support import lambda_result, management_client, recv, render_config, run, ws_connect

TLS_DIR = Path(__file__).parent / "tls"
CERT = TLS_DIR / "cert.pem"
KEY = TLS_DIR / "key.pem"


def tls_gateway(backend, start_gateway):
    """The standard routes with `[tls]`, `$default` echoing each message's body back."""

    def responder(request):
        if request.event["requestContext"]["routeKey"] == "$default":
            return lambda_result(200, request.event["body"])
        return lambda_result(200)

    backend.responder = responder
    tls = f"[tls]\ncert_file = {json.dumps(str(CERT))}\nkey_file = {json.dumps(str(KEY))}\n"
    return start_gateway(render_config(backend.uri, extra=tls))


def client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(CERT))
    context.minimum_version = version
    context.maximum_version = version
    return context


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls1.3", "tls1.2"])
def test_wss_carries_messages_and_pushes_across_record_boundaries(backend, start_gateway,
                                                                  version):
    gateway = tls_gateway(backend, start_gateway)
    assert gateway.ws_url.startswith("wss://"), gateway.ws_url
    context = client_context(version)
    management = management_client(gateway.management_url, verify=str(CERT))
    # Under a record (16 KiB), about one record's payload, just over one, and the 32 KB frame
    # limit's worth (two records).
    sizes = [5, 16_384 - 64, 16_384 + 7, 32_000]

    async def body():
        async with ws_connect(gateway.ws_url, ssl=context, max_size=None) as ws:
            negotiated = ws.transport.get_extra_info("ssl_object").version()
            connect = await backend.event("CONNECT")
            connection_id = connect["requestContext"]["connectionId"]
            for size in sizes:
                text = "x" * size
                await ws.send(text)
                assert await recv(ws, f"the echo of {size} bytes") == text
            # Back to back: several records reach the gateway in one read, and their answers
            # leave in whatever records the gateway writes.
            burst = [f"message {index} " + "y" * (index * 97) for index in range(60)]
            for text in burst:
                await ws.send(text)
            echoes = [await recv(ws, "a burst echo") for _ in burst]
            assert sorted(echoes) == sorted(burst)
            pushed = bytes(range(256)) * 160
            await asyncio.to_thread(management.post_to_connection,
                                    ConnectionId=connection_id, Data=pushed)
            assert await recv(ws, "the push") == pushed
            return negotiated

    negotiated = run(body())
    assert negotiated == {ssl.TLSVersion.TLSv1_3: "TLSv1.3",
                          ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]


def test_wss_closes_cleanly_both_ways(backend, start_gateway):
    gateway = tls_gateway(backend, start_gateway)
    context = client_context(ssl.TLSVersion.TLSv1_3)

    async def body():
        async with ws_connect(gateway.ws_url, ssl=context) as ws:
            await backend.event("CONNECT")
            await ws.send("hello")
            assert await recv(ws) == "hello"
            await ws.close(1000, "done")
            return ws.close_code, await backend.event("DISCONNECT")

    close_code, disconnect = run(body())
    assert close_code == 1000
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
