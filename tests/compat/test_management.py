"""The @connections API, driven by boto3's unmodified apigatewaymanagementapi client."""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import botocore.exceptions
import pytest

from support import (AWS_ID, MANAGEMENT_LISTENING, TIMEOUT, USER_AGENT, management_client,
                     recv, render_config, run, wait_closed, ws_connect)


def raw_request(method: str, url: str, data: bytes | None = None):
    """(status, headers, body) of a plain HTTP request, without raising on 4xx/5xx."""
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


async def connected_client_id(backend) -> str:
    event = await backend.event("CONNECT")
    return event["requestContext"]["connectionId"]


def test_post_to_connection_delivers_text(backend, gateway, management):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            response = await asyncio.to_thread(
                management.post_to_connection, ConnectionId=connection_id,
                Data="hello \u2603".encode())
            return response, await recv(ws, "the posted data")

    response, received = run(body())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]
    assert received == "hello \u2603"


def test_post_to_connection_delivers_non_utf8_as_binary(backend, gateway, management):
    data = b"\xff\xfe\x00\x80binary"

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id,
                                    Data=data)
            return await recv(ws, "the posted bytes")

    assert run(body()) == data


def test_post_to_connection_delivers_128_kib(backend, gateway, management):
    data = ("y" * 131072).encode()

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id,
                                    Data=data)
            return await recv(ws, "the 131072-byte post")

    assert run(body()) == data.decode()


def test_get_connection_reports_times_and_identity(backend, gateway, management):
    async def body():
        async with ws_connect(gateway.ws_url):
            connection_id = await connected_client_id(backend)
            return await asyncio.to_thread(management.get_connection, ConnectionId=connection_id)

    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    response = run(body())
    after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    connected_at, last_active_at = response["ConnectedAt"], response["LastActiveAt"]
    assert isinstance(connected_at, datetime.datetime) and connected_at.tzinfo is not None
    assert isinstance(last_active_at, datetime.datetime) and last_active_at.tzinfo is not None
    assert before <= connected_at <= last_active_at <= after
    assert response["Identity"]["SourceIp"] == "127.0.0.1"
    assert response["Identity"]["UserAgent"] == USER_AGENT


def test_get_connection_wire_format(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url):
            connection_id = await connected_client_id(backend)
            url = f"{gateway.management_url}/@connections/{urllib.parse.quote(connection_id, safe='')}"
            return await asyncio.to_thread(raw_request, "GET", url)

    status, headers, content = run(body())
    assert status == 200
    document = json.loads(content)
    timestamp = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z"
    assert re.fullmatch(timestamp, document["connectedAt"]), document
    assert re.fullmatch(timestamp, document["lastActiveAt"]), document
    assert document["identity"]["sourceIp"] == "127.0.0.1"


def test_delete_connection_closes_with_1000_and_runs_disconnect(backend, gateway, management):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            response = await asyncio.to_thread(management.delete_connection,
                                               ConnectionId=connection_id)
            code, _ = await wait_closed(ws)
            disconnect = await backend.event("DISCONNECT", connection_id=connection_id)
            return connection_id, response, code, disconnect

    connection_id, response, code, disconnect = run(body())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code == 1000
    context = disconnect["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["disconnectStatusCode"] == 1000
    assert context["disconnectReason"] == "Connection Closed Normally"
    assert AWS_ID.fullmatch(context["requestId"])

    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=connection_id, Data=b"too late")
    with pytest.raises(management.exceptions.GoneException):
        management.get_connection(ConnectionId=connection_id)
    with pytest.raises(management.exceptions.GoneException):
        management.delete_connection(ConnectionId=connection_id)

    # $disconnect ran exactly once: after a graceful exit no more events can arrive.
    assert gateway.shutdown() == 0
    assert len(backend.events("DISCONNECT", connection_id)) == 1


def test_gone_is_410_with_error_type_header_and_empty_body(gateway):
    url = f"{gateway.management_url}/@connections/{urllib.parse.quote('AAAAAAAAAAAAAAA=', safe='')}"
    status, headers, content = raw_request("POST", url, b"hello")
    assert status == 410
    assert headers.get("x-amzn-ErrorType") == "GoneException"
    assert headers.get("x-amzn-RequestId")
    assert content == b""


def test_unknown_connection_raises_gone_exception(gateway, management):
    with pytest.raises(management.exceptions.GoneException) as gone:
        management.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"hello")
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert gone.value.response["ResponseMetadata"]["RequestId"]


def test_post_over_128_kib_raises_payload_too_large(backend, gateway, management):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            try:
                await asyncio.to_thread(management.post_to_connection,
                                        ConnectionId=connection_id, Data=b"z" * 131073)
            except management.exceptions.PayloadTooLargeException as error:
                outcome = error
            else:
                outcome = None
            # The connection is still usable after the refused post.
            await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id,
                                    Data=b"small")
            return outcome, await recv(ws, "the post after the refused one")

    error, received = run(body())
    assert error is not None, "a 131073-byte post did not raise PayloadTooLargeException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert received == "small"


def test_malformed_connection_id_is_bad_request(gateway, management):
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        management.post_to_connection(ConnectionId="not a valid id!", Data=b"hello")
    error = refused.value.response
    assert error["Error"]["Code"] == "BadRequestException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["RequestId"]


def test_percent_encoded_at_sign_is_accepted(backend, gateway):
    # Go SDK v2 and awscurl send `%40connections`; botocore sends a literal `@`.
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            url = f"{gateway.management_url}/%40connections/{urllib.parse.quote(connection_id, safe='')}"
            status, _, _ = await asyncio.to_thread(raw_request, "POST", url, b"via %40")
            return status, await recv(ws, "the post to %40connections")

    status, received = run(body())
    assert status == 200
    assert received == "via %40"


def test_management_api_on_its_own_listener(backend, start_gateway):
    config = render_config(backend.uri, extra='[management]\nlisten = "127.0.0.1:0"\n')
    gateway = start_gateway(config)
    line = gateway.wait_line(MANAGEMENT_LISTENING)
    management = management_client(line.group(1))
    assert line.group(1).endswith("/dev")

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            await asyncio.to_thread(management.post_to_connection, ConnectionId=connection_id,
                                    Data=b"from the management listener")
            return await recv(ws, "the post through the management listener")

    assert run(body()) == "from the management listener"


def test_empty_stage_serves_root_paths(backend, start_gateway):
    gateway = start_gateway(render_config(backend.uri, stage=""))
    assert gateway.stage_path == ""
    management = management_client(gateway.management_url)

    async def body():
        async with ws_connect(gateway.ws_url + "/") as ws:
            event = await backend.event("CONNECT")
            await asyncio.to_thread(management.post_to_connection,
                                    ConnectionId=event["requestContext"]["connectionId"],
                                    Data=b"no stage")
            return event, await recv(ws, "the post on the empty stage")

    event, received = run(body())
    assert event["requestContext"]["stage"] == ""
    assert received == "no stage"
