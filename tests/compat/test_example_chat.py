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
