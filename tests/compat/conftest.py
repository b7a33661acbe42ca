"""Fixtures: a recording mock backend, config files, the real sockway binary and a boto3 client.

Each test gets its own backend and its own gateway process on port 0. Every process a test
starts goes through `start_process`, which stops it at teardown (SIGTERM, then SIGKILL if it
does not exit in time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from support import ChildProcess, GatewayProcess, MockBackend, management_client, render_config


@pytest.fixture
def backend() -> Iterator[MockBackend]:
    mock = MockBackend()
    yield mock
    mock.close()


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[[str, list[str]], ChildProcess]]:
    """`start_process(name, argv)` starts a process that is stopped at teardown."""
    started: list[ChildProcess] = []

    def start(name: str, argv: list[str]) -> ChildProcess:
        child = ChildProcess(name, argv, tmp_path / f"{name}-{len(started)}.log")
        started.append(child)
        return child

    yield start
    for child in reversed(started):
        child.stop()


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """`start_gateway(config_text, *extra_args)` writes the config and starts `sockway serve`."""
    started: list[GatewayProcess] = []

    def start(config_text: str, *extra_args: str) -> GatewayProcess:
        index = len(started)
        config_path = tmp_path / f"sockway-{index}.toml"
        config_path.write_text(config_text)
        gateway = GatewayProcess(config_path, tmp_path / f"sockway-{index}.log", extra_args)
        # Registered before waiting, so a gateway that never gets ready is still stopped.
        started.append(gateway)
        gateway.wait_ready()
        return gateway

    yield start
    for gateway in reversed(started):
        gateway.stop()


@pytest.fixture
def gateway(backend: MockBackend, start_gateway) -> GatewayProcess:
    """sockway with `$connect`, `$disconnect`, `sendmessage` and a two-way `$default` on the mock."""
    return start_gateway(render_config(backend.uri))


@pytest.fixture
def management_credentials() -> tuple[str, str]:
    """The (access key id, secret) pair `signed_gateway` requires @connections requests to use."""
    return "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def signed_gateway(backend: MockBackend, start_gateway,
                   management_credentials: tuple[str, str]) -> GatewayProcess:
    """Like `gateway`, with `[[management.credentials]]`: @connections requires SigV4."""
    access_key_id, secret = management_credentials
    credentials = ("[[management.credentials]]\n"
                   f'access_key_id = "{access_key_id}"\n'
                   f'secret_access_key = "{secret}"\n')
    return start_gateway(render_config(backend.uri, extra=credentials))


@pytest.fixture
def management(gateway: GatewayProcess):
    """boto3's apigatewaymanagementapi client pointed at the gateway's @connections endpoint."""
    return management_client(gateway.management_url)
