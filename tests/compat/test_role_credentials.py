"""Backends on AWS call back unchanged: a handler signs its @connections calls with its role's
temporary credentials (an `ASIA…` key and a session token from the environment, as Lambda,
ECS and EKS provide them), which sockway cannot verify. From `management.trusted_networks`
those calls are served; from anywhere else they are refused as AWS refuses an unknown key."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess

import boto3
import botocore.config
import botocore.exceptions
import pytest

from support import TIMEOUT, recv, render_config, run, ws_connect
from test_sigv4 import js_sdk  # noqa: F401 (a fixture)

#: A role's temporary credentials, as Lambda puts them in a function's environment.
ROLE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "ASIAQROLEEXAMPLE0001",
    "AWS_SECRET_ACCESS_KEY": "a-secret-only-aws-knows/EXAMPLEKEY",
    "AWS_SESSION_TOKEN": "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD=",
    # Lambda sets both; boto3 reads the second, the JavaScript SDK the first.
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}

#: The one key sockway verifies; present so that the gateway is in signed mode.
CONFIGURED_KEY = ("[[management.credentials]]\n"
                  'access_key_id = "AKIAIOSFODNN7EXAMPLE"\n'
                  'secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n')


def gateway_trusting(start_gateway, backend, networks: list[str]):
    extra = f"[management]\ntrusted_networks = {json.dumps(networks)}\n\n{CONFIGURED_KEY}"
    return start_gateway(render_config(backend.uri, extra=extra))


@pytest.fixture
def role_environment(monkeypatch):
    """The process environment of a backend running with an AWS role, and nothing else AWS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name, value in ROLE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def handler(event: dict, _context=None) -> dict:
    """A handler as written for AWS: the callback URL from the event, credentials and region
    from the default chain."""
    context = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://{context['domainName']}/{context['stage']}",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    client.post_to_connection(ConnectionId=context["connectionId"],
                              Data=f"echo: {json.loads(event['body'])['text']}".encode())
    return {"statusCode": 200}


def run_handler_for_one_message(gateway, backend):
    """Connects, sends one message, runs `handler` on its event; returns what the client got
    or the handler's error."""

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"action": "sendmessage", "text": "hi"}))
            event = await asyncio.to_thread(backend.wait_event, "MESSAGE", "sendmessage")
            try:
                await asyncio.to_thread(handler, event)
            except botocore.exceptions.ClientError as error:
                return error
            return await recv(ws, "the handler's post")

    return run(body())


def test_boto3_with_role_credentials_from_a_trusted_network_is_served(
        backend, start_gateway, role_environment):
    gateway = gateway_trusting(start_gateway, backend, ["10.0.0.0/8", "127.0.0.0/8"])
    assert run_handler_for_one_message(gateway, backend) == "echo: hi"
    # The access log (stdout by default) names the key the call was signed with.
    line = gateway.wait_line(re.compile(r'.*"eventType":"MANAGEMENT".*')).group(0)
    assert json.loads(line)["accessKey"] == "ASIAQROLEEXAMPLE0001"
    assert json.loads(line)["status"] == "200"


def test_boto3_with_role_credentials_from_elsewhere_is_refused(
        backend, start_gateway, role_environment):
    gateway = gateway_trusting(start_gateway, backend, ["10.0.0.0/8"])
    error = run_handler_for_one_message(gateway, backend)
    assert isinstance(error, botocore.exceptions.ClientError), error
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["Error"]["Message"] == \
        "The security token included in the request is invalid."


def js_post_with_default_chain(js_dir, endpoint_url: str, connection_id: str, data: str,
                               environment: dict) -> dict:
    done = subprocess.run(["node", "post.mjs", endpoint_url, connection_id, data], cwd=js_dir,
                          env=environment, capture_output=True, text=True, timeout=TIMEOUT * 3)
    assert done.returncode == 0, f"post.mjs failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("networks, trusted", [(["127.0.0.1/32"], True),
                                               (["192.0.2.0/24", "fd00::/8"], False)])
def test_javascript_sdk_v3_with_role_credentials(js_sdk, backend, start_gateway,  # noqa: F811
                                                role_environment, networks, trusted):
    gateway = gateway_trusting(start_gateway, backend, networks)

    async def body():
        async with ws_connect(gateway.ws_url) as ws:
            event = await asyncio.to_thread(backend.wait_event, "CONNECT")
            connection_id = event["requestContext"]["connectionId"]
            outcome = await asyncio.to_thread(js_post_with_default_chain, js_sdk,
                                              gateway.management_url, connection_id,
                                              "from a role", role_environment)
            received = await recv(ws, "the post") if trusted else None
            return outcome, received

    outcome, received = run(body())
    if trusted:
        assert outcome == {"ok": True, "status": 200}
        assert received == "from a role"
    else:
        assert outcome["ok"] is False
        assert outcome["status"] == 403
        assert outcome["name"] == "InvalidSignatureException", outcome
