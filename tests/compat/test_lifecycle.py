"""Connection ends and process lifecycle: `$disconnect`, SIGTERM, idle timeout, `validate`."""

from __future__ import annotations

import signal
import subprocess

import pytest

from support import TIMEOUT, render_config, run, sockway_bin, wait_closed, ws_connect


def test_client_close_without_status_gives_disconnect_1005(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            connection_id = connect["requestContext"]["connectionId"]
            # No code: an empty close frame, which the server sees as 1005.
            await ws.close(code=None)
            return connect, await backend.event("DISCONNECT", connection_id=connection_id)

    connect, event = run(body())
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["eventType"] == "DISCONNECT"
    assert context["disconnectStatusCode"] == 1005
    assert context["disconnectReason"] == "Client-side close frame status not set"
    assert context["connectedAt"] == connect["requestContext"]["connectedAt"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert "messageId" not in context
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert isinstance(event["headers"], dict)
    assert isinstance(event["multiValueHeaders"], dict)

    assert gateway.shutdown() == 0
    assert len(backend.events("DISCONNECT", context["connectionId"])) == 1


def test_client_vanishing_still_runs_disconnect_once(backend, gateway):
    async def body():
        ws = await ws_connect(gateway.ws_url)
        connect = await backend.event("CONNECT")
        # Drop the TCP connection without a closing handshake.
        ws.transport.abort()
        await ws.wait_closed()
        connection_id = connect["requestContext"]["connectionId"]
        return await backend.event("DISCONNECT", connection_id=connection_id)

    event = run(body())
    assert isinstance(event["requestContext"]["disconnectStatusCode"], int)
    assert isinstance(event["requestContext"]["disconnectReason"], str)
    assert gateway.shutdown() == 0
    assert len(backend.events("DISCONNECT", event["requestContext"]["connectionId"])) == 1


def test_sigterm_closes_clients_with_1001_and_runs_disconnect_once(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url) as first, ws_connect(gateway.ws_url) as second:
            await backend.event("CONNECT")
            await backend.event("CONNECT")
            gateway.signal(signal.SIGTERM)
            first_code, _ = await wait_closed(first)
            second_code, _ = await wait_closed(second)
            return first_code, second_code

    assert run(body()) == (1001, 1001)
    assert gateway.wait_exit() == 0
    connects = backend.events("CONNECT")
    disconnects = backend.events("DISCONNECT")
    assert sorted(e["requestContext"]["connectionId"] for e in disconnects) == sorted(
        e["requestContext"]["connectionId"] for e in connects)


def test_sigint_exits_cleanly(backend, gateway):
    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            await backend.event("CONNECT")
            gateway.signal(signal.SIGINT)
            code, _ = await wait_closed(ws)
            return code

    assert run(body()) == 1001
    assert gateway.wait_exit() == 0
    assert len(backend.events("DISCONNECT")) == 1


def test_idle_connection_is_closed(backend, start_gateway):
    gateway = start_gateway(render_config(backend.uri, limits={"idle_timeout": "1s"}))

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            connect = await backend.event("CONNECT")
            code, messages = await wait_closed(ws)
            connection_id = connect["requestContext"]["connectionId"]
            return code, messages, await backend.event("DISCONNECT",
                                                       connection_id=connection_id)

    code, messages, event = run(body())
    assert code is not None, "the gateway dropped the TCP connection without a close frame"
    assert messages == []
    assert event["requestContext"]["disconnectStatusCode"] == code


def validate(config_path) -> subprocess.CompletedProcess:
    return subprocess.run([str(sockway_bin()), "validate", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_validate_accepts_a_good_config(tmp_path, backend):
    config = tmp_path / "good.toml"
    config.write_text(render_config(backend.uri))
    result = validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param('[routes.orphan]\nintegration = "missing"\n', id="unknown-integration"),
        pytest.param('[gateway.surprise]\nfield = 1\n', id="unknown-field"),
    ],
)
def test_validate_rejects_a_bad_config_with_status_2(tmp_path, backend, extra):
    config = tmp_path / "bad.toml"
    config.write_text(render_config(backend.uri, extra=extra))
    result = validate(config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip(), "validate printed no error"


def test_serve_refuses_a_bad_config(tmp_path, backend):
    config = tmp_path / "bad.toml"
    config.write_text(render_config(backend.uri, extra='[routes.orphan]\nintegration = "missing"\n'))
    result = subprocess.run(
        [str(sockway_bin()), "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode != 0
    assert "listening" not in result.stdout
