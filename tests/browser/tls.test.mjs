// wss:// with the TLS stacks of browsers and Node: headless Chromium (BoringSSL) and Node's
// `ws` (OpenSSL) send messages below, at and above a TLS record's 16 KiB, and a burst sent back
// to back, through a gateway with `[tls]`; each comes back through an HTTP integration that
// echoes it. Over TLS 1.3 the gateway protects the records itself once the handshake is done,
// so this is its record layer against two more implementations.
//
// The certificate is tests/compat/tls/cert.pem (self-signed, 127.0.0.1): Node trusts it as its
// CA, the browser context ignores certificate errors. The gateway is the real sockway binary
// on port 0; the page and the echo backend are served by this file on port 0. Nothing sleeps:
// every wait is for a page state or a message under a deadline.
//
// Environment: SOCKWAY_BIN (default target/debug/sockway), CHROMIUM_BIN (default
// /usr/bin/chromium).

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import WebSocket from "ws";

import {
  ARTIFACTS,
  ChildProcess,
  REPO_ROOT,
  TIMEOUT_MS,
  launchChromium,
  listenOnLoopback,
  sockwayBin,
  tearDown,
  trackedProcesses,
} from "./harness.mjs";

const GATEWAY_LISTENING = /^sockway listening on (wss:\/\/\S+?)\/?\s*$/;
const CERT = path.join(REPO_ROOT, "tests/compat/tls/cert.pem");
const KEY = path.join(REPO_ROOT, "tests/compat/tls/key.pem");

/** What each client sends: below a record, about one, just over one, two records. */
const SIZES = [5, 16_320, 16_391, 30_000];
/** Then this many messages back to back, before reading any answer. */
const BURST = 40;

function config(echoUrl) {
  return `
[gateway]
listen = "127.0.0.1:0"
stage = "dev"
api_id = "a1b2c3d4e5"

[tls]
cert_file = ${JSON.stringify(CERT)}
key_file = ${JSON.stringify(KEY)}

[routes."$default"]
integration = "echo"
route_response = true

[integrations.echo]
type = "http"
uri = "${echoUrl}"
`;
}

/** The messages a client sends, in order; each must come back as it went. */
function messages() {
  const sized = SIZES.map((size, index) => `${index}:`.padEnd(size, "x"));
  const burst = Array.from({ length: BURST }, (_, index) => `burst ${index} `.padEnd(100 + index * 211, "y"));
  return [...sized, ...burst];
}

// The page: sends the messages in `messages()` order (the sized ones one at a time, the burst at
// once) and records in data attributes whether every echo matched.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>wss</title></head>
<body>
<script>
const SIZES = ${JSON.stringify(SIZES)};
const BURST = ${BURST};
${messages.toString()}
function start() {
  const url = new URLSearchParams(location.search).get("ws");
  const expected = messages();
  const socket = new WebSocket(url);
  let next = 0;
  const received = [];
  const send = () => {
    if (next < SIZES.length) {
      socket.send(expected[next++]);
    } else {
      while (next < expected.length) socket.send(expected[next++]);
    }
  };
  socket.onopen = () => { document.body.dataset.opened = "true"; send(); };
  socket.onmessage = (event) => {
    received.push(event.data);
    if (received.length <= SIZES.length) send();
    if (received.length === expected.length) {
      const sorted = (list) => [...list].sort();
      document.body.dataset.matched = String(
        JSON.stringify(sorted(received)) === JSON.stringify(sorted(expected)));
      document.body.dataset.count = String(received.length);
    }
  };
  socket.onclose = (event) => { document.body.dataset.closed = String(event.code); };
}
start();
</script>
</body></html>`;

const processes = trackedProcesses();
let temporaryDirectory;
let browser;
let server;
let siteUrl;
let wsUrl;

/** The page, and the echo backend: a Lambda proxy result whose body is the message's. */
async function startSite() {
  server = createServer((request, response) => {
    if (request.method === "POST") {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        response.writeHead(200, { "Content-Type": "application/json" });
        response.end(JSON.stringify({ statusCode: 200, body: event.body }));
      });
      return;
    }
    response.writeHead(200, { "Content-Type": "text/html" });
    response.end(PAGE);
  });
  siteUrl = `http://${await listenOnLoopback(server)}`;
}

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  temporaryDirectory = await mkdtemp(path.join(tmpdir(), "sockway-tls-"));
  await startSite();
  const configPath = path.join(temporaryDirectory, "sockway.toml");
  await writeFile(configPath, config(`${siteUrl}/echo`));
  const gateway = new ChildProcess("sockway-tls", sockwayBin(), ["serve", "--config", configPath]);
  processes.push(gateway);
  wsUrl = (await gateway.waitLine(GATEWAY_LISTENING))[1];
  browser = await launchChromium();
});

after(() => tearDown({
  browser, processes, close: [() => server?.close()], directory: temporaryDirectory,
}));

test("Chromium carries messages across TLS record boundaries over wss://", async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  try {
    await page.goto(`${siteUrl}/?ws=${encodeURIComponent(wsUrl)}`, { timeout: TIMEOUT_MS });
    await page.waitForFunction(
      () => document.body.dataset.matched !== undefined || document.body.dataset.closed !== undefined,
      null,
      { timeout: TIMEOUT_MS },
    );
    const data = await page.evaluate(() => ({ ...document.body.dataset }));
    await page.screenshot({ path: path.join(ARTIFACTS, "tls-chromium.png") });
    assert.equal(data.closed, undefined, `the socket closed: ${JSON.stringify(data)}`);
    assert.equal(data.count, String(messages().length));
    assert.equal(data.matched, "true");
  } finally {
    await context.close();
  }
});

test("Node's ws (OpenSSL) carries messages across TLS record boundaries over wss://", async () => {
  const socket = new WebSocket(wsUrl, { ca: await readFile(CERT) });
  const expected = messages();
  const received = [];
  const done = new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`${received.length} echoes within the deadline`)), TIMEOUT_MS);
    socket.on("error", reject);
    socket.on("close", (code) => reject(new Error(`closed with ${code}`)));
    let next = 0;
    const send = () => {
      if (next < SIZES.length) {
        socket.send(expected[next++]);
      } else {
        while (next < expected.length) socket.send(expected[next++]);
      }
    };
    socket.on("open", () => {
      assert.equal(socket._socket.getProtocol(), "TLSv1.3");
      send();
    });
    socket.on("message", (data) => {
      received.push(data.toString("utf8"));
      if (received.length <= SIZES.length) send();
      if (received.length === expected.length) {
        clearTimeout(deadline);
        resolve();
      }
    });
  });
  try {
    await done;
    assert.deepEqual([...received].sort(), [...expected].sort());
  } finally {
    socket.removeAllListeners("close");
    socket.close(1000);
  }
});
