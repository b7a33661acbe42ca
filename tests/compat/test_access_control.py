"""Access control on `$connect` (issue 17) with the clients users have: a wss URL presigned by
botocore's own `SigV4QueryAuth` and opened with Python `websockets` (`AWS_IAM`), and an API key
sent by `websockets` in the `x-api-key` header (`api_key_required`)."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
import websockets
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from support import render_config, run, ws_connect

ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PRINCIPAL = "arn:aws:iam::111122223333:user/presigner"
API_KEY = "compat-key-0123456789abcdef"

IAM_TABLES = f"""
[[iam.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_access_key = "{SECRET}"
principal_arn = "{PRINCIPAL}"

[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect"
"""

KEY_TABLES = f"""
[[api_keys]]
name = "compat"
id = "compat0001"
value = "{API_KEY}"

[[usage_plans]]
name = "compat-plan"
api_keys = ["compat"]
quota_limit = 2
quota_period = "DAY"
"""


def with_connect_setting(config: str, setting: str) -> str:
    return config.replace('[routes."$connect"]\nintegration = "backend"',
                          f'[routes."$connect"]\nintegration = "backend"\n{setting}', 1)


def presign(ws_url: str, expires: int, signed_at: datetime.datetime | None = None,
            secret: str = SECRET) -> str:
    """The wss/ws URL presigned by botocore: signed as its http(s) twin, as a backend does it."""
    http_url = ws_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    request = AWSRequest(method="GET", url=http_url)
    auth = SigV4QueryAuth(Credentials(ACCESS_KEY_ID, secret), "execute-api", "us-east-1",
                          expires=expires)
    if signed_at is None:
        auth.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
            auth.add_auth(request)
    return request.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


async def refused_status(url: str, **kwargs) -> tuple[int, bytes]:
    with pytest.raises(websockets.exceptions.InvalidStatus) as raised:
        async with ws_connect(url, **kwargs):
            pass
    return raised.value.response.status_code, raised.value.response.body


@pytest.fixture
def iam_gateway(backend, start_gateway):
    config = render_config(backend.uri, extra=IAM_TABLES)
    return start_gateway(with_connect_setting(config, 'authorization_type = "AWS_IAM"'))


def test_a_url_presigned_by_botocore_connects_and_may_be_reused(backend, iam_gateway):
    url = presign(f"{iam_gateway.ws_url}?room=lobby", expires=300)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=300" in url

    async def body():
        for _ in range(2):
            async with ws_connect(url) as ws:
                event = await backend.event("CONNECT")
                await ws.send('{"action":"sendmessage","text":"hi"}')
                message = await backend.event("MESSAGE", "sendmessage")
            identity = event["requestContext"]["identity"]
            assert identity["accessKey"] == ACCESS_KEY_ID
            assert identity["userArn"] == PRINCIPAL
            assert identity["accountId"] == "111122223333"
            assert event["queryStringParameters"]["room"] == "lobby"
            assert message["requestContext"]["identity"]["userArn"] == PRINCIPAL

    run(body())


def test_bad_and_expired_presigned_urls_are_refused(backend, iam_gateway):
    wrong_secret = presign(iam_gateway.ws_url, expires=300, secret="not-the-secret-0123456789")
    two_hours_ago = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
                     - datetime.timedelta(hours=2))
    expired = presign(iam_gateway.ws_url, expires=3600, signed_at=two_hours_ago)

    async def body():
        for url, fragment in [(wrong_secret, b"does not match"),
                              (expired, b"Signature expired"),
                              (iam_gateway.ws_url, b"Missing Authentication Token")]:
            status, response_body = await refused_status(url)
            assert status == 403, url
            assert fragment in response_body, response_body

    run(body())
    assert not backend.events("CONNECT"), "$connect never ran for a refused URL"


@pytest.fixture
def keyed_gateway(backend, start_gateway):
    config = render_config(backend.uri, extra=KEY_TABLES)
    return start_gateway(with_connect_setting(config, "api_key_required = true"))


def test_websockets_sends_an_api_key_and_the_quota_stops_it(backend, keyed_gateway):
    async def body():
        for _ in range(2):
            async with ws_connect(keyed_gateway.ws_url,
                                  additional_headers={"x-api-key": API_KEY}):
                event = await backend.event("CONNECT")
            assert event["requestContext"]["identity"]["apiKey"] == API_KEY
            assert event["requestContext"]["identity"]["apiKeyId"] == "compat0001"
        assert await refused_status(keyed_gateway.ws_url,
                                    additional_headers={"x-api-key": API_KEY}) == (
            429, b'{"message":"Limit Exceeded"}')
        assert await refused_status(keyed_gateway.ws_url) == (403, b'{"message":"Forbidden"}')
        assert await refused_status(
            keyed_gateway.ws_url,
            additional_headers={"x-api-key": "someone-elses-key-0123456789"},
        ) == (403, b'{"message":"Forbidden"}')

    run(body())
