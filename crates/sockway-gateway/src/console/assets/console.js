// The sockway web console: polls /console/api/ once a second and drives the built-in test
// client. No framework and no third-party code; everything shown is written with textContent.
"use strict";

const POLL_MS = 1000;
const API_HEADERS = { "X-Sockway-Console": "1" };

const state = {
  polling: null,
  selected: null,
  pageToken: null,
  nextToken: null,
  clientUrlEdited: false,
  socket: null,
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body, contentType = "text/plain; charset=utf-8") {
  const options = { method, headers: { ...API_HEADERS }, credentials: "same-origin" };
  if (body !== undefined) {
    options.body = body;
    options.headers["Content-Type"] = contentType;
  }
  const response = await fetch(`/console/api/${path}`, options);
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, (json && json.message) || `HTTP ${response.status}`);
  }
  return json;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function setStatus(id, text, kind) {
  const node = $(id);
  node.textContent = text;
  node.className = `status${kind ? ` ${kind}` : ""}`;
}

function clock(date) {
  return date.toISOString().slice(11, 23);
}

// --- sign-in -----------------------------------------------------------------------------

function showLogin(message) {
  stopPolling();
  show("console", false);
  show("logout", false);
  show("login", true);
  $("auth").textContent = "";
  $("login-error").textContent = message || "";
  $("access-key-id").focus();
}

// HMAC-SHA256(secret, "sockway-console-sign-in\n" + nonce + "\n" + accessKeyId), in hex.
async function signInProof(secret, nonce, accessKeyId) {
  if (!window.crypto || !window.crypto.subtle) {
    throw new Error("Sign-in needs HTTPS (or a browser on the gateway's own machine)");
  }
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const message = encoder.encode(`sockway-console-sign-in\n${nonce}\n${accessKeyId}`);
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, message));
  return Array.from(signature, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function login(event) {
  event.preventDefault();
  const submit = $("login-submit");
  submit.disabled = true;
  $("login-error").textContent = "";
  try {
    // The secret never leaves the page: it keys an HMAC over a one-time challenge.
    const accessKeyId = $("access-key-id").value.trim();
    const { nonce } = await api("GET", "challenge");
    const proof = await signInProof($("secret-access-key").value, nonce, accessKeyId);
    await api("POST", "login", JSON.stringify({ accessKeyId, nonce, proof }), "application/json");
    $("secret-access-key").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  } finally {
    submit.disabled = false;
  }
}

async function logout() {
  try {
    await api("POST", "logout");
  } finally {
    state.selected = null;
    showLogin("Signed out.");
  }
}

// --- polling -----------------------------------------------------------------------------

async function start() {
  let summary;
  try {
    summary = await api("GET", "summary");
  } catch (error) {
    if (error.status === 401) {
      showLogin();
    } else {
      $("notice").textContent = error.message;
      show("notice", true);
    }
    return;
  }
  show("login", false);
  show("console", true);
  renderSummary(summary);
  stopPolling();
  await poll();
}

function stopPolling() {
  if (state.polling !== null) clearTimeout(state.polling);
  state.polling = null;
}

async function poll() {
  state.polling = null;
  try {
    const [summary, page, events] = await Promise.all([
      api("GET", "summary"),
      api("GET", state.pageToken ? `connections?nextToken=${encodeURIComponent(state.pageToken)}` : "connections"),
      api("GET", "events?limit=50"),
    ]);
    renderSummary(summary);
    if (page.items.length === 0 && state.pageToken) state.pageToken = null;
    renderConnections(page);
    renderEvents(events.items);
    if (state.selected) await refreshDetails();
  } catch (error) {
    if (error.status === 401) {
      showLogin("Your session ended; sign in again.");
      return;
    }
    $("notice").textContent = `Refresh failed: ${error.message}`;
    show("notice", true);
  }
  state.polling = setTimeout(poll, POLL_MS);
}

function renderSummary(summary) {
  $("stage").textContent = `stage ${summary.stage === "" ? "(none)" : summary.stage}`;
  show("stage", true);
  $("mode").textContent = summary.clusterMode ? "cluster mode" : "single node";
  show("mode", true);
  $("connection-count").textContent = String(summary.connectionCount);
  $("count-scope").textContent = summary.clusterMode
    ? "The count is this node's; the list shows every node's connections."
    : "";
  $("events-scope").textContent = summary.clusterMode ? "Events handled by this node." : "";
  if (summary.signInRequired) {
    $("auth").textContent = `signed in as ${summary.accessKeyId}`;
    show("logout", true);
    show("notice", false);
  } else {
    $("auth").textContent = "no sign-in";
    $("notice").textContent =
      "No management credentials are configured: like the management API, this console is " +
      "open to every process on this machine, and to nothing else.";
    show("notice", true);
  }
  if (!state.clientUrlEdited) $("client-url").value = summary.webSocketUrl;
}

function renderConnections(page) {
  const body = $("connections");
  const rows = page.items.map((item) => {
    const row = element("tr");
    row.dataset.connectionId = item.connectionId;
    if (item.connectionId === state.selected) row.className = "selected";
    row.append(
      element("td", item.connectionId),
      element("td", item.status ?? "connected", item.status === "suspended" ? "suspended" : ""),
      element("td", item.identity.sourceIp),
      element("td", item.connectedAt),
      element("td", item.groups.join(", ")),
    );
    row.addEventListener("click", () => select(item.connectionId));
    return row;
  });
  body.replaceChildren(...rows);
  show("connections-empty", rows.length === 0);
  state.nextToken = page.nextToken || null;
  show("more-connections", state.nextToken !== null);
}

function renderEvents(items) {
  const rows = items.map((record) => {
    const row = element("tr");
    const status = record.status ?? "";
    row.append(
      element("td", clock(new Date(record.timestamp))),
      element("td", record.eventType),
      element("td", record.routeKey ?? ""),
      element("td", record.connectionId ?? ""),
      element("td", status, status === "" ? "" : `status-${String(status)[0]}`),
      element("td", record.integrationStatus ?? ""),
      element("td", record.integrationLatencyMs === null || record.integrationLatencyMs === undefined
        ? "" : `${record.integrationLatencyMs} ms`),
      element("td", record.error ?? ""),
    );
    return row;
  });
  $("events").replaceChildren(...rows);
  show("events-empty", rows.length === 0);
}

// --- one connection ----------------------------------------------------------------------

async function select(connectionId) {
  state.selected = connectionId;
  setStatus("details-status", "");
  for (const row of $("connections").children) {
    row.classList.toggle("selected", row.dataset.connectionId === connectionId);
  }
  await refreshDetails();
}

async function refreshDetails() {
  const connectionId = state.selected;
  if (!connectionId) return;
  try {
    const details = await api("GET", `connections/${encodeURIComponent(connectionId)}`);
    if (state.selected !== connectionId) return;
    $("detail-id").textContent = details.connectionId;
    $("detail-status").textContent = details.status ?? "connected";
    $("detail-connected-at").textContent = details.connectedAt;
    $("detail-last-active-at").textContent = details.lastActiveAt;
    $("detail-source-ip").textContent = details.identity.sourceIp;
    $("detail-user-agent").textContent = details.identity.userAgent ?? "";
    $("detail-groups").textContent = details.groups.length ? details.groups.join(", ") : "(none)";
    show("details-empty", false);
    show("details", true);
    $("send-message").disabled = false;
    $("disconnect").disabled = false;
  } catch (error) {
    if (error.status === 401) throw error;
    if (state.selected !== connectionId) return;
    if (error.status === 410) {
      setStatus("details-status", `${connectionId} is gone.`, "failed");
      $("send-message").disabled = true;
      $("disconnect").disabled = true;
    } else {
      setStatus("details-status", error.message, "failed");
    }
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const connectionId = state.selected;
  if (!connectionId) return;
  try {
    await api("POST", `connections/${encodeURIComponent(connectionId)}/messages`, $("message-text").value);
    setStatus("details-status", "Message queued for the connection.", "ok");
  } catch (error) {
    setStatus("details-status", `Send failed: ${error.message}`, "failed");
  }
}

async function disconnect() {
  const connectionId = state.selected;
  if (!connectionId) return;
  try {
    await api("DELETE", `connections/${encodeURIComponent(connectionId)}`);
    setStatus("details-status", "Disconnected (close code 1000).", "ok");
    $("send-message").disabled = true;
    $("disconnect").disabled = true;
  } catch (error) {
    setStatus("details-status", `Disconnect failed: ${error.message}`, "failed");
  }
}

// --- the test client ---------------------------------------------------------------------

function frame(kind, direction, text) {
  const item = element("li", null, kind);
  item.append(element("span", clock(new Date()), "time"), element("span", `${direction} `, "direction"));
  item.append(document.createTextNode(text));
  const list = $("client-frames");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

function clientConnected(connected) {
  $("client-connect").disabled = connected;
  $("client-close").disabled = !connected;
  $("client-send").disabled = !connected;
}

function clientConnect(event) {
  event.preventDefault();
  if (state.socket) return;
  const query = $("client-query").value.trim().replace(/^\?/, "");
  const url = $("client-url").value.trim() + (query ? `?${query}` : "");
  let socket;
  try {
    socket = new WebSocket(url);
  } catch (error) {
    frame("error", "!", `cannot connect to ${url}: ${error.message}`);
    return;
  }
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  $("client-connect").disabled = true;
  setStatus("client-status", "connecting");
  frame("info", "…", `connecting to ${url}`);
  socket.addEventListener("open", () => {
    setStatus("client-status", "connected", "ok");
    frame("info", "●", "open");
    clientConnected(true);
  });
  socket.addEventListener("message", (message) => {
    const text = typeof message.data === "string"
      ? message.data
      : `<binary, ${message.data.byteLength} bytes>`;
    frame("received", "←", text);
  });
  socket.addEventListener("close", (close) => {
    const reason = close.reason ? ` ${close.reason}` : "";
    frame("closed", "×", `closed: code ${close.code}${reason}${close.wasClean ? "" : " (not clean)"}`);
    setStatus("client-status", `closed (${close.code}${reason})`, "failed");
    state.socket = null;
    clientConnected(false);
  });
}

function clientSend(event) {
  event.preventDefault();
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  const text = $("client-text").value;
  state.socket.send(text);
  frame("sent", "→", text);
}

function clientClose() {
  if (state.socket) state.socket.close(1000, "closed from the console");
}

// --- wiring ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("send-form").addEventListener("submit", sendMessage);
  $("disconnect").addEventListener("click", disconnect);
  $("more-connections").addEventListener("click", () => {
    state.pageToken = state.nextToken;
    stopPolling();
    poll();
  });
  $("client-form").addEventListener("submit", clientConnect);
  $("client-close").addEventListener("click", clientClose);
  $("client-send-form").addEventListener("submit", clientSend);
  $("client-url").addEventListener("input", () => {
    state.clientUrlEdited = true;
  });
  start();
});
