// clients/js/sockway-resume.js under Node, against the real sockway binary: no browser. The
// module is loaded with `require`, as a Node user would, and uses the runtime's WebSocket
// (Node 22 has one; run.sh gives Node 20 and 21 `--experimental-websocket`) or, passed as its
// `WebSocket` option, the `ws` package's, which users of older Node would pass. A backend written
// here records every event the gateway sends it; the test posts to the connection through the
// gateway's `@connections` API and cuts the client's TCP connection with the harness's proxy.
//
// Environment: SOCKWAY_BIN (default target/debug/sockway, relative to the repository root).

import assert from "node:assert/strict";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { WebSocket as WsPackageWebSocket } from "ws";

import {
  ARTIFACTS,
  ChildProcess,
  CuttableProxy,
  REPO_ROOT,
  TIMEOUT_MS,
  listenOnLoopback,
  sockwayBin,
  tearDown,
  trackedProcesses,
} from "./harness.mjs";

const require = createRequire(import.meta.url);
const { ResumingSocket } = require(path.join(REPO_ROOT, "clients", "js", "sockway-resume.js"));

const GATEWAY_LISTENING = /^sockway listening on (ws:\/\/\S+?)\/?\s*$/;

/**
 * An HTTP integration backend: answers every event with 200 and keeps what it received
 * (event type, connection id, close code); `changed` fires on each.
 */
class RecordingBackend extends EventTarget {
  constructor() {
    super();
    this.events = [];
  }

  async start() {
    this.server = http.createServer((request, response) => {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        const context = JSON.parse(Buffer.concat(chunks).toString("utf8")).requestContext;
        this.events.push({
          type: context.eventType,
          connectionId: context.connectionId,
          code: context.disconnectStatusCode,
        });
        response.writeHead(200, { "Content-Type": "application/json" });
        response.end(JSON.stringify({ statusCode: 200 }));
        this.dispatchEvent(new Event("changed"));
      });
    });
    return `http://${await listenOnLoopback(this.server)}/events`;
  }

  of(connectionId, type) {
    return this.events.filter((event) => event.connectionId === connectionId && event.type === type);
  }

  close() {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * Resolves once `condition()` holds, checking it now and after every event of `types` on
 * `target`; rejects after TIMEOUT_MS with `what` and `detail()`.
 */
function waitUntil(target, types, condition, what, detail = () => "") {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!condition()) return;
      finish();
      resolve();
    };
    const finish = () => {
      clearTimeout(timer);
      for (const type of types) target.removeEventListener(type, check);
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`${what} did not happen within ${TIMEOUT_MS} ms ${detail()}`));
    }, TIMEOUT_MS);
    for (const type of types) target.addEventListener(type, check);
    check();
  });
}

/** A ResumingSocket with a record of its `open` events and the messages it passed on. */
function resumingClient(url, options = {}) {
  const socket = new ResumingSocket(url, { minDelayMs: 50, maxDelayMs: 500, ...options });
  const record = { socket, opens: [], messages: [], suspensions: 0, closes: [] };
  socket.addEventListener("open", (event) => record.opens.push(event.detail));
  socket.addEventListener("message", (event) => record.messages.push(event.data));
  socket.addEventListener("suspended", () => { record.suspensions += 1; });
  socket.addEventListener("close", (event) => record.closes.push(event.detail));
  return record;
}

const processes = trackedProcesses();
let temporaryDirectory;
let backend;
let gatewayWsUrl;
let managementUrl;

before(async () => {
  assert.equal(typeof globalThis.WebSocket, "function",
    "this Node has no global WebSocket: run it with --experimental-websocket (tests/browser/run.sh does)");
  await mkdir(ARTIFACTS, { recursive: true });
  backend = new RecordingBackend();
  const backendUrl = await backend.start();
  temporaryDirectory = await mkdtemp(path.join(tmpdir(), "sockway-node-client-"));
  const configPath = path.join(temporaryDirectory, "sockway.toml");
  await writeFile(configPath, `
[gateway]
listen = "127.0.0.1:0"
stage = "dev"

[resume]
window = "30s"

[routes."$connect"]
integration = "backend"

[routes."$disconnect"]
integration = "backend"

[routes."$default"]
integration = "backend"

[integrations.backend]
type = "http"
uri = "${backendUrl}"
`);
  const gateway = new ChildProcess("sockway-node-client", sockwayBin(),
    ["serve", "--config", configPath]);
  processes.push(gateway);
  gatewayWsUrl = (await gateway.waitLine(GATEWAY_LISTENING))[1];
  managementUrl = gatewayWsUrl.replace(/^ws:/, "http:");
});

after(() => tearDown({
  processes, close: [() => backend?.close()], directory: temporaryDirectory,
}));

/** POST `data` to the connection through the gateway's @connections API; the status. */
async function post(connectionId, data) {
  const response = await fetch(`${managementUrl}/@connections/${encodeURIComponent(connectionId)}`,
    { method: "POST", body: data });
  await response.arrayBuffer();
  return response.status;
}

for (const [runtime, options] of [
  ["Node's own WebSocket", {}],
  ["the ws package's WebSocket", { WebSocket: WsPackageWebSocket }],
]) {
  test(`under Node (${runtime}) the client resumes a cut connection: same id, every post once and in order`, { timeout: 60_000 }, async () => {
    const proxy = new CuttableProxy(gatewayWsUrl);
    const client = resumingClient(await proxy.start(), options);
    const { socket } = client;
    const seen = () => `; opens ${JSON.stringify(client.opens)}, messages ${JSON.stringify(client.messages)}`;
    try {
      await waitUntil(socket, ["open"], () => client.opens.length === 1, "the first open", seen);
      const [{ connectionId, resumed }] = client.opens;
      assert.equal(resumed, false);
      assert.ok(connectionId, "the resume frame named the connection");

      const expected = [];
      const postAll = async (label, count) => {
        for (let n = 1; n <= count; n += 1) {
          const data = `${label} ${n}`;
          assert.equal(await post(connectionId, data), 200, `POST ${data}`);
          expected.push(data);
        }
      };
      await postAll("before the cut", 3);
      await waitUntil(socket, ["message"], () => client.messages.length === 3, "the first posts", seen);

      proxy.cut();
      await waitUntil(socket, ["suspended"], () => client.suspensions === 1, "the suspension", seen);
      // The gateway may not have noticed the drop yet: posts go to the dead socket or queue;
      // either way each answers 200 and must arrive.
      await postAll("during the cut", 10);
      assert.equal(socket.state, "suspended");
      proxy.restore();

      await waitUntil(socket, ["open"], () => client.opens.length === 2, "the resume", seen);
      assert.deepEqual(client.opens[1], { connectionId, resumed: true, missed: 0 });
      await postAll("after the resume", 2);
      await waitUntil(socket, ["message"], () => client.messages.length >= expected.length,
        "every post's arrival", seen);
      assert.deepEqual(client.messages, expected, "every post once and in order");

      // The backend saw one $connect and no $disconnect; a close with 1000 then ends it.
      assert.equal(backend.of(connectionId, "CONNECT").length, 1);
      assert.equal(backend.of(connectionId, "DISCONNECT").length, 0);
      socket.close();
      await waitUntil(socket, ["close"], () => client.closes.length === 1, "the close", seen);
      await waitUntil(backend, ["changed"], () => backend.of(connectionId, "DISCONNECT").length === 1,
        "the $disconnect", () => JSON.stringify(backend.events));
      assert.equal(backend.of(connectionId, "DISCONNECT")[0].code, 1000);
      assert.equal(backend.of(connectionId, "CONNECT").length, 1, "no second $connect");
      assert.equal(socket.state, "closed");
    } finally {
      socket.close();
      await proxy.close();
    }
  });
}

test("under Node a client whose connection ended while it was away opens a new one (4410)", { timeout: 60_000 }, async () => {
  const proxy = new CuttableProxy(gatewayWsUrl);
  const client = resumingClient(await proxy.start());
  const { socket } = client;
  const seen = () => `; opens ${JSON.stringify(client.opens)}, messages ${JSON.stringify(client.messages)}`;
  try {
    await waitUntil(socket, ["open"], () => client.opens.length === 1, "the first open", seen);
    const [{ connectionId }] = client.opens;
    proxy.cut();
    await waitUntil(socket, ["suspended"], () => client.suspensions === 1, "the suspension", seen);
    // The backend ends the connection while its client is away.
    const deleted = await fetch(
      `${managementUrl}/@connections/${encodeURIComponent(connectionId)}`, { method: "DELETE" });
    assert.equal(deleted.status, 204);
    await waitUntil(backend, ["changed"], () => backend.of(connectionId, "DISCONNECT").length === 1,
      "the $disconnect of the deleted connection", () => JSON.stringify(backend.events));
    proxy.restore();

    // The resume is refused with 4410; the client starts over with a new connection.
    await waitUntil(socket, ["open"], () => client.opens.length === 2, "the new connection", seen);
    const second = client.opens[1];
    assert.equal(second.resumed, false);
    assert.notEqual(second.connectionId, connectionId);
    assert.equal(await post(second.connectionId, "to the new connection"), 200);
    await waitUntil(socket, ["message"], () => client.messages.length === 1, "the post", seen);
    assert.deepEqual(client.messages, ["to the new connection"]);
    assert.equal(await post(connectionId, "to the old one"), 410);
  } finally {
    socket.close();
    await proxy.close();
  }
});
