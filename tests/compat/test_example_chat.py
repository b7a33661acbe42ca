"""End to end: examples/chat (its backend.py and sockway.toml) running on the real binary."""

from __future__ import annotations

import asyncio
import re
import sys
import urllib.request

from support import REPO_ROOT, TIMEOUT, recv, run, ws_connect

EXAMPLE = REPO_ROOT / "examples" / "chat"
BACKEND_LISTENING = re.compile(r"^chat backend listening on (http://\S+)\s*$")


def example_config(backend_url: str) -> str:
    """examples/chat/sockway.toml with the gateway on port 0 and the backend's real address."""
    text = (EXAMPLE / "sockway.toml").read_text()
    text, listens = re.subn(r'(?m)^listen = "[^"]*"', 'listen = "127.0.0.1:0"', text)
    text, uris = re.subn(r'(?m)^uri = "[^"]*"', f'uri = "{backend_url}/events"', text)
    assert listens == 1 and uris == 1, "examples/chat/sockway.toml changed shape"
    return text


def test_chat_example_broadcasts_to_every_client(start_process, start_gateway):
    # No --callback-url: the handlers build it from the event's domainName and stage, as on AWS,
    # because the gateway's port is only known after the backend has started.
    chat_backend = start_process(
        "chat-backend", [sys.executable, str(EXAMPLE / "backend.py"), "--port", "0"])
    backend_url = chat_backend.wait_line(BACKEND_LISTENING).group(1)
    gateway = start_gateway(example_config(backend_url))

    with urllib.request.urlopen(backend_url + "/", timeout=TIMEOUT) as page:
        assert page.status == 200
        assert "<title>sockway chat</title>" in page.read().decode()

    async def body():
        async with ws_connect(gateway.ws_url) as alice, ws_connect(gateway.ws_url) as bob:
            # Both handshakes completed, so both $connect handlers have stored their ids.
            await alice.send('{"action":"sendmessage","data":"hello from alice"}')
            received = await asyncio.gather(recv(alice, "alice's own broadcast"),
                                            recv(bob, "alice's broadcast"))
            await bob.send("no action here")
            hint = await recv(bob, "the $default usage hint")
            return received, hint

    received, hint = run(body())
    assert received == ["hello from alice", "hello from alice"]
    assert "sendmessage" in hint
    assert gateway.shutdown() == 0


def load_backend():
    """examples/chat/backend.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("chat_backend", EXAMPLE / "backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chat_backend_signs_as_botocore_does():
    """The backend's stdlib SigV4 gives botocore's signatures (the vectors of
    crates/sockway-gateway/src/aws/sigv4/tests.rs, computed with botocore 1.44.8)."""
    import datetime

    backend = load_backend()
    url = "http://127.0.0.1:8080/dev/@connections/L0SM9cOFvHcCIhw%3D"
    signed_at = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.timezone.utc)
    for token, signed_headers, signature in [
        (None, "host;x-amz-date",
         "ca270d315f995cf62041f822177d4d0e321f227c765e2b1eabedd121deea2ae6"),
        ("FQoGZXIvYXdzEXAMPLETOKEN//+=", "host;x-amz-date;x-amz-security-token",
         "ea6f45407925c0a4596c13c1fdbadbce0e6ed50ce51c878406ba3a2bb157020f"),
    ]:
        headers = backend.sigv4_headers("POST", url, b'{"hello":"world"}', "AKIDEXAMPLE",
                                        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1",
                                        token, signed_at)
        assert headers["X-Amz-Date"] == "20261128T120000Z"
        assert headers["Authorization"] == (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261128/us-east-1/execute-api/aws4_request, "
            f"SignedHeaders={signed_headers}, Signature={signature}")
        assert headers.get("X-Amz-Security-Token") == token
