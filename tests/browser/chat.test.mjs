// End to end in a real browser: examples/chat (backend.py, sockway.toml, index.html) on the real
// sockway binary, driven in headless Chromium by playwright-core.
//
// Both servers bind port 0 and print the address they got; the example config is rewritten to
// the gateway's port 0 and the backend's real address, as tests/compat/test_example_chat.py
// does. The page gets the gateway URL through its `?ws=` override, because the gateway starts
// after the backend. Nothing sleeps: every wait is for an event (a line of output, a page
// state) under a deadline that fails with a message. Every process started here is stopped in
// `after`, on success and on failure.
//
// Environment: SOCKWAY_BIN (default target/debug/sockway, relative to the repository root),
// CHROMIUM_BIN (default /usr/bin/chromium), PYTHON (default python3).

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import {
  ARTIFACTS,
  ChildProcess,
  CuttableProxy,
  REPO_ROOT,
  TIMEOUT_MS,
  launchChromium,
  sockwayBin,
  tearDown,
  trackedProcesses,
} from "./harness.mjs";

const EXAMPLE = path.join(REPO_ROOT, "examples", "chat");

const BACKEND_LISTENING = /^chat backend listening on (http:\/\/\S+)\s*$/;
const GATEWAY_LISTENING = /^sockway listening on (ws:\/\/\S+?)\/?\s*$/;

/** examples/chat/sockway.toml with the gateway on port 0 and the backend's real address. */
async function exampleConfig(backendUrl) {
  let text = await readFile(path.join(EXAMPLE, "sockway.toml"), "utf8");
  let listens = 0;
  let uris = 0;
  text = text.replace(/^listen = "[^"]*"/m, () => {
    listens += 1;
    return 'listen = "127.0.0.1:0"';
  });
  text = text.replace(/^uri = "[^"]*"/m, () => {
    uris += 1;
    return `uri = "${backendUrl}/events"`;
  });
  assert.ok(listens === 1 && uris === 1, "examples/chat/sockway.toml changed shape");
  return text;
}

/** The text of every line in the page's chat log, in order. */
function logLines(page) {
  return page.locator("#log li").allInnerTexts();
}

/**
 * Waits until `page` shows `name: text` as a chat line (the name in its own `.name` span, not a
 * system line).
 */
async function waitForChatLine(page, label, name, text) {
  try {
    await page.waitForFunction(
      ([name, text]) =>
        [...document.querySelectorAll("#log li:not(.system)")].some(
          (item) =>
            item.querySelector(".name")?.textContent === `${name}:` &&
            item.textContent === `${name}:${text}`,
        ),
      [name, text],
      { timeout: TIMEOUT_MS },
    );
  } catch (error) {
    throw new Error(
      `${label} did not show "${name}: ${text}" within ${TIMEOUT_MS} ms; its log shows ` +
        `${JSON.stringify(await logLines(page))}`,
      { cause: error },
    );
  }
}

/**
 * Waits until `page` says it is connected and its Send button is enabled; fails as soon as the
 * page reports that its WebSocket closed instead.
 */
async function waitConnected(page, label) {
  const status = page.locator("#status");
  const failure = async (what, cause) => new Error(
    `${label} ${what}; status is ${JSON.stringify(await status.textContent())}, log shows ` +
      `${JSON.stringify(await logLines(page))}`,
    cause === undefined ? undefined : { cause },
  );
  try {
    await page.waitForFunction(
      () => {
        const text = document.getElementById("status").textContent;
        return text === "connected" || text.startsWith("disconnected");
      },
      null,
      { timeout: TIMEOUT_MS },
    );
  } catch (error) {
    throw await failure(`did not connect within ${TIMEOUT_MS} ms`, error);
  }
  if ((await status.textContent()) !== "connected") throw await failure("could not connect");
  assert.ok(await page.locator("#status.online").isVisible(), `${label}: status shown as online`);
  assert.ok(await page.locator("#send").isEnabled(), `${label}: Send button enabled`);
}

async function sendAs(page, name, text) {
  await page.locator("#name").fill(name);
  await page.locator("#text").fill(text);
  await page.locator("#send").click();
}

/**
 * The gateway's access-log lines (JSON, on its stdout) about `connectionId`: the events it
 * ran for it (CONNECT, DISCONNECT, SUSPEND, RESUME, MESSAGE) and the management calls.
 */
function accessLog(connectionId) {
  const entries = [];
  for (const line of gateway.lines) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line);
    if (entry.connectionId === connectionId) entries.push(entry);
  }
  return entries;
}

/**
 * Waits until the access-log lines about `connectionId` satisfy `done` (they are written by a
 * task of the gateway's own, a little after the event) and returns them.
 */
function waitAccessLog(connectionId, done) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const entries = accessLog(connectionId);
      if (!done(entries)) return;
      clearTimeout(timer);
      gateway.output.off("line", check);
      resolve(entries);
    };
    const timer = setTimeout(() => {
      gateway.output.off("line", check);
      reject(new Error(`the access log never showed what was expected of ${connectionId}: ` +
        JSON.stringify(accessLog(connectionId))));
    }, TIMEOUT_MS);
    gateway.output.on("line", check);
    check();
  });
}

/** Waits until `page`'s status text is `text`. */
async function waitStatus(page, label, text) {
  try {
    await page.waitForFunction(
      (text) => document.getElementById("status").textContent === text,
      text,
      { timeout: TIMEOUT_MS },
    );
  } catch (error) {
    throw new Error(`${label} never showed status ${JSON.stringify(text)}; it shows ` +
      `${JSON.stringify(await page.locator("#status").textContent())}`, { cause: error });
  }
}

// --- processes and browser, shared by `before`, the test and `after` --------------------------

const processes = trackedProcesses();
let temporaryDirectory;
let browser;
let backendUrl;
let gatewayWsUrl;
let gateway;

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  const binary = sockwayBin();

  // No --callback-url: the handlers build it from each event's domainName and stage, as on AWS,
  // because the gateway's port is only known after the backend has started.
  const backend = new ChildProcess("chat-backend", process.env.PYTHON || "python3",
    [path.join(EXAMPLE, "backend.py"), "--port", "0"]);
  processes.push(backend);
  backendUrl = (await backend.waitLine(BACKEND_LISTENING))[1];

  temporaryDirectory = await mkdtemp(path.join(tmpdir(), "sockway-browser-"));
  const configPath = path.join(temporaryDirectory, "sockway.toml");
  await writeFile(configPath, await exampleConfig(backendUrl));
  gateway = new ChildProcess("sockway", binary,
    ["serve", "--config", configPath, "--listen", "127.0.0.1:0"]);
  processes.push(gateway);
  gatewayWsUrl = (await gateway.waitLine(GATEWAY_LISTENING))[1];

  browser = await launchChromium();
});

after(() => tearDown({ browser, processes, directory: temporaryDirectory }));

test("two browser pages chat through sockway", { timeout: 60_000 }, async () => {
  // Two contexts, so the pages share no storage: two people in two browsers.
  const pages = [];
  for (const label of ["page 1", "page 2"]) {
    const context = await browser.newContext({ viewport: { width: 800, height: 500 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    pages.push({ label, page });
  }
  const [first, second] = pages;
  const url = `${backendUrl}/?ws=${encodeURIComponent(gatewayWsUrl)}`;

  try {
    for (const { label, page } of pages) {
      const response = await page.goto(url, { timeout: TIMEOUT_MS });
      assert.equal(response?.status(), 200, `${label}: GET ${url}`);
      assert.equal(await page.title(), "sockway chat");
    }
    // Both WebSocket handshakes completed, so both $connect handlers have stored their ids.
    await Promise.all(pages.map(({ label, page }) => waitConnected(page, label)));

    const hello = "hello from page 1";
    await sendAs(first.page, "alice", hello);
    await waitForChatLine(second.page, second.label, "alice", hello);
    await waitForChatLine(first.page, first.label, "alice", hello);
    assert.equal(await first.page.locator("#text").inputValue(), "", "page 1 cleared its input");

    const reply = "hi alice, page 2 here";
    await sendAs(second.page, "bob", reply);
    await waitForChatLine(first.page, first.label, "bob", reply);
    await waitForChatLine(second.page, second.label, "bob", reply);

    // Exactly the two messages, in order, and no system lines (errors, disconnects).
    for (const { label, page } of pages) {
      assert.deepEqual(await logLines(page), [`alice:${hello}`, `bob:${reply}`], label);
      assert.equal(await page.locator("#status").textContent(), "connected", label);
    }

    for (const [index, { page }] of pages.entries()) {
      await page.screenshot({ path: path.join(ARTIFACTS, `chat-page${index + 1}.png`) });
    }
  } catch (error) {
    // What each page looked like when the test failed, beside the process logs.
    for (const [index, { page }] of pages.entries()) {
      await page.screenshot({ path: path.join(ARTIFACTS, `failure-page${index + 1}.png`) })
        .catch(() => {});
    }
    throw error;
  }
});

test("a page whose connection drops resumes it and misses no message", { timeout: 90_000 }, async () => {
  const proxy = new CuttableProxy(gatewayWsUrl);
  const proxiedUrl = await proxy.start();
  const pages = [];
  for (const [label, ws] of [["dropping page", proxiedUrl], ["other page", gatewayWsUrl]]) {
    const context = await browser.newContext({ viewport: { width: 800, height: 500 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    const url = `${backendUrl}/?ws=${encodeURIComponent(ws)}`;
    const response = await page.goto(url, { timeout: TIMEOUT_MS });
    assert.equal(response?.status(), 200, `${label}: GET ${url}`);
    pages.push({ label, page });
  }
  const [dropping, other] = pages;
  try {
    await Promise.all(pages.map(({ label, page }) => waitConnected(page, label)));
    const connectionId = await dropping.page.locator("#status").getAttribute("data-connection-id");
    assert.ok(connectionId, "the page learnt its connection id from the resume frame");

    await sendAs(other.page, "bob", "before the drop");
    await waitForChatLine(dropping.page, dropping.label, "bob", "before the drop");

    // The network goes: the page's socket is reset and its reconnects fail meanwhile.
    proxy.cut();
    await waitStatus(dropping.page, dropping.label, "reconnecting…");
    const sent = [];
    for (let n = 1; n <= 5; n += 1) {
      const text = `while offline ${n}`;
      await sendAs(other.page, "bob", text);
      await waitForChatLine(other.page, other.label, "bob", text);
      sent.push(`bob:${text}`);
    }
    proxy.restore();
    await waitStatus(dropping.page, dropping.label, "connected (resumed)");
    for (const text of sent) {
      await waitForChatLine(dropping.page, dropping.label, "bob", text.slice("bob:".length));
    }
    assert.equal(
      await dropping.page.locator("#status").getAttribute("data-connection-id"),
      connectionId,
      "the same connection id after the resume",
    );
    // Every message once, in order, and no system line (no "Disconnected", nothing lost).
    assert.deepEqual(await logLines(dropping.page), ["bob:before the drop", ...sent]);
    await sendAs(dropping.page, "alice", "back online");
    await waitForChatLine(other.page, other.label, "alice", "back online");
    await dropping.page.screenshot({ path: path.join(ARTIFACTS, "chat-resumed.png") });
  } catch (error) {
    for (const { label, page } of pages) {
      await page.screenshot({ path: path.join(ARTIFACTS, `failure-${label.replace(" ", "-")}.png`) })
        .catch(() => {});
    }
    throw error;
  } finally {
    await proxy.close();
    for (const { page } of pages) await page.context().close().catch(() => {});
  }
});

// Chromium's offline mode (playwright's `BrowserContext.setOffline`, CDP
// `Network.emulateNetworkConditions` with `offline: true`) does not close a WebSocket that is
// already open: the socket stays in readyState OPEN, fires neither `error` nor `close`, and
// every frame the gateway writes to it meanwhile is silently discarded (the gateway's writes
// succeed, so it has no reason to suspend the connection); new sockets fail with 1006. What the
// page does get is the window's `offline` and `online` events, and sockway-resume.js acts on
// them: it leaves the socket at `offline` and resumes at `online`, with the count of messages
// it read, so the gateway replays what the browser threw away.
test("a page whose browser goes offline resumes its connection and misses no message", { timeout: 90_000 }, async () => {
  const pages = [];
  for (const label of ["offline page", "other page"]) {
    const context = await browser.newContext({ viewport: { width: 800, height: 500 } });
    const page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    const url = `${backendUrl}/?ws=${encodeURIComponent(gatewayWsUrl)}`;
    const response = await page.goto(url, { timeout: TIMEOUT_MS });
    assert.equal(response?.status(), 200, `${label}: GET ${url}`);
    pages.push({ label, page });
  }
  const [offline, other] = pages;
  try {
    await Promise.all(pages.map(({ label, page }) => waitConnected(page, label)));
    const connectionId = await offline.page.locator("#status").getAttribute("data-connection-id");
    assert.ok(connectionId, "the page learnt its connection id from the resume frame");

    await sendAs(other.page, "bob", "before going offline");
    await waitForChatLine(offline.page, offline.label, "bob", "before going offline");

    await offline.page.context().setOffline(true);
    await waitStatus(offline.page, offline.label, "reconnecting…");
    assert.equal(await offline.page.evaluate(() => navigator.onLine), false, "the page is offline");
    // The backend posts each of these to the offline page's connection, which the gateway
    // still holds open: they are written to the socket the browser no longer reads.
    const sent = [];
    for (let n = 1; n <= 5; n += 1) {
      const text = `while the browser is offline ${n}`;
      await sendAs(other.page, "bob", text);
      await waitForChatLine(other.page, other.label, "bob", text);
      sent.push(`bob:${text}`);
    }
    assert.deepEqual(await logLines(offline.page), ["bob:before going offline"],
      "nothing reached the page while it was offline");

    await offline.page.context().setOffline(false);
    await waitStatus(offline.page, offline.label, "connected (resumed)");
    for (const text of sent) {
      await waitForChatLine(offline.page, offline.label, "bob", text.slice("bob:".length));
    }
    assert.equal(
      await offline.page.locator("#status").getAttribute("data-connection-id"),
      connectionId,
      "the same connection id after the resume",
    );
    // Every message once, in order, and no system line (no "Disconnected", nothing lost).
    assert.deepEqual(await logLines(offline.page), ["bob:before going offline", ...sent]);
    await sendAs(offline.page, "alice", "back online");
    await waitForChatLine(other.page, other.label, "alice", "back online");
    await waitForChatLine(offline.page, offline.label, "alice", "back online");

    // What the backend saw of the connection: its one $connect, no $disconnect, a resume; and
    // every post to it (the one before, the five while offline, "back online") answered 200.
    const posts = 1 + sent.length + 1;
    const events = (await waitAccessLog(connectionId,
      (entries) => entries.filter((entry) => entry.eventType === "MANAGEMENT").length >= posts))
      .map((entry) => `${entry.eventType} ${entry.status}`);
    const seen = `access log of the connection: ${JSON.stringify(events)}`;
    assert.equal(events.filter((event) => event.startsWith("CONNECT ")).length, 1, seen);
    assert.ok(!events.some((event) => event.startsWith("DISCONNECT ")), seen);
    assert.ok(events.includes("RESUME 200"), seen);
    assert.deepEqual(events.filter((event) => event.startsWith("MANAGEMENT ")),
      Array(posts).fill("MANAGEMENT 200"), seen);
    await offline.page.screenshot({ path: path.join(ARTIFACTS, "chat-offline-resumed.png") });
  } catch (error) {
    for (const { label, page } of pages) {
      await page.screenshot({ path: path.join(ARTIFACTS, `failure-${label.replace(" ", "-")}.png`) })
        .catch(() => {});
    }
    throw error;
  } finally {
    for (const { page } of pages) await page.context().close().catch(() => {});
  }
});
