"""docker-compose.yml (issue 18, point 1): three gateway nodes on one Redis with the chat example.

No container can be pulled or run here, so the compose file is checked in two ways. Its
service graph: every dependency exists and is waited for in a way compose can, the three nodes
share one config that exists in the repository and passes `sockway validate` with each node's
environment, their node ids differ, the config names the services that exist (Redis, the chat
backend) on the ports they listen on, published ports do not clash, the secrets on both sides
agree, health checks are the image's, and `docker compose stop` waits longer than
`limits.shutdown_grace`. Then its topology runs here without containers: a real
`redis-server` with the compose file's password, the three nodes with the compose file's
config and environment (only the service addresses replaced by loopback ones), and the chat
backend with its compose command and environment; a client on node 1 and one on node 3 chat
through @connections calls the backend signs and sends to node 2.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from support import LISTENING, REPO_ROOT, TIMEOUT, recv, run, sockway_bin, ws_connect

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "packaging" / "container" / "Dockerfile"
CONFIG_IN_CONTAINER = "/etc/sockway/sockway.toml"
BACKEND_LISTENING = re.compile(r"^chat backend listening on (http://\S+)\s*$")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def nodes() -> dict[str, dict]:
    """The gateway services: those built from the Dockerfile."""
    found = {name: service for name, service in services().items()
             if service.get("build", {}).get("dockerfile") == "packaging/container/Dockerfile"}
    assert len(found) == 3, sorted(found)
    return found


def mounted_config(service: dict) -> Path:
    """The repository file a node mounts at the image's config path."""
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if target == CONFIG_IN_CONTAINER:
            return (REPO_ROOT / source).resolve()
    raise AssertionError(f"nothing mounted at {CONFIG_IN_CONTAINER}")


def config() -> dict:
    paths = {mounted_config(service) for service in nodes().values()}
    assert len(paths) == 1, f"the nodes share one config: {paths}"
    return tomllib.loads(paths.pop().read_text())


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def host_port(url_or_authority: str) -> tuple[str, int]:
    authority = re.sub(r"^\w+://", "", url_or_authority).split("/")[0]
    host, port = authority.rsplit(":", 1)
    return host, int(port)


def test_every_dependency_exists_and_the_graph_has_no_cycle():
    graph = {name: dict(service.get("depends_on") or {}) for name, service in services().items()}
    for name, dependencies in graph.items():
        for dependency, condition in dependencies.items():
            assert dependency in graph, f"{name} depends on a missing {dependency}"
            # service_healthy needs a health check to wait for.
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services()[dependency], dependency
    done: set[str] = set()
    while len(done) < len(graph):
        ready = [name for name in graph if name not in done and set(graph[name]) <= done]
        assert ready, f"a cycle among {set(graph) - done}"
        done |= set(ready)
    for name in nodes():
        assert graph[name]["redis"]["condition"] == "service_healthy"


def test_the_nodes_share_a_valid_config_with_their_own_ids(tmp_path: Path):
    ids = []
    for name, service in nodes().items():
        environment = service["environment"]
        path = mounted_config(service)
        assert path.is_file() and path.is_relative_to(REPO_ROOT), path
        done = subprocess.run([str(sockway_bin()), "validate", "--config", str(path)],
                              env=environment, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        named = set(re.findall(r'_env = "(\w+)"', path.read_text()))
        assert named <= set(environment), f"{name} lacks {named - set(environment)}"
        ids.append(environment[config()["cluster"]["node_id_env"]])
    assert len(set(ids)) == 3, ids
    assert "node_id" not in config()["cluster"]


def test_the_config_names_the_services_that_exist_on_their_ports():
    everything = services()
    settings = config()
    # Redis: the service, its default port, its password.
    host, port = host_port(settings["cluster"]["redis_url"])
    assert host in everything and port == 6379
    redis_command = everything[host]["command"]
    password = option(redis_command, "--requirepass")
    assert everything[host]["healthcheck"]["test"][3] == password
    secret_variable = settings["management"]["credentials"][0]["secret_access_key_env"]
    for node in nodes().values():
        assert node["environment"][settings["cluster"]["redis_password_env"]] == password
    # The chat backend: the service the integration calls, on the port it listens on, signing
    # with the key the nodes accept, calling @connections on the alias every node has.
    host, port = host_port(settings["integrations"]["backend"]["uri"])
    chat = everything[host]
    assert int(option(chat["command"], "--port")) == port
    assert chat["environment"]["AWS_ACCESS_KEY_ID"] == \
        settings["management"]["credentials"][0]["access_key_id"]
    gateway_port = int(settings["gateway"]["listen"].rsplit(":", 1)[1])
    callback_host, callback_port = host_port(option(chat["command"], "--callback-url"))
    assert callback_port == gateway_port
    assert callback_host in settings["gateway"]["domain_name_aliases"]
    for node in nodes().values():
        assert callback_host in node["networks"]["default"]["aliases"]
        assert node["environment"][secret_variable] == chat["environment"]["AWS_SECRET_ACCESS_KEY"]
    # The chat's files come from the repository, where its command runs them.
    source, target, *_ = chat["volumes"][0].split(":")
    assert (REPO_ROOT / source / "backend.py").is_file()
    assert option(chat["command"], "python") == f"{target}/backend.py"
    # So does the resuming client its page loads.
    mounts = dict(volume.split(":")[1::-1] for volume in chat["volumes"])
    resume_client = Path(option(chat["command"], "--resume-client"))
    assert (REPO_ROOT / mounts[str(resume_client.parent)] / resume_client.name).is_file()
    # The page it serves connects to a node's published port, by a name the nodes answer to.
    ws_host, ws_port = host_port(option(chat["command"], "--ws-url"))
    assert ws_host in [settings["gateway"]["domain_name"], *settings["gateway"]["domain_name_aliases"]]
    assert f"{ws_port}:{gateway_port}" in nodes()["sockway-1"]["ports"]


def test_published_ports_do_not_clash_and_reach_the_listeners():
    published = [port.split(":")[0] for service in services().values()
                 for port in service.get("ports", [])]
    assert len(published) == len(set(published)), published
    gateway_port = config()["gateway"]["listen"].rsplit(":", 1)[1]
    for name, node in nodes().items():
        assert [port.split(":")[1] for port in node["ports"]] == [gateway_port], name


def test_health_checks_and_stopping_match_the_image_and_the_grace_period():
    dockerfile = DOCKERFILE.read_text()
    image_check = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", dockerfile.replace("\\\n", " "),
                            re.M).group(1)
    grace = config()["limits"]["shutdown_grace"]
    for name, node in nodes().items():
        assert node["healthcheck"]["test"] == ["CMD", *yaml.safe_load(image_check)], name
        assert int(node["stop_grace_period"].removesuffix("s")) > int(grace.removesuffix("s"))
        assert (REPO_ROOT / node["build"]["context"] / node["build"]["dockerfile"]).is_file()


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_topology_chats_across_nodes_without_containers(tmp_path: Path, start_process):
    """The compose file's services as processes on this machine."""
    everything = services()
    settings = config()
    redis_host, _ = host_port(settings["cluster"]["redis_url"])
    redis_socket = tmp_path / "redis.sock"
    redis_command = everything[redis_host]["command"]
    redis = start_process("redis", [*redis_command, "--port", "0", "--unixsocket",
                                    str(redis_socket), "--save", ""])
    redis.wait_line(re.compile(r".*ready to accept connections", re.IGNORECASE))

    # The nodes' config with the services' addresses replaced by loopback ones. The chat
    # backend starts after the nodes (its callback names node 2), on a port chosen now.
    chat_port = free_port()
    text = mounted_config(nodes()["sockway-1"]).read_text()
    text, redis_urls = re.subn(r'(?m)^redis_url = "[^"]*"',
                               f'redis_url = "redis+unix://{redis_socket}"', text)
    text, uris = re.subn(r'(?m)^uri = "http://[^/]*/', f'uri = "http://127.0.0.1:{chat_port}/',
                         text)
    assert redis_urls == 1 and uris == 1, "packaging/compose/sockway.toml changed shape"
    local_config = tmp_path / "sockway.toml"
    local_config.write_text(text)

    urls = {}
    for name, node in nodes().items():
        argv = [str(sockway_bin()), "serve", "--config", str(local_config),
                "--listen", "127.0.0.1:0"]
        gateway = start_process(name, argv, {"PATH": "/usr/bin:/bin", **node["environment"]})
        urls[name] = gateway.wait_line(LISTENING).group(1)
    # Each node joined under the id its environment gives it.
    password = option(redis_command, "--requirepass")
    cli = ["redis-cli", "-s", str(redis_socket), "-a", password, "--no-auth-warning"]
    keys = subprocess.run([*cli, "--scan", "--pattern", "sockway:*:node"], capture_output=True,
                          text=True, timeout=TIMEOUT, check=True).stdout.split()
    joined = {subprocess.run([*cli, "GET", key], capture_output=True, text=True, timeout=TIMEOUT,
                             check=True).stdout.split("/")[0] for key in keys}
    assert joined == {node["environment"]["SOCKWAY_NODE_ID"] for node in nodes().values()}

    chat = everything["chat"]
    command = list(chat["command"])
    command[0] = sys.executable
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(chat_port)
    command[command.index("--callback-url") + 1] = urls["sockway-2"].replace("ws://", "http://")
    command[command.index("/app/backend.py")] = str(REPO_ROOT / "examples" / "chat" / "backend.py")
    command[command.index("--resume-client") + 1] = str(REPO_ROOT / "clients" / "js" / "sockway-resume.js")
    backend = start_process("chat", command, {"PATH": "/usr/bin:/bin", **chat["environment"]})
    backend.wait_line(BACKEND_LISTENING)

    async def chat_across_nodes():
        async with ws_connect(urls["sockway-1"]) as alice, ws_connect(urls["sockway-3"]) as bob:
            await alice.send('{"action":"sendmessage","data":"hello from node 1"}')
            first = await asyncio.gather(recv(alice, "alice's broadcast, on node 1"),
                                         recv(bob, "alice's broadcast, on node 3"))
            await bob.send('{"action":"sendmessage","data":"hello from node 3"}')
            second = await asyncio.gather(recv(alice, "bob's broadcast, on node 1"),
                                          recv(bob, "bob's broadcast, on node 3"))
            return first, second

    first, second = run(chat_across_nodes())
    assert first == ["hello from node 1"] * 2
    assert second == ["hello from node 3"] * 2
