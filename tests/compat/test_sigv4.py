"""SigV4 on @connections: unmodified boto3 and AWS SDK for JavaScript v3 clients sign their
requests, sockway verifies them against `[[management.credentials]]`, and bad signatures fail
with the error codes the SDKs map (InvalidSignatureException, MissingAuthenticationToken)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import boto3
import botocore
import botocore.config
import botocore.exceptions
import pytest

from support import TIMEOUT, recv, run, ws_connect

JS_DIR = Path(__file__).resolve().parent / "js"

#: `npm install` may have to fetch the SDK on a fresh machine.
NPM_INSTALL_TIMEOUT = 300


def sdk_client(endpoint_url: str, access_key_id: str, secret: str, **config):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"},
                                      connect_timeout=5, read_timeout=10, **config),
    )


async def connected_client_id(backend) -> str:
    event = await backend.event("CONNECT")
    return event["requestContext"]["connectionId"]


def test_boto3_with_the_right_keys_posts_gets_and_deletes(backend, signed_gateway,
                                                          management_credentials):
    client = sdk_client(signed_gateway.management_url, *management_credentials)

    async def body():
        async with ws_connect(signed_gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            posted = await asyncio.to_thread(client.post_to_connection,
                                             ConnectionId=connection_id, Data=b"signed hello")
            received = await recv(ws, "the signed post")
            got = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
            deleted = await asyncio.to_thread(client.delete_connection,
                                              ConnectionId=connection_id)
            return posted, received, got, deleted

    posted, received, got, deleted = run(body())
    assert posted["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert received == "signed hello"
    assert got["Identity"]["SourceIp"] == "127.0.0.1"
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_boto3_with_a_wrong_secret_gets_invalid_signature(backend, signed_gateway,
                                                         management_credentials):
    access_key_id, _secret = management_credentials
    client = sdk_client(signed_gateway.management_url, access_key_id, "not-the-secret")

    async def body():
        async with ws_connect(signed_gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            with pytest.raises(botocore.exceptions.ClientError) as raised:
                await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id,
                                        Data=b"forged")
            # Nothing reached the socket: the next thing it sees is the real post below.
            good = sdk_client(signed_gateway.management_url, *management_credentials)
            await asyncio.to_thread(good.post_to_connection, ConnectionId=connection_id,
                                    Data=b"genuine")
            return raised.value, await recv(ws, "the genuine post")

    error, received = run(body())
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature" in error.response["Error"]["Message"]
    assert received == "genuine"


def test_boto3_with_an_unknown_key_gets_invalid_signature(signed_gateway):
    client = sdk_client(signed_gateway.management_url, "AKIAUNKNOWNEXAMPLE00", "whatever")
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.get_connection(ConnectionId="L0SM9cOFvHcCIhw=")
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_unsigned_boto3_gets_missing_authentication_token(signed_gateway):
    client = sdk_client(signed_gateway.management_url, "unused", "unused",
                        signature_version=botocore.UNSIGNED)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.get_connection(ConnectionId="L0SM9cOFvHcCIhw=")
    error = raised.value.response
    assert error["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert error["Error"]["Message"] == "Missing Authentication Token"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403


# --- AWS SDK for JavaScript v3 ----------------------------------------------------------


@pytest.fixture(scope="session")
def js_sdk() -> Path:
    """tests/compat/js with its pinned dependencies installed (npm install when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed for the JavaScript SDK tests"
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-apigatewaymanagementapi").is_dir():
        installed = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=JS_DIR,
                                   capture_output=True, text=True, timeout=NPM_INSTALL_TIMEOUT)
        assert installed.returncode == 0, f"npm install failed:\n{installed.stderr[-4000:]}"
    return JS_DIR


def js_post(js_dir: Path, endpoint_url: str, connection_id: str, data: str, access_key_id: str,
            secret: str) -> dict:
    """Runs post.mjs and returns the outcome it prints."""
    done = subprocess.run(
        ["node", "post.mjs", endpoint_url, connection_id, data, access_key_id, secret],
        cwd=js_dir, capture_output=True, text=True, timeout=TIMEOUT * 3)
    assert done.returncode == 0, f"post.mjs failed:\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"post.mjs printed nothing; stderr:\n{done.stderr}"
    return json.loads(lines[-1])


def test_javascript_sdk_v3_posts_with_the_right_keys_and_fails_with_wrong_ones(
        js_sdk, backend, signed_gateway, management_credentials):
    access_key_id, secret = management_credentials

    async def body():
        async with ws_connect(signed_gateway.ws_url) as ws:
            connection_id = await connected_client_id(backend)
            wrong = await asyncio.to_thread(js_post, js_sdk, signed_gateway.management_url,
                                            connection_id, "forged", access_key_id, "wrong")
            right = await asyncio.to_thread(js_post, js_sdk, signed_gateway.management_url,
                                            connection_id, "from js \u2603", access_key_id,
                                            secret)
            return wrong, right, await recv(ws, "the JavaScript SDK's post")

    wrong, right, received = run(body())
    assert right == {"ok": True, "status": 200}
    assert received == "from js \u2603"
    assert wrong["ok"] is False
    assert wrong["name"] == "InvalidSignatureException", wrong
    assert wrong["status"] == 403
