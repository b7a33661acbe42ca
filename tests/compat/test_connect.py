"""`$connect`: the CONNECT event's shape, and how the backend's answer decides the handshake."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from support import (AWS_ID, CLF_TIME, USER_AGENT, Reply, lambda_result, management_client, recv,
                     run, ws_connect)


def header(headers: dict, name: str):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def test_connect_event_has_aws_shape(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url):
            return await backend.event("CONNECT")

    event = run(body())
    request = backend.requests()[0]
    assert request.method == "POST"
    assert request.path == "/events"
    assert (request.header("Content-Type") or "").startswith("application/json")

    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "dev"
    assert context["apiId"] == "a1b2c3d4e5"
    assert AWS_ID.fullmatch(context["connectionId"]), context["connectionId"]
    assert AWS_ID.fullmatch(context["requestId"]), context["requestId"]
    assert context["extendedRequestId"] == context["requestId"]
    assert "messageId" not in context
    assert CLF_TIME.fullmatch(context["requestTime"]), context["requestTime"]
    assert type(context["connectedAt"]) is int
    assert type(context["requestTimeEpoch"]) is int
    assert 0 <= context["requestTimeEpoch"] - context["connectedAt"] < 60_000
    assert isinstance(context["domainName"], str) and context["domainName"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"].get("userAgent") == USER_AGENT

    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event
    assert header(event["headers"], "Sec-WebSocket-Key")
    assert header(event["headers"], "User-Agent") == USER_AGENT
    assert header(event["multiValueHeaders"], "User-Agent") == [USER_AGENT]


def test_connect_event_carries_query_string(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url + "?a=b&name=me"):
            return await backend.event("CONNECT")

    event = run(body())
    assert event["queryStringParameters"] == {"a": "b", "name": "me"}
    assert event["multiValueQueryStringParameters"] == {"a": ["b"], "name": ["me"]}


@pytest.mark.parametrize(
    "reply, status",
    [
        pytest.param(lambda_result(403, "go away"), 403, id="lambda-proxy-statusCode"),
        pytest.param(Reply(401, b"no"), 401, id="plain-http-status"),
    ],
)
def test_connect_refused_by_backend_fails_handshake_with_that_status(backend, gateway, reply,
                                                                     status):
    backend.responder = lambda request: reply

    async def body():
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with ws_connect(gateway.ws_url):
                pass
        return refused.value.response

    response = run(body())
    assert response.status_code == status
    # The backend's body is not forwarded to the client.
    assert b"go away" not in response.body
    backend.wait_event("CONNECT")
    # A refused connection never opened, so it must not get a $disconnect.
    assert gateway.shutdown() == 0
    assert backend.events("DISCONNECT") == []


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda_result(200, headers={"Sec-WebSocket-Protocol": "chat2",
                                                 "X-Leak": "1"}),
                     id="lambda-proxy-headers"),
        pytest.param(Reply(200, b"ok", {"Sec-WebSocket-Protocol": "chat2", "X-Leak": "1"}),
                     id="plain-http-header"),
    ],
)
def test_connect_subprotocol_chosen_by_backend_is_negotiated(backend, gateway, reply):
    backend.responder = lambda request: (
        reply if request.event["requestContext"]["eventType"] == "CONNECT"
        else lambda_result(200))

    async def body():
        async with ws_connect(gateway.ws_url, subprotocols=["chat1", "chat2"]) as ws:
            event = await backend.event("CONNECT")
            return ws.subprotocol, dict(ws.response.headers), event

    subprotocol, response_headers, event = run(body())
    assert subprotocol == "chat2"
    # Only Sec-WebSocket-Protocol is copied from the backend's answer.
    assert header(response_headers, "X-Leak") is None
    offered = header(event["headers"], "Sec-WebSocket-Protocol")
    assert offered is not None and [p.strip() for p in offered.split(",")] == ["chat1", "chat2"]


def test_post_while_connect_runs_is_gone(backend, gateway):
    # AWS answers 410 to a @connections POST made while $connect is still running: the
    # connection does not exist until the backend has accepted it.
    management = management_client(gateway.management_url)
    outcome = {}

    def responder(request):
        context = request.event["requestContext"]
        if context["eventType"] == "CONNECT":
            try:
                management.post_to_connection(ConnectionId=context["connectionId"],
                                              Data=b"too early")
                outcome["error"] = None
            except management.exceptions.GoneException:
                outcome["error"] = "GoneException"
            except Exception as error:  # Reported by the assertion below.
                outcome["error"] = repr(error)
        return lambda_result(200)

    backend.responder = responder

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            event = await backend.event("CONNECT")
            await asyncio.to_thread(management.post_to_connection,
                                    ConnectionId=event["requestContext"]["connectionId"],
                                    Data=b"on time")
            return await recv(ws, "the post made after $connect")

    assert run(body()) == "on time"
    assert outcome["error"] == "GoneException"
