"""permessage-deflate with the `websockets` client, which offers it by default as browsers do.

The client checks the server's answer to its offer itself (RFC 7692 §5), so a connection that
opens with the extension is one `websockets` accepted; messages in both directions, and a
`post_to_connection` from boto3, then go through its compressor and decompressor.
"""

from __future__ import annotations

import asyncio
import json

from websockets.extensions.permessage_deflate import PerMessageDeflate

from support import management_client, recv, render_config, run, ws_connect

DEFLATE = "[permessage_deflate]\nenabled = true\n"


def deflate_extension(ws) -> PerMessageDeflate | None:
    return next((ext for ext in ws.protocol.extensions if isinstance(ext, PerMessageDeflate)),
                None)


def test_websockets_negotiates_and_round_trips_compressed(backend, start_gateway):
    gateway = start_gateway(render_config(backend.uri, extra=DEFLATE))
    management = management_client(gateway.management_url)
    # Repetitive JSON, as chat traffic is: well over the 64-byte threshold.
    text = json.dumps({"action": "chat", "items": [{"user": "alice", "text": "hi"}] * 50})

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            header = ws.response.headers["Sec-WebSocket-Extensions"]
            connect = await backend.event("CONNECT")
            connection_id = connect["requestContext"]["connectionId"]
            await ws.send(text)
            event = await backend.event("MESSAGE")
            echo = await recv(ws, "the route response")
            await asyncio.to_thread(management.post_to_connection,
                                    ConnectionId=connection_id, Data=text.encode())
            pushed = await recv(ws, "the post")
            return header, deflate_extension(ws), event, echo, pushed

    header, extension, event, echo, pushed = run(body())
    assert header.startswith("permessage-deflate; server_no_context_takeover"), header
    assert extension is not None, "websockets accepted the negotiated extension"
    assert extension.remote_no_context_takeover
    assert event["body"] == text
    assert echo == text
    assert pushed == text


def test_offer_ignored_when_disabled(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            await ws.send("plain")
            return (ws.response.headers.get("Sec-WebSocket-Extensions"), deflate_extension(ws),
                    await recv(ws, "the echo"))

    header, extension, echo = run(body())
    assert header is None
    assert extension is None
    assert echo == "plain"
