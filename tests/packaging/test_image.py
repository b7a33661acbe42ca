"""The container image (issue 18, point 1).

No base image can be pulled here, and `podman run` cannot start a container on these machines
(crun cannot set rlimits or cgroups in the sandbox). So the image is built as a user without a
registry would build it, with packaging/container/build-offline.sh (the Dockerfile's runtime
stage on a stand-in for its distroless base, from this build's binary), its files are exported
with `podman create` + `podman export`, and its entrypoint and command run the way a runtime
would run them: as the image's user, with the image's environment, chrooted into its files, in
a network namespace of its own (so the image's port 8080 is used as configured, clashing with
nothing). A real WebSocket client then talks to it from inside that namespace, the image's
HEALTHCHECK command runs there, and the image's stop signal stops it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import REPO_ROOT, TIMEOUT, sockway_bin

CONTAINER = REPO_ROOT / "packaging" / "container"
#: Where the image reads its configuration (docs/deployment.md, "Container image").
CONFIG_PATH = "/etc/sockway/sockway.toml"
#: distroless's `nonroot` user and group.
NONROOT = "65532:65532"
LISTENING = re.compile(r"^sockway listening on (ws://\S+)\s*$")


@dataclass
class Image:
    tag: str
    #: `podman image inspect`'s object.
    inspect: dict
    #: The image's files, exported and extracted.
    rootfs: Path

    @property
    def config(self) -> dict:
        return self.inspect["Config"]


def podman(*args: str) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    work = tmp_path_factory.mktemp("image")
    # Debug information is most of a debug build's size; the image gets the code without it.
    binary = work / "sockway"
    subprocess.run(["strip", "-o", str(binary), str(sockway_bin())], check=True)
    tag = f"localhost/sockway-test:{os.getpid()}"
    built = subprocess.run([str(CONTAINER / "build-offline.sh"), "--binary", str(binary),
                            "--tag", tag], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip().splitlines()[-1] == tag
    rootfs = work / "rootfs"
    try:
        inspect = json.loads(podman("image", "inspect", tag))[0]
        container = podman("create", "--no-healthcheck", tag).strip()
        try:
            podman("export", "-o", str(work / "image.tar"), container)
        finally:
            podman("rm", container)
        rootfs.mkdir()
        subprocess.run(["tar", "-xf", str(work / "image.tar"), "-C", str(rootfs)], check=True)
        (work / "image.tar").unlink()
        yield Image(tag, inspect, rootfs)
    finally:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, timeout=120)
        shutil.rmtree(rootfs, ignore_errors=True)
        binary.unlink(missing_ok=True)


def test_the_image_runs_sockway_as_nonroot_with_its_config_at_the_documented_path(image):
    config = image.config
    assert config["User"] == NONROOT
    assert config["Entrypoint"] == ["/usr/local/bin/sockway"]
    assert config["Cmd"] == ["serve", "--config", CONFIG_PATH]
    assert config["StopSignal"] == "SIGTERM"
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    assert image.inspect["Healthcheck"]["Test"] == [
        "CMD", "/usr/local/bin/sockway", "health", "--config", CONFIG_PATH]
    # The user exists in the image, and is not root.
    passwd = (image.rootfs / "etc" / "passwd").read_text()
    assert "nonroot:x:65532:65532:" in passwd
    # The baked config is the repository's, and valid.
    baked = image.rootfs / CONFIG_PATH.lstrip("/")
    assert baked.read_text() == (CONTAINER / "sockway.toml").read_text()
    validated = subprocess.run([str(sockway_bin()), "validate", "--config", str(baked)],
                               capture_output=True, text=True, timeout=TIMEOUT)
    assert validated.returncode == 0, validated.stderr
    assert 'listen = "0.0.0.0:8080"' in baked.read_text()


def in_namespace_of(pid: int, argv: list[str]) -> subprocess.CompletedProcess:
    """Runs `argv` in the network namespace of process `pid`."""
    return subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv],
                          capture_output=True, text=True, timeout=TIMEOUT * 2)


def as_in_image(image: Image, argv: list[str]) -> list[str]:
    """`argv` run in the image's files, as its user, with only its environment."""
    return ["/usr/bin/env", "-i", *image.config.get("Env", []), "/usr/sbin/chroot",
            f"--userspec={image.config['User']}", str(image.rootfs), *argv]


def test_the_image_serves_websockets_answers_its_healthcheck_and_stops_on_its_signal(
        image, start_process):
    command = image.config["Entrypoint"] + image.config["Cmd"]
    # unshare, sh, env and chroot each exec the next: the process is sockway's from then on.
    gateway = start_process("image", [
        "unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
        *as_in_image(image, command)])
    ws_url = gateway.wait_line(LISTENING).group(1)
    assert ws_url == "ws://0.0.0.0:8080/dev"
    pid = gateway.process.pid
    status = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1)
    assert uid == "65532", status

    probe = in_namespace_of(pid, [sys.executable, str(Path(__file__).with_name("ws_probe.py")),
                                  "ws://127.0.0.1:8080/dev", "http://127.0.0.1:8080"])
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert report == {
        "reply": "sockway is running; mount your own config at /etc/sockway/sockway.toml",
        "health": 200,
        "ready": 200,
    }

    healthcheck = image.inspect["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD"
    checked = in_namespace_of(pid, as_in_image(image, healthcheck[1:]))
    assert checked.returncode == 0, checked.stderr
    assert "healthy" in checked.stdout

    gateway.signal(signal.Signals[image.config["StopSignal"]])
    assert gateway.wait_exit(TIMEOUT) == 0, gateway.log_tail()
    assert "shutdown complete" in gateway.log_tail()
