// End to end in a real browser: the web console (GET /console on the management listener) of the
// real sockway binary, driven in headless Chromium by playwright-core.
//
// The gateway runs with [[management.credentials]], a separate management listener and a mock
// `$default` route, both listeners on port 0 (their addresses are read from the startup lines).
// One page signs in (after a wrong secret is refused), opens a WebSocket with the console's
// built-in test client, sees the connection appear in the list, opens its details, sends it a
// message from the console and sees the test client receive it, sees the route event of a frame
// the client sent, disconnects it and sees the client closed with 1000, and signs out. Nothing
// sleeps: every wait is for a page state under a deadline that fails with a message.
//
// Artifacts: artifacts/console.png (copied to docs/console.png for the README when
// UPDATE_DOCS_SCREENSHOT=1), and
// artifacts/sockway-console.log (the gateway's stderr).
//
// Environment: SOCKWAY_BIN (default target/debug/sockway, relative to the repository root),
// CHROMIUM_BIN (default /usr/bin/chromium).

import assert from "node:assert/strict";
import { copyFile, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import net from "node:net";
import path from "node:path";
import { after, before, test } from "node:test";

import {
  ARTIFACTS,
  ChildProcess,
  REPO_ROOT,
  TIMEOUT_MS,
  launchChromium,
  sockwayBin,
  tearDown,
  trackedProcesses,
} from "./harness.mjs";

const ACCESS_KEY_ID = "AKIACONSOLETEST00000";
const SECRET = "console-test-secret/EXAMPLEKEY";

const GATEWAY_LISTENING = /^sockway listening on (ws:\/\/\S+?)\/?\s*$/;
const MANAGEMENT_LISTENING = /^sockway management listening on (http:\/\/[^/\s]+)/;

const CONFIG = `
[gateway]
listen = "127.0.0.1:0"
stage = "dev"
api_id = "a1b2c3d4e5"
region = "us-east-1"

[routes."$default"]
integration = "reply"
route_response = true

[integrations.reply]
type = "mock"
status_code = 200
body = '{"reply":"hello from the mock"}'

[resume]
window = "1m"

[management]
listen = "127.0.0.1:0"

[[management.credentials]]
access_key_id = "${ACCESS_KEY_ID}"
secret_access_key = "${SECRET}"
`;

/**
 * A raw WebSocket client that asks for resume (`sockway.resume.v1`) and has its resume frame:
 * resolves with the TCP socket once the frame arrived.
 */
function resumableClient(wsUrl) {
  const url = new URL(wsUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sockway.resume.v1\r\n\r\n");
    });
    let received = "";
    const timer = setTimeout(() => reject(new Error(`no resume frame within ${TIMEOUT_MS} ms: ${received}`)),
      TIMEOUT_MS);
    socket.on("data", (chunk) => {
      received += chunk.toString("latin1");
      if (received.includes('"type":"sockway.resume"')) {
        clearTimeout(timer);
        resolve(socket);
      }
    });
    socket.on("error", reject);
  });
}

const processes = trackedProcesses();
let temporaryDirectory;
let browser;
let gatewayWsUrl;
let consoleUrl;

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  temporaryDirectory = await mkdtemp(path.join(tmpdir(), "sockway-console-"));
  const configPath = path.join(temporaryDirectory, "sockway.toml");
  await writeFile(configPath, CONFIG);
  const gateway = new ChildProcess("sockway-console", sockwayBin(), ["serve", "--config", configPath]);
  processes.push(gateway);
  gatewayWsUrl = (await gateway.waitLine(GATEWAY_LISTENING))[1];
  consoleUrl = `${(await gateway.waitLine(MANAGEMENT_LISTENING))[1]}/console`;
  browser = await launchChromium();
});

after(() => tearDown({ browser, processes, directory: temporaryDirectory }));

/** Waits for `predicate(arg)` to hold in the page; on timeout, fails with `what` and `state()`. */
async function waitFor(page, what, predicate, arg, state) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: TIMEOUT_MS });
  } catch (error) {
    const seen = state ? await state() : "";
    throw new Error(`${what} within ${TIMEOUT_MS} ms; ${seen}`, { cause: error });
  }
}

const frames = (page) => page.locator("#client-frames li").allInnerTexts();
const framesState = async (page) => `test client frames: ${JSON.stringify(await frames(page))}`;

test("the web console shows, messages and disconnects a live connection", { timeout: 90_000 }, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const policyViolations = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) policyViolations.push(message.text());
  });
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));

  try {
    const response = await page.goto(consoleUrl, { timeout: TIMEOUT_MS });
    assert.equal(response?.status(), 200, `GET ${consoleUrl}`);
    assert.match(response.headers()["content-security-policy"], /^default-src 'self';/);
    assert.equal(await page.title(), "sockway console");

    // Not signed in: the sign-in form, and nothing else.
    await page.locator("#login").waitFor({ state: "visible" });
    assert.equal(await page.locator("#console").isVisible(), false, "console hidden before sign-in");

    // A wrong secret is refused and leaves the form up.
    await page.locator("#access-key-id").fill(ACCESS_KEY_ID);
    await page.locator("#secret-access-key").fill("not-the-secret");
    await page.locator("#login-submit").click();
    await waitFor(page, "the refusal was not shown",
      () => document.getElementById("login-error").textContent.length > 0, null,
      async () => `login error: ${JSON.stringify(await page.locator("#login-error").textContent())}`);
    assert.equal(await page.locator("#login-error").textContent(), "Invalid access key id or secret access key");
    assert.equal(await page.locator("#console").isVisible(), false, "still not signed in");

    // The right pair signs in.
    await page.locator("#secret-access-key").fill(SECRET);
    await page.locator("#login-submit").click();
    await page.locator("#console").waitFor({ state: "visible" });
    assert.equal(await page.locator("#auth").textContent(), `signed in as ${ACCESS_KEY_ID}`);
    const cookies = await context.cookies(consoleUrl);
    const session = cookies.find((cookie) => cookie.name === "sockway_console");
    assert.ok(session, `session cookie set: ${JSON.stringify(cookies.map((cookie) => cookie.name))}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    assert.equal(session.path, "/console");
    await waitFor(page, "the connection count did not show 0",
      () => document.getElementById("connection-count").textContent === "0");

    // The test client is prefilled with the gateway's URL, not the management listener's.
    await waitFor(page, "the test client URL was not filled in",
      (url) => document.getElementById("client-url").value === url, gatewayWsUrl,
      async () => `client URL: ${await page.locator("#client-url").inputValue()}`);
    await page.locator("#client-query").fill("room=lobby");
    await page.locator("#client-connect").click();
    await waitFor(page, "the test client did not connect",
      () => document.getElementById("client-status").textContent === "connected", null,
      async () => framesState(page));

    // The new connection appears in the list; its details open on click.
    await waitFor(page, "the connection did not appear in the list",
      () => document.querySelectorAll("#connections tr").length === 1
        && document.getElementById("connection-count").textContent === "1", null,
      async () => `rows: ${JSON.stringify(await page.locator("#connections tr").allInnerTexts())}`);
    const row = page.locator("#connections tr").first();
    const connectionId = await row.getAttribute("data-connection-id");
    assert.match(connectionId, /^[A-Za-z0-9_=-]{16}$/, "an AWS connection id");
    assert.equal(await row.locator("td").nth(1).textContent(), "connected");
    assert.equal(await row.locator("td").nth(2).textContent(), "127.0.0.1");
    await row.click();
    await page.locator("#details").waitFor({ state: "visible" });
    await waitFor(page, "the details did not show the connection",
      (id) => document.getElementById("detail-id").textContent === id, connectionId);
    assert.equal(await page.locator("#detail-source-ip").textContent(), "127.0.0.1");
    assert.match(await page.locator("#detail-user-agent").textContent(), /Chrome/);
    assert.match(await page.locator("#detail-connected-at").textContent(), /^\d{4}-\d\d-\d\dT.*Z$/);
    assert.equal(await page.locator("#detail-groups").textContent(), "(none)");

    // A frame from the test client goes to the mock `$default` route: the reply comes back
    // and the route event appears with its status and latency.
    await page.locator("#client-text").fill("ping from the test client");
    await page.locator("#client-send").click();
    await waitFor(page, "the test client did not get the route response",
      () => [...document.querySelectorAll("#client-frames li.received")]
        .some((item) => item.textContent.endsWith('{"reply":"hello from the mock"}')), null,
      async () => framesState(page));
    await waitFor(page, "the MESSAGE route event did not appear",
      (id) => [...document.querySelectorAll("#events tr")].some((row) => {
        const cells = [...row.cells].map((cell) => cell.textContent);
        return cells[1] === "MESSAGE" && cells[2] === "$default" && cells[3] === id
          && cells[4] === "200" && /^\d+ ms$/.test(cells[6]);
      }), connectionId,
      async () => `events: ${JSON.stringify(await page.locator("#events tr").allInnerTexts())}`);

    // A message sent from the console reaches the client.
    const pushed = "hello from the console";
    await page.locator("#message-text").fill(pushed);
    await page.locator("#send-message").click();
    await waitFor(page, "the test client did not receive the console's message",
      (text) => [...document.querySelectorAll("#client-frames li.received")]
        .some((item) => item.textContent.endsWith(text)), pushed,
      async () => framesState(page));
    assert.equal(await page.locator("#details-status").textContent(), "Message queued for the connection.");

    await page.screenshot({ path: path.join(ARTIFACTS, "console.png"), fullPage: true });
    if (process.env.UPDATE_DOCS_SCREENSHOT === "1") {
      await copyFile(path.join(ARTIFACTS, "console.png"), path.join(REPO_ROOT, "docs", "console.png"));
    }

    // Disconnect from the console: the client is closed with 1000 and leaves the list.
    await page.locator("#disconnect").click();
    await waitFor(page, "the test client was not closed",
      () => document.getElementById("client-status").textContent.startsWith("closed"), null,
      async () => framesState(page));
    assert.match(await page.locator("#client-status").textContent(), /^closed \(1000\b/);
    assert.ok((await frames(page)).some((text) => text.includes("closed: code 1000")), await framesState(page));
    await waitFor(page, "the connection did not leave the list",
      () => document.querySelectorAll("#connections tr").length === 0
        && document.getElementById("connection-count").textContent === "0", null,
      async () => `rows: ${JSON.stringify(await page.locator("#connections tr").allInnerTexts())}`);

    // A client that asked for resume and lost its network shows as suspended, and the console
    // can end it.
    const dropped = await resumableClient(gatewayWsUrl);
    dropped.resetAndDestroy();
    await waitFor(page, "the suspended connection was not listed",
      () => [...document.querySelectorAll("#connections tr")]
        .some((row) => row.cells[1].textContent === "suspended"), null,
      async () => `rows: ${JSON.stringify(await page.locator("#connections tr").allInnerTexts())}`);
    await page.locator("#connections tr").first().click();
    await waitFor(page, "the details did not say suspended",
      () => document.getElementById("detail-status").textContent === "suspended");
    await page.locator("#disconnect").click();
    await waitFor(page, "the suspended connection did not leave the list",
      () => document.querySelectorAll("#connections tr").length === 0, null,
      async () => `rows: ${JSON.stringify(await page.locator("#connections tr").allInnerTexts())}`);

    // Signing out ends the session: a reload shows the sign-in form again.
    await page.locator("#logout").click();
    await page.locator("#login").waitFor({ state: "visible" });
    await page.reload();
    await page.locator("#login").waitFor({ state: "visible" });
    assert.equal(await page.locator("#console").isVisible(), false);

    assert.deepEqual(policyViolations, [], "no Content-Security-Policy violations");
    assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
  } catch (error) {
    await page.screenshot({ path: path.join(ARTIFACTS, "console-failure.png"), fullPage: true }).catch(() => {});
    throw error;
  } finally {
    await context.close();
  }
});
