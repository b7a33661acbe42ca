"""Client messages: MESSAGE events, route responses, error frames and frame limits."""

from __future__ import annotations

import re
import socket

from support import (AWS_ID, CLF_TIME, lambda_result, recv, render_config, run, wait_closed,
                     ws_connect)


def closed_port_uri() -> str:
    """An http URI on a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/events"


def error_frame(message: str, connection_id: str) -> re.Pattern:
    """AWS's error frame, byte for byte (a space after `"message":` only)."""
    return re.compile(
        re.escape('{"message": "' + message + '", "connectionId":"' + connection_id + '", ')
        + r'"requestId":"' + AWS_ID.pattern + r'"\}')


def test_message_event_carries_body_verbatim(backend, gateway):
    text = '{"action": "sendmessage",  "data": "h\u00e9llo \u2603", "n": 1.50}'

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            await ws.send(text)
            return connect, await backend.event("MESSAGE")

    connect, event = run(body())
    context = event["requestContext"]
    assert context["routeKey"] == "sendmessage"
    assert context["eventType"] == "MESSAGE"
    assert context["messageDirection"] == "IN"
    assert AWS_ID.fullmatch(context["messageId"]), context["messageId"]
    assert AWS_ID.fullmatch(context["requestId"]), context["requestId"]
    assert context["requestId"] != connect["requestContext"]["requestId"]
    assert context["extendedRequestId"] == context["requestId"]
    assert CLF_TIME.fullmatch(context["requestTime"])
    assert context["connectionId"] == connect["requestContext"]["connectionId"]
    assert context["connectedAt"] == connect["requestContext"]["connectedAt"]
    assert type(context["requestTimeEpoch"]) is int
    assert context["stage"] == "dev"
    assert context["apiId"] == "a1b2c3d4e5"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert event["body"] == text
    assert event["isBase64Encoded"] is False
    assert "headers" not in event
    assert "queryStringParameters" not in event


def test_default_route_response_reaches_client_and_one_way_routes_stay_silent(backend, gateway):
    def responder(request):
        context = request.event["requestContext"]
        if context["routeKey"] == "sendmessage":
            return lambda_result(200, "one-way route: must not reach the client")
        if context["routeKey"] == "$default":
            return lambda_result(200, "echo: " + request.event["body"])
        return lambda_result(200)

    backend.responder = responder

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            await backend.event("CONNECT")
            await ws.send('{"action":"sendmessage","data":"x"}')
            await backend.event("MESSAGE", "sendmessage")
            # Not JSON at all, so the selection expression falls through to $default.
            await ws.send("hello there")
            event = await backend.event("MESSAGE", "$default")
            return event, await recv(ws, "the $default route response")

    event, reply = run(body())
    assert event["body"] == "hello there"
    assert reply == "echo: hello there"


def test_unknown_action_routes_to_default(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            await backend.event("CONNECT")
            await ws.send('{"action":"nosuchroute","x":1}')
            event = await backend.event("MESSAGE")
            return event, await recv(ws, "the $default echo")

    event, reply = run(body())
    assert event["requestContext"]["routeKey"] == "$default"
    assert reply == '{"action":"nosuchroute","x":1}'


def test_unroutable_message_gets_forbidden_frame(backend, start_gateway):
    gateway = start_gateway(render_config(backend.uri, default_route=False))

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            await ws.send('{"action":"nosuchroute"}')
            first = await recv(ws, "the Forbidden frame")
            # The connection stays open and usable afterwards.
            await ws.send('{"action":"sendmessage","data":"still here"}')
            message = await backend.event("MESSAGE", "sendmessage")
            return connect["requestContext"]["connectionId"], first, message

    connection_id, frame, message = run(body())
    assert isinstance(frame, str)
    assert error_frame("Forbidden", connection_id).fullmatch(frame), frame
    assert message["body"] == '{"action":"sendmessage","data":"still here"}'
    assert [e for e in backend.events("MESSAGE") if "nosuchroute" in e["body"]] == []


def test_integration_failure_sends_internal_server_error_frame(backend, start_gateway):
    config = render_config(
        backend.uri,
        extra=f'[routes.broken]\nintegration = "dead"\n\n'
              f'[integrations.dead]\ntype = "http"\nuri = "{closed_port_uri()}"\n')
    gateway = start_gateway(config)

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            await ws.send('{"action":"broken"}')
            return connect["requestContext"]["connectionId"], await recv(ws, "the error frame")

    connection_id, frame = run(body())
    assert error_frame("Internal server error", connection_id).fullmatch(frame), frame


def test_mock_integration_answers_without_backend(backend, start_gateway):
    config = render_config(
        backend.uri,
        extra='[routes.ping]\nintegration = "pong"\nroute_response = true\n\n'
              '[integrations.pong]\ntype = "mock"\nstatus_code = 200\nbody = \'{"pong":true}\'\n')
    gateway = start_gateway(config)

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            await backend.event("CONNECT")
            await ws.send('{"action":"ping"}')
            return await recv(ws, "the mock integration's body")

    assert run(body()) == '{"pong":true}'
    assert backend.events("MESSAGE") == []


def test_binary_frame_is_rejected_with_1003_when_configured(backend, start_gateway):
    gateway = start_gateway(render_config(backend.uri, gateway_extra='binary_frames = "reject"'))

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            await ws.send(b"\x00\x01binary")
            code, _ = await wait_closed(ws)
            connection_id = connect["requestContext"]["connectionId"]
            await backend.event("DISCONNECT", connection_id=connection_id)
            return code

    assert run(body()) == 1003
    assert backend.events("MESSAGE") == []


def test_message_over_limit_closes_with_1009(backend, start_gateway):
    gateway = start_gateway(render_config(backend.uri,
                                          limits={"frame_bytes": 1024, "message_bytes": 4096}))

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            await ws.send('{"action":"sendmessage","data":"' + "x" * 8192 + '"}')
            code, _ = await wait_closed(ws)
            await backend.event("DISCONNECT",
                                connection_id=connect["requestContext"]["connectionId"])
            return code

    assert run(body()) == 1009
    assert backend.events("MESSAGE") == []
