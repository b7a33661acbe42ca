// What the browser tests share: where things are, the processes they start and the Chromium
// they drive. Not a test file itself (node --test runs only *.test.mjs here).

import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createWriteStream, existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The repository root. */
export const REPO_ROOT = path.resolve(HERE, "../..");

/** Where screenshots and process logs go. */
export const ARTIFACTS = path.join(HERE, "artifacts");

/** Deadline, in milliseconds, for anything a test waits for. */
export const TIMEOUT_MS = 10_000;

/** The flags the machine notes give for Chromium here: no sandbox as root, no network chatter. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The sockway binary: $SOCKWAY_BIN, default target/debug/sockway; fails when it is missing. */
export function sockwayBin() {
  const configured = process.env.SOCKWAY_BIN || "target/debug/sockway";
  const binary = path.isAbsolute(configured) ? configured : path.join(REPO_ROOT, configured);
  if (!existsSync(binary)) {
    throw new Error(
      `sockway binary not found at ${binary} (build it with cargo build -p sockway or set SOCKWAY_BIN)`);
  }
  return binary;
}

/**
 * Headless Chromium ($CHROMIUM_BIN, default /usr/bin/chromium). Playwright gives every launch a
 * new, empty profile directory of its own and adds --headless.
 */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
}

/**
 * A process started by a test: stdout read line by line, stderr copied to a log file in
 * artifacts/ (named in failure messages).
 */
export class ChildProcess {
  constructor(name, command, args) {
    this.name = name;
    this.logPath = path.join(ARTIFACTS, `${name}.log`);
    this.lines = [];
    this.output = new EventEmitter();
    this.exitStatus = null;
    this.exited = new Promise((resolve) => {
      this.child = spawn(command, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
      // "close" comes after the process has exited and its stdout has been read to the end,
      // so a waiter never misses a line printed just before exit.
      this.child.once("close", (code, signal) => resolve({ code, signal }));
      // A failed spawn (missing executable) emits "error" and may emit no "close".
      this.child.once("error", (error) => resolve({ code: null, signal: null, error: String(error) }));
    });
    this.exited.then((status) => {
      this.exitStatus = status;
      this.output.emit("exit", status);
    });
    this.child.stderr.pipe(createWriteStream(this.logPath));
    // The one reader of stdout: it keeps draining the pipe for the life of the process.
    readline.createInterface({ input: this.child.stdout }).on("line", (line) => {
      this.lines.push(line);
      this.output.emit("line", line);
    });
  }

  get running() {
    return this.exitStatus === null;
  }

  /** The first stdout line matching `pattern`, already printed or still to come. */
  waitLine(pattern, timeoutMs = TIMEOUT_MS) {
    const failure = (what) => new Error(
      `${this.name} ${what}; stdout=${JSON.stringify(this.lines)}; stderr is in ${this.logPath}`);
    return new Promise((resolve, reject) => {
      const finish = (outcome) => {
        clearTimeout(timer);
        this.output.off("line", onLine);
        this.output.off("exit", onExit);
        outcome();
      };
      const onLine = (line) => {
        const match = line.match(pattern);
        if (match) finish(() => resolve(match));
      };
      const onExit = (status) => finish(() => reject(failure(
        `exited (${JSON.stringify(status)}) before printing a line matching ${pattern}`)));
      const timer = setTimeout(() => finish(() => reject(failure(
        `printed no line matching ${pattern} within ${timeoutMs} ms`))), timeoutMs);
      this.output.on("line", onLine);
      this.output.on("exit", onExit);
      for (const line of this.lines) onLine(line);
      if (!this.running) onExit(this.exitStatus);
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within `timeoutMs`. Never throws. */
  async stop(timeoutMs = TIMEOUT_MS) {
    if (!this.running) return this.exitStatus;
    this.child.kill("SIGTERM");
    let timer;
    const deadline = new Promise((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([this.exited, deadline]);
    clearTimeout(timer);
    if (outcome !== "timeout") return outcome;
    console.error(`${this.name} ignored SIGTERM for ${timeoutMs} ms; sending SIGKILL`);
    this.child.kill("SIGKILL");
    return this.exited;
  }
}

// The child processes a test file starts. If the runner exits without running `after` (an
// uncaught error, say), they are killed on exit: no child outlives the test file.
export function trackedProcesses() {
  const processes = [];
  process.on("exit", () => {
    for (const child of processes) {
      if (child.running) child.child.kill("SIGKILL");
    }
  });
  return processes;
}

/** Starts `server` on a free loopback port; returns its `127.0.0.1:PORT`. */
export async function listenOnLoopback(server) {
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `127.0.0.1:${server.address().port}`;
}

/**
 * Ends what a test file started, each step even when one before it failed: the browser, the
 * processes newest first (the gateway before the backends it calls, so that its `$disconnect`
 * events still arrive), then the `close` steps (servers in this process), then the temporary
 * directory. Throws the first failure.
 */
export async function tearDown({ browser, processes = [], close = [], directory }) {
  const failures = [];
  const attempt = async (step) => {
    try {
      await step();
    } catch (error) {
      failures.push(error);
    }
  };
  if (browser) await attempt(() => browser.close());
  for (const child of [...processes].reverse()) await attempt(() => child.stop());
  for (const step of close) await attempt(step);
  if (directory) await attempt(() => rm(directory, { recursive: true, force: true }));
  if (failures.length > 0) throw failures[0];
}

/**
 * A TCP proxy in front of the gateway whose connections the test can cut, as a lost network
 * does: the browser's socket is reset, the gateway's sees its peer go without a close frame.
 * While cut it refuses new connections, so the page's reconnects fail until `restore`. The
 * upgrade's `Host` is rewritten to the gateway's, which answers only to its own port.
 */
export class CuttableProxy {
  constructor(gatewayUrl) {
    this.target = new URL(gatewayUrl);
    this.pairs = new Set();
    this.refusing = false;
  }

  async start() {
    this.server = net.createServer((client) => {
      if (this.refusing) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      const pair = { client, upstream };
      this.pairs.add(pair);
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      for (const socket of [client, upstream]) {
        socket.on("error", end);
        socket.on("close", end);
      }
      let first = true;
      client.on("data", (chunk) => {
        if (first) {
          first = false;
          chunk = Buffer.from(chunk.toString("latin1")
            .replace(/^Host: .*$/im, `Host: ${this.target.host}`), "latin1");
        }
        upstream.write(chunk);
      });
      upstream.pipe(client);
    });
    return `ws://${await listenOnLoopback(this.server)}${this.target.pathname}`;
  }

  cut() {
    this.refusing = true;
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  restore() {
    this.refusing = false;
  }

  close() {
    this.cut();
    return new Promise((resolve) => this.server.close(resolve));
  }
}
