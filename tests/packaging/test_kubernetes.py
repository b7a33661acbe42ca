"""The Kubernetes manifests (issue 18, point 3), plain YAML in packaging/kubernetes.

No cluster runs here, so the manifests are checked as far as that allows: each against the
Kubernetes API's OpenAPI schemas, strictly (no unknown fields), for the oldest version they
claim (1.30, the first with the preStop `sleep` action on by default) and the newest one
`kubernetes-validate` bundles; then against each other (selectors, named ports, the ConfigMap
and Secret they reference), against the container image (its user, where it reads its
config) and against sockway itself (the ConfigMap's file passes `sockway validate` with the
pod's environment and its Secret's files, the probes reach the listener that serves /health and /ready, the grace
period covers the preStop pause plus `limits.shutdown_grace`).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from support import REPO_ROOT, TIMEOUT, sockway_bin

MANIFESTS = REPO_ROOT / "packaging" / "kubernetes"
DOCKERFILE = REPO_ROOT / "packaging" / "container" / "Dockerfile"
DEPLOYMENT_DOC = REPO_ROOT / "docs" / "deployment.md"
#: The oldest Kubernetes the manifests are for, and the newest schemas bundled.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
#: A Deployment's pod name, as the downward API gives it.
POD_NAME = "sockway-5d8f7c9b6-x7k2p"


def resources() -> dict[str, dict]:
    """Every manifest's resource, by kind."""
    found = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in found, f"two {document['kind']}s"
            found[document["kind"]] = document
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly_against_the_api_schemas(version):
    kinds = set()
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(document, version, strict=True)
            kinds.add(document["kind"])
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}


def test_the_validator_refuses_an_unknown_field():
    deployment = resources()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def container() -> dict:
    containers = resources()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def config_text() -> str:
    return resources()["ConfigMap"]["data"]["sockway.toml"]


def config() -> dict:
    return tomllib.loads(config_text())


def pod_environment() -> dict[str, str]:
    """The container's environment as a pod would have it, secrets replaced by samples."""
    environment = {}
    for variable in container()["env"]:
        source = variable.get("valueFrom", {})
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name"
            environment[variable["name"]] = POD_NAME
        elif "secretKeyRef" in source:
            environment[variable["name"]] = "sample-secret-0123456789"
        else:
            environment[variable["name"]] = variable["value"]
    return environment


def test_selectors_ports_and_references_agree():
    found = resources()
    deployment, service, budget = found["Deployment"], found["Service"], found["PodDisruptionBudget"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert budget["spec"]["selector"]["matchLabels"] == selector
    # A budget that lets one pod go at a time, of more than one pod.
    assert budget["spec"]["maxUnavailable"] == 1 and deployment["spec"]["replicas"] >= 2

    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} == set(ports)
    assert {port["name"] for port in service["spec"]["ports"]} == set(ports)
    # The container ports are the ports the config listens on.
    listens = config()
    assert ports["websocket"] == int(listens["gateway"]["listen"].rsplit(":", 1)[1])
    assert ports["management"] == int(listens["management"]["listen"].rsplit(":", 1)[1])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["management"]

    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in container()["volumeMounts"]:
        assert mount["name"] in volumes
    assert volumes["config"]["configMap"]["name"] == found["ConfigMap"]["metadata"]["name"]


def test_probes_reach_the_listener_that_serves_health_and_ready():
    probes = {"readinessProbe": "/ready", "livenessProbe": "/health"}
    for probe, path in probes.items():
        check = container()[probe]["httpGet"]
        assert check["path"] == path
        # /health and /ready are served on the management listener when there is one.
        assert check["port"] == "management"
    assert "operations_listen" not in config()["management"], \
        "with operations_listen, /ready moves there: point the readiness probe at it"


def test_the_pod_runs_the_images_command_as_its_user_with_the_config_where_the_image_reads_it():
    dockerfile = DOCKERFILE.read_text()
    config_path = re.search(r'^CMD \["serve", "--config", "([^"]+)"\]', dockerfile, re.M).group(1)
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert "command" not in container() and "args" not in container(), "the image's own command"
    mounts = {mount["name"]: mount for mount in container()["volumeMounts"]}
    assert f"{mounts['config']['mountPath']}/sockway.toml" == config_path
    assert set(resources()["ConfigMap"]["data"]) == {"sockway.toml"}
    security = resources()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert (str(security["runAsUser"]), str(security["runAsGroup"])) == user.groups()
    assert security["runAsNonRoot"] is True


def secret_volume() -> tuple[str, str]:
    """The Secret mounted as files: its name and where the container sees it."""
    volumes = resources()["Deployment"]["spec"]["template"]["spec"]["volumes"]
    secrets = {volume["name"]: volume["secret"]["secretName"] for volume in volumes
               if "secret" in volume}
    mounts = [mount for mount in container()["volumeMounts"] if mount["name"] in secrets]
    assert len(mounts) == 1, mounts
    return secrets[mounts[0]["name"]], mounts[0]["mountPath"]


def secret_files() -> set[str]:
    """The Secret's keys the config reads through *_file keys."""
    _, mount_path = secret_volume()
    paths = re.findall(r'_file = "([^"]+)"', config_text())
    secrets = {path for path in paths if path.startswith(f"{mount_path}/")}
    return {path.removeprefix(f"{mount_path}/") for path in secrets}


def test_the_config_passes_sockway_validate_with_the_pods_environment(tmp_path: Path):
    # The Secret's volume stood in by a directory of sample secrets.
    _, mount_path = secret_volume()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    assert {"redis-password", "management-secret-access-key"} <= secret_files()
    for key in secret_files():
        (secrets / key).write_text("sample-secret-0123456789\n")
    path = tmp_path / "sockway.toml"
    path.write_text(config_text().replace(f'"{mount_path}/', f'"{secrets}/'))
    validate = [str(sockway_bin()), "validate", "--config", str(path)]
    done = subprocess.run(validate, env=pod_environment(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    # Every *_env key names a variable the pod sets, and the node id is the pod's name.
    cluster = config()["cluster"]
    assert cluster["node_id_env"] in pod_environment()
    assert pod_environment()[cluster["node_id_env"]] == POD_NAME
    assert "node_id" not in cluster
    named = set(re.findall(r'_env = "(\w+)"', config_text()))
    assert named <= set(pod_environment()), named - set(pod_environment())
    # Without the pod's name the file does not load: the id really comes from it.
    without = {name: value for name, value in pod_environment().items() if name != "POD_NAME"}
    done = subprocess.run(validate, env=without, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2 and "POD_NAME is not set" in done.stderr, done.stderr


def test_the_grace_period_lets_every_disconnect_finish():
    pod = resources()["Deployment"]["spec"]["template"]["spec"]
    pause = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = config().get("limits", {}).get("shutdown_grace", "30s")
    assert grace.endswith("s") and grace[:-1].isdigit(), grace
    # SIGTERM comes after the pause; sockway then has shutdown_grace to deliver $disconnect.
    assert pod["terminationGracePeriodSeconds"] >= pause + int(grace[:-1]) + 10


def test_the_secret_the_docs_create_holds_every_key_the_pod_reads():
    commands = [line for line in DEPLOYMENT_DOC.read_text().splitlines()
                if line.startswith("kubectl create secret generic ")]
    assert len(commands) == 1, commands
    words = shlex.split(commands[0])
    created = {word.split("=", 2)[1] for word in words if word.startswith("--from-literal=")}
    name = words[4]
    for variable in container()["env"]:
        reference = variable.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] == name
            assert reference["key"] in created, f"{reference['key']} is not created"
    secret_name, _ = secret_volume()
    assert secret_name == name
    assert secret_files() <= created, f"{secret_files() - created} is not created"
