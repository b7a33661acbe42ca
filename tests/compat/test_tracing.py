"""OpenTelemetry traces (`[tracing]`) received by real OTLP receivers on loopback: the official
`opentelemetry-proto` messages decode what sockway sends, over OTLP/HTTP (a protobuf body on
`POST /v1/traces`) and over OTLP/gRPC (grpcio's server, the `TraceService/Export` method).

The checks follow one connection: the upgrade (`CONNECT`, its authorizer and `$connect` calls),
a routed message (`MESSAGE`, route selection, the integration call whose context the backend
receives as `traceparent`), an `@connections` POST continuing its caller's `traceparent`, and
`$disconnect`; and that spans still queued at SIGTERM are sent before the process exits."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from support import TIMEOUT, BackendRequest, Reply, echo_responder, recv, render_config, run, ws_connect

#: A valid X-Ray header a client (or AWS's edge in front of it) sends; Sampled=1 makes the
#: trace recorded whatever the ratio.
CLIENT_TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
CLIENT_ROOT = "5759e988bd862e3fe1be46a994272793"
CLIENT_PARENT = "53995c3f42cd8ad8"

#: The caller's context on an @connections POST.
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@dataclass
class Received:
    """One span as the receiver decoded it, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    def attribute(self, key: str) -> Any:
        for attribute in self.span.attributes:
            if attribute.key == key:
                value = attribute.value
                return getattr(value, value.WhichOneof("value"))
        return None

    def __repr__(self) -> str:
        attributes = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in self.span.attributes}
        return (f"<{self.name} {self.trace_id}/{self.span_id} parent={self.parent_id or '-'} "
                f"links={[link.span_id.hex() for link in self.span.links]} {attributes}>")


class Collector:
    """What an OTLP receiver got: every span of every export request."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.requests = 0
        self._changed = threading.Condition()

    def record(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._changed:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = {a.key: getattr(a.value, a.value.WhichOneof("value"))
                            for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(Received(span, resource))
            self._changed.notify_all()

    def wait_span(self, predicate: Callable[[Received], bool], what: str,
                  timeout: float = TIMEOUT) -> Received:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for span in self.spans:
                    if predicate(span):
                        return span
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no span {what} within {timeout}s; received: {self.spans}")
                self._changed.wait(remaining)

    def named(self, name: str, **attributes: Any) -> Received:
        return self.wait_span(
            lambda span: span.name == name
            and all(span.attribute(key) == value for key, value in attributes.items()),
            f"named {name} with {attributes}")


class HttpReceiver(Collector):
    """OTLP/HTTP: `POST /v1/traces` with an `application/x-protobuf` body."""

    protocol = "http/protobuf"

    def __init__(self) -> None:
        super().__init__()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.answer(404, b"")
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.record(request)
                self.answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="otlp-http", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)


class GrpcReceiver(Collector):
    """OTLP/gRPC: grpcio's server with the official `TraceService`."""

    protocol = "grpc"

    def __init__(self) -> None:
        super().__init__()
        collector = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 (the service's method name)
                collector.record(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self._server)
        self._port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def close(self) -> None:
        self._server.stop(grace=None).wait(TIMEOUT)


@pytest.fixture(params=["http", "grpc"])
def receiver(request) -> Iterator[Collector]:
    collector = HttpReceiver() if request.param == "http" else GrpcReceiver()
    yield collector
    collector.close()


def authorizing_responder(request: BackendRequest) -> Reply:
    """An HTTP authorizer at /authorize that allows everyone; events are echoed."""
    if request.path.startswith("/authorize"):
        policy = {"principalId": "tester", "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow",
                           "Resource": request.event["methodArn"]}]}}
        return Reply(200, json.dumps(policy).encode(), {"Content-Type": "application/json"})
    return echo_responder(request)


def tracing_config(backend, receiver: Collector, export_interval: str = "50ms") -> str:
    base = backend.uri.removesuffix("/events")
    return render_config(backend.uri, extra=f"""
[authorizer]
type = "http"
uri = "{base}/authorize"
identity_sources = ["route.request.header.User-Agent"]

[tracing]
endpoint = "{receiver.endpoint}"
protocol = "{receiver.protocol}"
export_interval = "{export_interval}"
""")


def is_event(request: BackendRequest, event_type: str) -> bool:
    """Whether `request` is an integration's event (not the authorizer's) of `event_type`."""
    event = request.event_or_none() or {}
    return request.path == "/events" and event.get("requestContext", {}).get("eventType") == event_type


def traceparent_of(request: BackendRequest) -> tuple[str, str, str]:
    """(trace id, parent span id, flags) of the `traceparent` a backend request carried."""
    value = request.header("traceparent")
    assert value, f"no traceparent on {request.method} {request.path}: {request.headers}"
    version, trace_id, parent_id, flags = value.split("-")
    assert version == "00"
    return trace_id, parent_id, flags


def test_one_connection_traced_end_to_end(backend, start_gateway, receiver):
    backend.responder = authorizing_responder
    gateway = start_gateway(tracing_config(backend, receiver))

    async def body() -> tuple[str, BackendRequest]:
        async with ws_connect(gateway.ws_url, additional_headers={"X-Amzn-Trace-Id": CLIENT_TRACE_ID}) as ws:
            await ws.send(json.dumps({"text": "hi"}))
            assert json.loads(await recv(ws, "the echo")) == {"text": "hi"}
            connect_request = await asyncio.to_thread(
                backend.wait_request, lambda r: is_event(r, "CONNECT"), "the $connect event")
            connection_id = connect_request.event["requestContext"]["connectionId"]
            post = urllib.request.Request(
                f"{gateway.management_url}/@connections/{connection_id.replace('=', '%3D')}",
                data=b"pushed", method="POST", headers={"traceparent": CALLER_TRACEPARENT})
            with await asyncio.to_thread(urllib.request.urlopen, post, timeout=TIMEOUT) as answer:
                assert answer.status == 200
            assert await recv(ws, "the pushed message") == "pushed"
            return connection_id, connect_request

    connection_id, connect_request = run(body())
    disconnect_request = backend.wait_event_request("DISCONNECT")

    # The CONNECT event keeps the client's X-Amzn-Trace-Id as it was sent.
    connect_event = connect_request.event
    assert connect_event["headers"]["X-Amzn-Trace-Id"] == CLIENT_TRACE_ID
    assert connect_event["multiValueHeaders"]["X-Amzn-Trace-Id"] == [CLIENT_TRACE_ID]

    # The upgrade continues the client's X-Ray trace: CONNECT, then the authorizer and $connect.
    connect = receiver.named("CONNECT")
    assert connect.trace_id == CLIENT_ROOT
    assert connect.parent_id == CLIENT_PARENT
    assert connect.span.kind == Span.SPAN_KIND_SERVER
    assert connect.attribute("connection_id") == connection_id
    assert connect.attribute("http.response.status_code") == 101
    assert connect.resource["service.name"] == "sockway"
    assert connect.resource["service.instance.id"]
    authorizer = receiver.named("authorizer")
    assert (authorizer.trace_id, authorizer.parent_id) == (CLIENT_ROOT, connect.span_id)
    assert authorizer.span.kind == Span.SPAN_KIND_CLIENT
    assert authorizer.attribute("authorizer.outcome") == "allow"
    connect_call = receiver.named("integration", route_key="$connect")
    assert (connect_call.trace_id, connect_call.parent_id) == (CLIENT_ROOT, connect.span_id)
    assert connect_call.attribute("http.response.status_code") == 200
    assert connect_call.attribute("url.full") == backend.uri

    # The backend received each call's own context.
    authorize_request = backend.wait_request(lambda r: r.path.startswith("/authorize"), "the authorizer call")
    assert traceparent_of(authorize_request) == (CLIENT_ROOT, authorizer.span_id, "01")
    assert traceparent_of(connect_request) == (CLIENT_ROOT, connect_call.span_id, "01")

    # A message is a trace of its own, linked to the connection's.
    message = receiver.named("MESSAGE", route_key="$default")
    assert message.trace_id != CLIENT_ROOT
    assert message.parent_id == ""
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in message.span.links] \
        == [(CLIENT_ROOT, connect.span_id)]
    assert message.attribute("connection_id") == connection_id
    selection = receiver.named("route selection")
    assert (selection.trace_id, selection.parent_id) == (message.trace_id, message.span_id)
    message_call = receiver.named("integration", route_key="$default")
    assert (message_call.trace_id, message_call.parent_id) == (message.trace_id, message.span_id)
    message_request = backend.wait_event_request("MESSAGE", "$default")
    assert traceparent_of(message_request) == (message.trace_id, message_call.span_id, "01")
    assert message_request.header("X-Amzn-Trace-Id") == (
        f"Root=1-{message.trace_id[:8]}-{message.trace_id[8:]};Parent={message_call.span_id};Sampled=1")

    # The @connections POST continues its caller's trace.
    post = receiver.named("POST /@connections/{connectionId}")
    assert (post.trace_id, post.parent_id) == (CALLER_TRACE, CALLER_SPAN)
    assert post.span.kind == Span.SPAN_KIND_SERVER
    assert post.attribute("http.response.status_code") == 200
    assert post.attribute("connection_id") == connection_id

    # $disconnect: its own trace, linked to the connection's, with its integration call.
    disconnect = receiver.named("DISCONNECT")
    assert [link.span_id.hex() for link in disconnect.span.links] == [connect.span_id]
    disconnect_call = receiver.named("integration", route_key="$disconnect")
    assert (disconnect_call.trace_id, disconnect_call.parent_id) == (disconnect.trace_id, disconnect.span_id)
    assert traceparent_of(disconnect_request) == (disconnect.trace_id, disconnect_call.span_id, "01")


def test_spans_queued_at_shutdown_are_sent_before_exit(backend, start_gateway, receiver):
    backend.responder = authorizing_responder
    # An interval far longer than the test: only the flush at shutdown can send the spans.
    gateway = start_gateway(tracing_config(backend, receiver, export_interval="10m"))

    async def body() -> None:
        async with ws_connect(gateway.ws_url) as ws:
            await ws.send(json.dumps({"text": "hi"}))
            await recv(ws, "the echo")

    run(body())
    backend.wait_event("DISCONNECT")
    assert receiver.requests == 0
    assert gateway.shutdown() == 0
    for name in ["CONNECT", "MESSAGE", "DISCONNECT"]:
        receiver.named(name)
