"""Prometheus alerting rules and the Grafana dashboard (issue 18, point 8).

The rules pass `promtool check rules` and their unit tests (`promtool test rules`), which make
every alert fire in one case and stay silent in another. The dashboard's queries pass promtool
too (as recording rules of a generated file), and every metric and label they name, and every
one the rules name, is one the real binary exports: a cluster-mode gateway on a real
`redis-server` is driven through every path the dashboard shows (connections, messages, a
failing integration, a throttled route, an authorizer, `@connections`, `$disconnect`) and its
`/metrics` is scraped.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from support import (REPO_ROOT, TIMEOUT, BackendRequest, GatewayProcess, MockBackend, Reply,
                     echo_responder, recv, run, ws_connect)

PROMETHEUS = REPO_ROOT / "packaging" / "prometheus"
RULES = PROMETHEUS / "sockway-alerts.yml"
RULE_TESTS = PROMETHEUS / "sockway-alerts.test.yml"
DASHBOARD = REPO_ROOT / "packaging" / "grafana" / "sockway-dashboard.json"

#: Labels Prometheus adds to every scraped series (the target's), not the binary.
TARGET_LABELS = {"instance", "job"}
#: Series Prometheus makes itself, which the rules may use.
PROMETHEUS_SERIES = {"up"}
#: Grafana's variables, replaced by what Grafana would send, so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s",
                     "$job": ".*", "$instance": ".*", "$stage": ".*"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


# --- the rules ------------------------------------------------------------------------


def test_the_alerting_rules_pass_promtool_and_their_unit_tests():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The example configuration that loads them.
    config = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS: 8 rules found" in config.stdout


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not():
    alerts = [rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule]
    assert set(alerts) >= {"SockwayConnectionsDropping", "SockwayDisconnectRetries",
                           "SockwayDisconnectUndeliverable", "SockwayIntegrationErrors",
                           "SockwayRedisDown", "SockwayConfigReloadRefused"}
    fires, silent = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert fires == set(alerts), f"never fired: {set(alerts) - fires}"
    assert silent == set(alerts), f"never checked silent: {set(alerts) - silent}"


# --- the dashboard --------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, variables included."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.+), *(\w+)\)", query)
            assert inner, f"variable {variable['name']}: {query}"
            queries.append((f"variable {variable['name']}", inner.group(1)))
    return queries


def substitute(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace("$default", "").replace("$disconnect", ""), expr
    return expr


def test_the_dashboard_is_well_formed():
    board = dashboard()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    occupied: set[tuple[int, int]] = set()
    variables = {variable["name"] for variable in board["templating"]["list"]}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert panel.get("description"), panel["title"]
        for target in panel["targets"]:
            for used in re.findall(r"\$(\w+)", target["expr"]):
                assert used.startswith("__") or used in variables or used in (
                    "default", "disconnect"), f"{panel['title']}: ${used} is not a variable"


def test_the_dashboard_queries_pass_promtool(tmp_path: Path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": substitute(expr)}
        for index, (_, expr) in enumerate(dashboard_queries())]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- names against a real scrape ----------------------------------------------------------

IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "Inf", "NaN",
            # Aggregations, which may stand before `by (...)` rather than their parenthesis.
            "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression uses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    metrics, labels = set(), set()
    position = 0
    while position < len(expr):
        character = expr[position]
        if character == "{":
            end = expr.index("}", position)
            labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", expr[position:end]))
            position = end + 1
            continue
        if character.isdigit():  # a number or a duration, such as 0.99 or 5m
            position = re.compile(r"[0-9.eE+]+[a-z]*").match(expr, position).end()
            continue
        match = IDENTIFIER.match(expr, position)
        if not match:
            position += 1
            continue
        word = match.group()
        position = match.end()
        rest = expr[position:].lstrip()
        if word in LABEL_LISTS and rest.startswith("("):
            end = expr.index(")", position)
            labels |= set(IDENTIFIER.findall(expr[position:end]))
            position = end + 1
        elif word in KEYWORDS or rest.startswith("("):
            continue  # an operator, or a function or aggregation
        else:
            metrics.add(word)
    return metrics, labels


def test_names_in_reads_promql():
    assert names_in('sum by (le, route) (rate(IntegrationLatency_bucket{stage=~"$stage"}[1m]))') \
        == ({"IntegrationLatency_bucket"}, {"le", "route", "stage"})
    assert names_in('a < on (job) group_left () (count by (job) (b{x="{y}"}) - 1) and c offset 5m') \
        == ({"a", "b", "c"}, {"job", "x"})
    assert names_in("histogram_quantile(0.99, x) > 0.5 * max_over_time(y[10m])") \
        == ({"x", "y"}, set())


def parse_exposition(text: str) -> dict[str, set[str]]:
    """Series names in a /metrics text, each with the label names it carries."""
    families: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s", line)
        assert match, line
        labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', match.group(2) or ""))
        families.setdefault(match.group(1), set()).update(labels)
    return families


def authorizing_responder(request: BackendRequest) -> Reply:
    """The mock backend: an HTTP authorizer at /authorize (token "good" allowed, anything else
    401), an OTLP/HTTP collector taking every export at /v1/traces, the lifecycle and message
    routes behind them."""
    if request.path == "/v1/traces":
        return Reply(200, b"", {"Content-Type": "application/x-protobuf"})
    if request.path.startswith("/authorize"):
        event = request.event
        token = (event.get("queryStringParameters") or {}).get("token")
        if token != "good":
            return Reply(401, b'{"message":"Unauthorized"}')
        policy = {"principalId": "tester", "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow",
                           "Resource": event["methodArn"]}]}}
        return Reply(200, json.dumps(policy).encode(), {"Content-Type": "application/json"})
    return echo_responder(request)


@pytest.fixture
def scrape(tmp_path: Path, start_process) -> dict[str, set[str]]:
    """/metrics of a cluster-mode gateway, tracing, after traffic through every path the
    dashboard shows."""
    socket = tmp_path / "redis.sock"
    redis = start_process("redis", ["redis-server", "--port", "0", "--unixsocket", str(socket),
                                    "--save", "", "--appendonly", "no"])
    redis.wait_line(re.compile(r".*ready to accept connections", re.IGNORECASE))
    backend = MockBackend()
    backend.responder = authorizing_responder
    base = backend.uri.removesuffix("/events")
    config = tmp_path / "sockway.toml"
    config.write_text(f"""
[gateway]
listen = "127.0.0.1:0"
stage = "dev"
route_selection_expression = "$request.body.action"

[routes."$connect"]
integration = "backend"
[routes."$disconnect"]
integration = "backend"
[routes.sendmessage]
integration = "backend"
route_response = true
[routes.fail]
integration = "broken"
route_response = true
[routes.slow]
integration = "backend"
throttling_rate_limit = 0.001
throttling_burst_limit = 1

[integrations.backend]
type = "http"
uri = "{backend.uri}"
[integrations.broken]
type = "mock"
status_code = 500
body = "broken"

[authorizer]
type = "http"
uri = "{base}/authorize"
identity_sources = ["route.request.querystring.token"]

[cluster]
redis_url = "redis+unix://{socket}"

[tracing]
endpoint = "{base}"
export_interval = "50ms"
""")
    gateway = GatewayProcess(config, tmp_path / "sockway.log")
    try:
        gateway.wait_ready()

        async def traffic() -> None:
            async with ws_connect(gateway.ws_url + "?token=good") as client:
                await client.send('{"action":"sendmessage","data":"hi"}')
                await recv(client, "the echo")
                await client.send('{"action":"fail"}')
                await recv(client, "the failed integration's answer")
                await client.send('{"action":"slow"}')
                await client.send('{"action":"slow"}')
                await recv(client, "the throttled message's error frame")
                connection_id = backend.events("CONNECT")[0]["requestContext"]["connectionId"]
                url = f"{gateway.management_url}/@connections/{connection_id.replace('=', '%3D')}"
                with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
                    assert answer.status == 200
            try:
                async with ws_connect(gateway.ws_url + "?token=bad"):
                    pass
            except Exception:  # the authorizer's 401
                pass

        run(traffic())
        # The access log's DISCONNECT line is written after the delivery was counted.
        gateway.wait_line(re.compile(r'.*"eventType":"DISCONNECT".*"status":"200"'))
        metrics_url = gateway.management_url.rsplit("/", 1)[0] + "/metrics"
        with urllib.request.urlopen(metrics_url, timeout=TIMEOUT) as answer:
            families = parse_exposition(answer.read().decode())
    finally:
        gateway.stop()
        backend.close()
    return families


def test_every_name_the_dashboard_and_the_rules_use_is_exported(scrape):
    exported_labels = set().union(*scrape.values()) | TARGET_LABELS
    checked = list(dashboard_queries())
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        checked += [(rule["alert"], rule["expr"]) for rule in group["rules"]]
    used_families = set()
    for where, expr in checked:
        metrics, labels = names_in(substitute(expr))
        assert metrics, f"{where}: no metric in {expr}"
        for metric in metrics - PROMETHEUS_SERIES:
            assert metric in scrape, f"{where}: {metric} is not exported (has: {sorted(scrape)})"
            used_families.add(metric)
        # A label must be on one of the series the expression reads (or be a target label).
        available = set().union(*(scrape.get(metric, set()) for metric in metrics)) | TARGET_LABELS
        assert labels <= available, f"{where}: labels {labels - available} not on {metrics}"
        assert labels <= exported_labels
    # The dashboard shows every family with a name of its own (histograms by their buckets).
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used_families}
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in scrape}
    assert families == shown, f"exported but on no panel: {sorted(families - shown)}"
