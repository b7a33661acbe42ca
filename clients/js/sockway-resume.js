// sockway-resume.js: a WebSocket that resumes its sockway connection after a drop.
//
// No dependencies. In a page: <script src="sockway-resume.js"></script>, then
// `new SockwayResume.ResumingSocket(url)`. In Node: `require("./sockway-resume.js")` (or
// `import`), passing `{ WebSocket }` where the runtime has no global one (Node 22 has one, Node
// 20.10 and 21 with --experimental-websocket; else the `ws` package's). The protocol is in
// docs/resume.md; this file is its reference client.
//
//   const socket = new SockwayResume.ResumingSocket("wss://ws.example.com/prod", {
//     protocols: [],              // the application's own subprotocols, if any
//     maxDelayMs: 5000,           // backoff cap between reconnect attempts
//     followOnline: true,         // in a page: drop on `offline`, resume at once on `online`
//   });
//   socket.addEventListener("message", (event) => console.log(event.data));
//   socket.addEventListener("open", (event) => console.log(event.detail.connectionId));
//   socket.send("hello");
//   socket.close();               // 1000: ends the connection, no resume
//
// Events (an EventTarget): `open` (detail: connectionId, resumed, missed) each time the
// connection is (re)established, `message` (data), `suspended` (the socket dropped; detail:
// code, null when the browser went offline), `close` (the connection ended for good; detail:
// code, reason), `statechange`.
//
// In a page, the browser's `offline` event suspends the connection at once and `online`
// resumes it without waiting for the backoff: an open WebSocket often outlives a lost network
// without any event (Chromium's offline mode leaves it open and silently discards what
// arrives meanwhile), and a resume replays everything after the last message counted here.
// The socket abandoned on `offline` gets no close frame (any code a page may send would end
// the connection); the resume takes the connection over from it, and it is closed after.
(function (root, factory) {
  const exported = factory();
  if (typeof module === "object" && module.exports) module.exports = exported;
  else root.SockwayResume = exported;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const RESUME_PROTOCOL = "sockway.resume.v1";
  const TOKEN_PREFIX = "sockway.resume.token.";
  // Close codes after which resuming is pointless.
  const RESUME_UNKNOWN = 4410;
  const RESUME_FORBIDDEN = 4403;
  const NORMAL = 1000;

  class ResumingSocket extends EventTarget {
    constructor(url, options = {}) {
      super();
      this.url = url;
      this.protocols = options.protocols || [];
      this.WebSocket = options.WebSocket || globalThis.WebSocket;
      if (!this.WebSocket) throw new Error("no WebSocket implementation: pass options.WebSocket");
      this.minDelayMs = options.minDelayMs ?? 100;
      this.maxDelayMs = options.maxDelayMs ?? 5000;
      this.state = "connecting";
      this.connectionId = null;
      this.token = null;
      this.windowMs = 0;
      this.received = 0; // messages received on the connection, across resumes
      this.droppedAt = 0;
      this.attempt = 0;
      this.socket = null;
      this.abandoned = null; // the socket left on `offline`, closed once a new one is greeted
      this.timer = null;
      this.closing = false;
      if (typeof addEventListener === "function" && typeof window !== "undefined") {
        // A page that goes away closes with 1000: otherwise the browser's 1001 suspends the
        // connection and its $disconnect waits for the window.
        addEventListener("pagehide", () => this.close(NORMAL, "page closed"));
        if (options.followOnline ?? true) {
          addEventListener("offline", () => this.wentOffline());
          addEventListener("online", () => this.cameOnline());
        }
      }
      this.open();
    }

    /** Sends a message on the current socket; false when there is none (suspended). */
    send(data) {
      if (!this.socket || this.socket.readyState !== 1 || this.state !== "open") return false;
      this.socket.send(data);
      return true;
    }

    /** Ends the connection for good (sockway runs $disconnect at once). */
    close(code = NORMAL, reason = "") {
      this.closing = true;
      clearTimeout(this.timer);
      this.closeAbandoned();
      if (this.socket && this.socket.readyState <= 1) this.socket.close(code, reason);
      else this.finish(code, reason);
    }

    setState(state) {
      if (this.state === state) return;
      this.state = state;
      this.dispatchEvent(new CustomEvent("statechange", { detail: { state } }));
    }

    open() {
      const protocols = [...this.protocols, RESUME_PROTOCOL];
      const resuming = this.token && Date.now() - this.droppedAt < this.windowMs;
      if (resuming) protocols.push(`${TOKEN_PREFIX}${this.token}.${this.received}`);
      else this.forget();
      const socket = new this.WebSocket(this.url, protocols);
      this.socket = socket;
      let greeted = false;
      socket.addEventListener("message", (event) => {
        // Only the current socket counts: one left behind must not move the count after a
        // resume offered it.
        if (socket !== this.socket) return;
        if (!greeted) {
          greeted = true;
          this.greeted(event.data);
          return;
        }
        this.received += 1;
        this.dispatchEvent(new MessageEvent("message", { data: event.data }));
      });
      const ended = (code, reason) => {
        if (socket !== this.socket) return;
        this.socket = null;
        this.dropped(code, reason, greeted);
      };
      socket.addEventListener("close", (event) => ended(event.code, event.reason));
      // A failed socket fires `error`, then `close`; Node 20's WebSocket fires only `error` when
      // the connection is reset during the handshake. Either ends this socket.
      socket.addEventListener("error", () => ended(1006, ""));
    }

    /** The resume frame: the first message on every socket. */
    greeted(data) {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch (_) {
        frame = null;
      }
      if (!frame || frame.type !== "sockway.resume") {
        // The gateway has no [resume]: a plain WebSocket from here on.
        this.forget();
        this.setState("open");
        this.dispatchEvent(new MessageEvent("message", { data }));
        return;
      }
      this.connectionId = frame.connectionId;
      this.token = frame.token;
      this.windowMs = frame.windowSeconds * 1000;
      if (frame.resumed) this.received = frame.sequence;
      else this.received = 0;
      this.attempt = 0;
      // The gateway has taken the connection over from a socket left on `offline` (or, when
      // this is a new connection, the old one is given up): that socket can go.
      this.closeAbandoned();
      this.setState("open");
      this.dispatchEvent(new CustomEvent("open", {
        detail: { connectionId: frame.connectionId, resumed: frame.resumed, missed: frame.missed },
      }));
    }

    dropped(code, reason, greeted) {
      if (this.closing || (code === NORMAL && greeted)) return this.finish(code, reason);
      if (code === RESUME_UNKNOWN || code === RESUME_FORBIDDEN) {
        // Nothing to resume (or not ours): start a new connection.
        this.forget();
      } else if (this.state === "open") {
        this.droppedAt = Date.now();
        this.setState("suspended");
        this.dispatchEvent(new CustomEvent("suspended", { detail: { code } }));
      }
      const delay = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** this.attempt);
      this.attempt += 1;
      // Jitter spreads the reconnects of many clients dropped at once.
      this.timer = setTimeout(() => this.open(), delay / 2 + Math.random() * delay / 2);
    }

    /** The browser says the network is gone: suspend now rather than when the socket notices. */
    wentOffline() {
      if (this.closing || this.state !== "open" || !this.socket) return;
      this.closeAbandoned();
      this.abandoned = this.socket;
      this.socket = null;
      this.dropped(null, "offline", true);
    }

    /** The network is back: try at once instead of at the end of the backoff. */
    cameOnline() {
      if (this.closing || this.state === "open" || this.state === "closed" || this.socket) return;
      clearTimeout(this.timer);
      this.attempt = 0;
      this.open();
    }

    closeAbandoned() {
      const socket = this.abandoned;
      this.abandoned = null;
      if (socket && socket.readyState <= 1) socket.close(NORMAL, "replaced");
    }

    forget() {
      this.token = null;
      this.connectionId = null;
      this.received = 0;
    }

    finish(code, reason) {
      this.setState("closed");
      this.dispatchEvent(new CustomEvent("close", { detail: { code, reason } }));
    }
  }

  return { ResumingSocket, RESUME_PROTOCOL, TOKEN_PREFIX };
});
