// Access control in a real browser: headless Chromium cannot set headers on a WebSocket, so it
// connects to an AWS_IAM $connect with a URL presigned by a backend (here a small Node server
// that asks `sockway presign`, as docs/access-control.md shows), and to an API-key $connect with
// the key in the query string, which an HTTP authorizer returns as usageIdentifierKey.
//
// Both gateways are the real sockway binary on port 0; the page and the backend are served by
// this file on port 0. Nothing sleeps: every wait is for a page state under a deadline.
//
// Environment: SOCKWAY_BIN (default target/debug/sockway), CHROMIUM_BIN (default
// /usr/bin/chromium).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import {
  ARTIFACTS,
  ChildProcess,
  TIMEOUT_MS,
  launchChromium,
  listenOnLoopback,
  sockwayBin,
  tearDown,
  trackedProcesses,
} from "./harness.mjs";

const GATEWAY_LISTENING = /^sockway listening on (ws:\/\/\S+?)\/?\s*$/;
const ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE";
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const API_KEY = "browser-key-0123456789abcdef";

/** Routes shared by both gateways: $connect accepts, $default answers {"pong":true}. */
function routes(connectSettings) {
  return `
[routes."$connect"]
integration = "ok"
${connectSettings}

[routes."$default"]
integration = "pong"
route_response = true

[integrations.ok]
type = "mock"
status_code = 200

[integrations.pong]
type = "mock"
status_code = 200
body = '{"pong":true}'
`;
}

const GATEWAY = `
[gateway]
listen = "127.0.0.1:0"
stage = "dev"
api_id = "a1b2c3d4e5"
`;

const IAM_CONFIG = `${GATEWAY}${routes('authorization_type = "AWS_IAM"')}
[[iam.credentials]]
access_key_id = "${ACCESS_KEY_ID}"
secret_access_key = "${SECRET}"
principal_arn = "arn:aws:iam::111122223333:user/presigner"

[[iam.credentials.policy]]
effect = "Allow"
action = "execute-api:Invoke"
resource = "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/$connect"
`;

function keyConfig(authorizerUrl) {
  return `${GATEWAY}api_key_selection_expression = "$context.authorizer.usageIdentifierKey"
${routes("api_key_required = true")}
[authorizer]
type = "http"
uri = "${authorizerUrl}"
identity_sources = ["route.request.querystring.key"]

[[api_keys]]
name = "browser"
value = "${API_KEY}"

[[usage_plans]]
name = "web"
api_keys = ["browser"]
`;
}

// The page: opens the WebSocket it is told to, sends one message, and records what happened
// in data attributes the test waits for.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>presigned</title></head>
<body>
<script>
async function start() {
  const params = new URLSearchParams(location.search);
  let url = params.get("ws");
  if (params.get("presign") === "1") {
    const answer = await fetch("/connect-url").then((response) => response.json());
    url = answer.url;
  }
  document.body.dataset.url = url;
  const socket = new WebSocket(url);
  socket.onopen = () => {
    document.body.dataset.opened = "true";
    socket.send(JSON.stringify({ action: "ping" }));
  };
  socket.onmessage = (event) => { document.body.dataset.reply = event.data; };
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
let iamWsUrl;
let keyWsUrl;
let iamConfigPath;

/** The backend: serves the page, presigns URLs with `sockway presign`, and authorizes. */
async function startSite() {
  server = createServer((request, response) => {
    if (request.method === "GET" && request.url.startsWith("/connect-url")) {
      // What a real backend does after checking who the browser's user is.
      execFile(sockwayBin(), ["presign", "--config", iamConfigPath, "--url",
        `${iamWsUrl}?room=browser`, "--expires", "60s"], (error, stdout, stderr) => {
        if (error) {
          response.writeHead(500).end(stderr);
          return;
        }
        response.writeHead(200, { "Content-Type": "application/json" });
        response.end(JSON.stringify({ url: stdout.trim() }));
      });
      return;
    }
    if (request.method === "POST" && request.url === "/authorize") {
      const chunks = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        const event = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        response.writeHead(200, { "Content-Type": "application/json" });
        response.end(JSON.stringify({
          principalId: "browser-user",
          policyDocument: {
            Version: "2012-10-17",
            Statement: [{ Action: "execute-api:Invoke", Effect: "Allow", Resource: event.methodArn }],
          },
          usageIdentifierKey: event.queryStringParameters.key,
        }));
      });
      return;
    }
    response.writeHead(200, { "Content-Type": "text/html" });
    response.end(PAGE);
  });
  siteUrl = `http://${await listenOnLoopback(server)}`;
}

async function startGateway(name, text) {
  const configPath = path.join(temporaryDirectory, `${name}.toml`);
  await writeFile(configPath, text);
  const gateway = new ChildProcess(name, sockwayBin(), ["serve", "--config", configPath]);
  processes.push(gateway);
  return { configPath, wsUrl: (await gateway.waitLine(GATEWAY_LISTENING))[1] };
}

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  temporaryDirectory = await mkdtemp(path.join(tmpdir(), "sockway-access-"));
  await startSite();
  const iam = await startGateway("sockway-iam", IAM_CONFIG);
  iamConfigPath = iam.configPath;
  iamWsUrl = iam.wsUrl;
  keyWsUrl = (await startGateway("sockway-key", keyConfig(`${siteUrl}/authorize`))).wsUrl;
  browser = await launchChromium();
});

after(() => tearDown({
  browser, processes, close: [() => server?.close()], directory: temporaryDirectory,
}));

/** Opens the page with `query` and waits until its socket answered or closed. */
async function outcome(query, screenshot) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${siteUrl}/?${query}`, { timeout: TIMEOUT_MS });
    await page.waitForFunction(
      () => document.body.dataset.reply !== undefined || document.body.dataset.closed !== undefined,
      null,
      { timeout: TIMEOUT_MS },
    );
    const data = await page.evaluate(() => ({ ...document.body.dataset }));
    await page.screenshot({ path: path.join(ARTIFACTS, screenshot) });
    return data;
  } finally {
    await context.close();
  }
}

test("a browser connects with a URL its backend presigned", { timeout: 60_000 }, async () => {
  const connected = await outcome("presign=1", "access-presigned.png");
  assert.equal(connected.opened, "true", JSON.stringify(connected));
  assert.equal(connected.reply, '{"pong":true}');
  assert.match(connected.url, /^ws:\/\/127\.0\.0\.1:\d+\/dev\?room=browser&X-Amz-Algorithm=AWS4-HMAC-SHA256&/);

  // The same gateway without a signature: the handshake is refused, the page never opens.
  const unsigned = await outcome(`ws=${encodeURIComponent(iamWsUrl)}`, "access-unsigned.png");
  assert.equal(unsigned.opened, undefined, JSON.stringify(unsigned));
  assert.equal(unsigned.closed, "1006");

  // A URL whose signature was altered is refused too.
  const forged = connected.url.replace("room=browser", "room=elsewhere");
  const refused = await outcome(`ws=${encodeURIComponent(forged)}`, "access-forged.png");
  assert.equal(refused.opened, undefined, JSON.stringify(refused));
});

test("a browser sends its API key in the query string", { timeout: 60_000 }, async () => {
  const keyed = `${keyWsUrl}?key=${API_KEY}`;
  const connected = await outcome(`ws=${encodeURIComponent(keyed)}`, "access-key.png");
  assert.equal(connected.opened, "true", JSON.stringify(connected));
  assert.equal(connected.reply, '{"pong":true}');

  const wrong = `${keyWsUrl}?key=not-a-key-0123456789abcdef`;
  const refused = await outcome(`ws=${encodeURIComponent(wrong)}`, "access-key-refused.png");
  assert.equal(refused.opened, undefined, JSON.stringify(refused));
  assert.equal(refused.closed, "1006");
});
