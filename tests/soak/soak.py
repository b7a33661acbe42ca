#!/usr/bin/env python3
"""Churn soak for sockway (issue #6 item 7). Driven by tests/soak/run.sh.

Subcommands:
  backend  --port P --out FILE      HTTP integration backend; records every event as JSONL
  load     --nodes URL,... --pids PID,... --backend-pid PID --minutes M --out FILE [--kill-node I]
                                    warm-up, baseline RSS, churn load + pusher, optional SIGKILL
                                    of one node midway, drain, settle, end RSS; writes a JSON result
  check    --mode M --events FILE --load FILE --logs LOG,... --md OUT
                                    runs the four checks, writes a markdown section, exits 1 on failure
"""
import argparse
import asyncio
import base64
import json
import os
import random
import signal
import sys
import time
from urllib.parse import quote

# --------------------------------------------------------------------------- tunables
STAGE = "soak"
HEARTBEAT = 2.0           # limits.heartbeat_interval in the generated config
DRAIN = 1.0               # a deliberately ending client keeps reading this long first
SILENT_WAIT = 3 * HEARTBEAT + 2.0  # a silent peer aborts its socket after this long
LIFE = (5.0, 40.0)        # seconds of sending, uniform
MSG_INTERVAL = (1.0, 4.0)  # seconds between messages, uniform
END_WEIGHTS = {"clean": 0.5, "drop": 0.25, "silent": 0.25}
SOURCES = [f"127.0.0.{i}" for i in range(2, 18)]
KILL_GRACE = 1.0          # pushes acked this close before a SIGKILL are not required


def now():
    return time.time()


# =========================================================================== backend
async def run_backend(port, out_path):
    out = open(out_path, "w", buffering=1 << 16)
    stats = {"requests": 0}

    async def read_body(reader, headers):
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readline()
        return b""

    async def handle(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await read_body(reader, headers)
                t = now()
                ev = json.loads(body)
                rc = ev.get("requestContext", {})
                et = rc.get("eventType")
                cid = rc.get("connectionId")
                rec = {"t": t, "e": et, "c": cid}
                if et == "DISCONNECT":
                    rec["code"] = rc.get("disconnectStatusCode")
                    rec["reason"] = rc.get("disconnectReason")
                if et == "MESSAGE":
                    try:
                        n = json.loads(ev.get("body") or "{}").get("n")
                    except ValueError:
                        n = None
                    resp = {"statusCode": 200, "body": json.dumps({"echo": n, "cid": cid})}
                else:
                    resp = {"statusCode": 200}
                rec["status"] = 200
                out.write(json.dumps(rec) + "\n")
                stats["requests"] += 1
                data = json.dumps(resp).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(data) + data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a closed or idle keep-alive connection at shutdown
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async def flusher():
        while True:
            await asyncio.sleep(1)
            out.flush()
    ft = asyncio.create_task(flusher())
    print(f"backend listening on {port}", flush=True)
    await stop.wait()
    ft.cancel()
    server.close()
    out.flush()
    out.close()
    print(f"backend stopped after {stats['requests']} requests", flush=True)


# =========================================================================== HTTP client
class Http:
    """Minimal keep-alive HTTP/1.1 client (one connection, one request at a time)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.r = self.w = None

    async def request(self, method, path, body=b""):
        for attempt in range(2):
            try:
                if self.w is None:
                    self.r, self.w = await asyncio.open_connection(self.host, self.port)
                self.w.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                await self.w.drain()
                status = int((await self.r.readline()).split()[1])
                headers = {}
                while True:
                    h = await self.r.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if "content-length" in headers:
                    data = await self.r.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int((await self.r.readline()).split(b";")[0].strip(), 16)
                        if size == 0:
                            await self.r.readline()
                            break
                        parts.append(await self.r.readexactly(size))
                        await self.r.readline()
                    data = b"".join(parts)
                else:
                    data = b""
                if headers.get("connection", "").lower() == "close":
                    self.close()
                return status, data
            except (ConnectionError, asyncio.IncompleteReadError, IndexError, ValueError):
                self.close()
                if attempt == 1:
                    raise
        raise ConnectionError("unreachable")

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return None


# =========================================================================== load
class Client:
    __slots__ = ("idx", "node", "cid", "end", "t_open", "t_expect", "t_end", "sent", "echoed",
                 "bad_echo", "pending", "pushes", "dup_pushes", "other", "acked", "close_code",
                 "wave")

    def __init__(self, idx, node, wave):
        self.idx, self.node, self.wave = idx, node, wave
        self.cid = None
        self.end = None
        self.t_open = self.t_expect = self.t_end = None
        self.sent = self.echoed = self.bad_echo = 0
        self.pending = set()
        self.pushes = set()
        self.dup_pushes = 0
        self.other = 0
        self.acked = []       # (push id, ack time)
        self.close_code = None


class Load:
    def __init__(self, args):
        import websockets  # noqa: F401  (fail early if missing)
        self.args = args
        self.nodes = args.nodes.split(",")
        self.pids = [int(p) for p in args.pids.split(",")]
        self.alive = list(range(len(self.nodes)))
        self.kill_node = args.kill_node
        self.t_kill = None
        self.clients = []
        self.live = {}          # cid -> Client (pushable)
        self.running = False
        self.connect_fail = {}
        self.push_status = {}
        self.push_errors = 0
        self.next_push = 0
        self.next_idx = 0
        self.rss = {i: [] for i in range(len(self.nodes))}
        self.phase_marks = {}
        self.wave = "warmup"

    # ---- one client life
    async def life(self):
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed
        node = random.choice(self.alive)
        c = Client(self.next_idx, node, self.wave)
        self.next_idx += 1
        host, port = self.nodes[node].split(":")
        try:
            ws = await connect(f"ws://{host}:{port}/{STAGE}", ping_interval=None,
                               compression=None, open_timeout=20, close_timeout=5,
                               max_queue=None, local_addr=(random.choice(SOURCES), 0))
        except Exception as e:  # noqa: BLE001
            k = type(e).__name__
            self.connect_fail[k] = self.connect_fail.get(k, 0) + 1
            return
        c.t_open = now()
        self.clients.append(c)

        async def reader():
            try:
                async for raw in ws:
                    try:
                        m = json.loads(raw)
                    except ValueError:
                        c.other += 1
                        continue
                    if isinstance(m, dict) and "push" in m:
                        if m["push"] in c.pushes:
                            c.dup_pushes += 1
                        c.pushes.add(m["push"])
                    elif isinstance(m, dict) and "echo" in m:
                        if m["echo"] in c.pending:
                            c.pending.discard(m["echo"])
                            c.echoed += 1
                        else:
                            c.bad_echo += 1
                        if c.cid is None:
                            c.cid = m.get("cid")
                            if c.end is None:
                                self.live[c.cid] = c
                    else:
                        c.other += 1
            except ConnectionClosed as e:
                c.close_code = e.rcvd.code if e.rcvd else None
            except Exception:  # noqa: BLE001
                pass

        rt = asyncio.create_task(reader())
        end = random.choices(list(END_WEIGHTS), weights=list(END_WEIGHTS.values()))[0]
        deadline = now() + random.uniform(*LIFE)
        n = 0
        try:
            while now() < deadline and not rt.done() and self.running:
                n += 1
                c.pending.add(n)
                c.sent += 1
                try:
                    await ws.send(json.dumps({"action": "echo", "n": n}))
                except ConnectionClosed:
                    break
                await asyncio.wait([rt], timeout=random.uniform(*MSG_INTERVAL))
            if rt.done():
                t = now()
                c.t_end = t
                if self.t_kill is not None and node == self.kill_node:
                    c.end = "node_lost"
                    c.t_expect = self.t_kill - KILL_GRACE
                else:
                    c.end = "closed_by_gateway"
                    c.t_expect = t
                return
            c.t_expect = now()       # pushes acked before this must arrive
            await asyncio.wait([rt], timeout=DRAIN)
            if rt.done():
                c.end = "node_lost" if (self.t_kill is not None and node == self.kill_node) \
                    else "closed_by_gateway"
                if c.end == "node_lost":
                    c.t_expect = min(c.t_expect, self.t_kill - KILL_GRACE)
                c.t_end = now()
                return
            c.end = end
            if end == "clean":
                await ws.close()
                await asyncio.wait([rt], timeout=10)
            elif end == "drop":
                ws.transport.abort()
                await asyncio.wait([rt], timeout=10)
            else:  # silent: stop reading and answering pings; the heartbeat must find it
                ws.transport.pause_reading()
                await asyncio.sleep(SILENT_WAIT)
                ws.transport.abort()
                await asyncio.wait([rt], timeout=10)
            c.t_end = now()
        finally:
            if c.end is None:
                c.end = "error"
                c.t_expect = c.t_expect or now()
                c.t_end = now()
            if c.cid is not None:
                self.live.pop(c.cid, None)
            if not rt.done():
                rt.cancel()
            try:
                ws.transport.abort()
            except Exception:  # noqa: BLE001
                pass

    async def slot(self, delay):
        await asyncio.sleep(delay)
        while self.running:
            try:
                await self.life()
            except Exception as e:  # noqa: BLE001
                k = "life:" + type(e).__name__
                self.connect_fail[k] = self.connect_fail.get(k, 0) + 1
                await asyncio.sleep(0.5)

    # ---- pusher
    async def pusher(self, rate, workers=16):
        conns = {}
        per = workers / rate

        async def worker():
            while self.running:
                t0 = now()
                if self.live:
                    cid = random.choice(list(self.live)) if len(self.live) < 64 else \
                        random.choice(tuple(self.live))
                    c = self.live.get(cid)
                    node = random.choice(self.alive)
                    key = (node, id(asyncio.current_task()))
                    h = conns.get(key)
                    if h is None:
                        host, port = self.nodes[node].split(":")
                        h = conns[key] = Http(host, int(port))
                    pid = self.next_push
                    self.next_push += 1
                    try:
                        st, _ = await h.request("POST", f"/{STAGE}/@connections/{quote(cid, safe='')}",
                                                json.dumps({"push": pid}).encode())
                    except Exception:  # noqa: BLE001
                        self.push_errors += 1
                        conns.pop(key, None)
                        st = None
                    if st is not None:
                        self.push_status[st] = self.push_status.get(st, 0) + 1
                        if st == 200 and c is not None:
                            c.acked.append((pid, now()))
                await asyncio.sleep(max(0.0, per - (now() - t0)))
        await asyncio.gather(*[worker() for _ in range(workers)])

    async def sampler(self):
        while True:
            t = now()
            for i, pid in enumerate(self.pids):
                r = rss_kib(pid)
                if r is not None:
                    self.rss[i].append((round(t, 1), r))
            await asyncio.sleep(2)

    async def node_connections(self, i):
        host, port = self.nodes[i].split(":")
        h = Http(host, int(port))
        try:
            st, data = await h.request("GET", "/metrics")
        finally:
            h.close()
        for line in data.decode().splitlines():
            if line.startswith("sockway_connections"):
                return float(line.split()[-1])
        return None

    async def wait_zero(self, timeout):
        t0 = now()
        while now() - t0 < timeout:
            counts = []
            for i in self.alive:
                try:
                    counts.append(await self.node_connections(i))
                except Exception:  # noqa: BLE001
                    counts.append(None)
            if all(x == 0 for x in counts):
                return now() - t0
            await asyncio.sleep(1)
        return None

    async def phase(self, seconds, clients, push_rate, kill_at=None):
        self.running = True
        tasks = [asyncio.create_task(self.slot(random.uniform(0, 10))) for _ in range(clients)]
        ptask = asyncio.create_task(self.pusher(push_rate))
        t0 = now()
        if kill_at is not None:
            await asyncio.sleep(kill_at)
            os.kill(self.pids[self.kill_node], signal.SIGKILL)
            self.t_kill = now()
            self.alive.remove(self.kill_node)
            print(f"SIGKILLed node {self.kill_node} at +{self.t_kill - t0:.1f}s", flush=True)
            await asyncio.sleep(max(0, seconds - (now() - t0)))
        else:
            await asyncio.sleep(seconds)
        self.running = False
        t_stop = now()
        await asyncio.gather(*tasks, ptask)
        return t_stop, now()

    async def progress(self, t0):
        while True:
            await asyncio.sleep(30)
            ended = sum(1 for c in self.clients if c.end)
            print(f"+{now() - t0:5.0f}s opened={len(self.clients)} ended={ended} "
                  f"live={len(self.live)} pushes={self.push_status} "
                  f"connect_fail={self.connect_fail}", flush=True)

    async def run(self):
        a = self.args
        t_start = now()
        samp = asyncio.create_task(self.sampler())
        prog = asyncio.create_task(self.progress(t_start))
        ticks0 = {}
        # warm-up at full load, then wait for zero connections: the baseline.
        print(f"warm-up {a.warmup}s with {a.clients} clients", flush=True)
        await self.phase(a.warmup, a.clients, a.push_rate)
        z = await self.wait_zero(60)
        await asyncio.sleep(a.settle)
        baseline = {i: rss_kib(p) for i, p in enumerate(self.pids)}
        self.phase_marks["baseline_zero_after"] = z
        print(f"baseline RSS KiB {baseline} (zero connections after {z}s)", flush=True)
        self.wave = "main"
        for i, p in enumerate(self.pids + [a.backend_pid, os.getpid()]):
            ticks0[i] = cpu_ticks(p)
        t_main = now()
        kill_at = a.minutes * 60 / 2 if self.kill_node is not None else None
        t_stop, t_drained = await self.phase(a.minutes * 60, a.clients, a.push_rate, kill_at)
        t_main_end = now()
        cpu = {}
        hz = os.sysconf("SC_CLK_TCK")
        for i, p in enumerate(self.pids + [a.backend_pid, os.getpid()]):
            t1 = cpu_ticks(p)
            name = f"node{i}" if i < len(self.pids) else ("backend" if i == len(self.pids) else "load")
            if t1 is not None and ticks0.get(i) is not None:
                cpu[name] = round(100.0 * (t1 - ticks0[i]) / hz / (t_main_end - t_main), 1)
        z_end = await self.wait_zero(120)
        await asyncio.sleep(a.settle)
        end_rss = {i: rss_kib(p) for i, p in enumerate(self.pids)}
        print(f"end RSS KiB {end_rss} (zero connections after {z_end}s)", flush=True)
        # The heap reaches its working size during the main phase, not the short warm-up (on
        # rare peaks: many silent peers holding full mailboxes at once; and after a kill the
        # survivors carry more connections each). A second round of the same load, measured
        # against the RSS after the first, tells a leak (it grows again) from an allocator
        # keeping a heap it grew once (it does not).
        repeat_rss, z_repeat, t_repeat = None, None, None
        if a.repeat > 0:
            self.wave = "repeat"
            t_repeat = now()
            print(f"repeat {a.repeat}s at the same load", flush=True)
            await self.phase(a.repeat, a.clients, a.push_rate)
            z_repeat = await self.wait_zero(120)
            await asyncio.sleep(a.settle)
            repeat_rss = {i: rss_kib(p) for i, p in enumerate(self.pids)}
            print(f"repeat RSS KiB {repeat_rss} (zero connections after {z_repeat}s)", flush=True)
        samp.cancel()
        prog.cancel()
        # ---- push accounting
        push = {"acked": 0, "expected": 0, "received_expected": 0, "lost": [],
                "acked_after_expect_window": 0, "received_after_expect_window": 0,
                "excluded_by_end": {}, "dup_received": 0, "received_not_acked": 0}
        msgs = {"sent": 0, "echoed": 0, "bad_echo": 0, "missing_reply": 0, "other_frames": 0}
        ends = {}
        lost_after_kill_200 = 0
        for c in self.clients:
            ends[c.end] = ends.get(c.end, 0) + 1
            msgs["sent"] += c.sent
            msgs["echoed"] += c.echoed
            msgs["bad_echo"] += c.bad_echo
            msgs["other_frames"] += c.other
            if c.end in ("clean", "drop", "silent"):
                msgs["missing_reply"] += len(c.pending)
            push["dup_received"] += c.dup_pushes
            acked_ids = set()
            for pid, t in c.acked:
                push["acked"] += 1
                acked_ids.add(pid)
                if t < c.t_expect:
                    push["expected"] += 1
                    if pid in c.pushes:
                        push["received_expected"] += 1
                    else:
                        push["lost"].append({"push": pid, "cid": c.cid, "node": c.node,
                                             "end": c.end, "ack_t": t, "expect_until": c.t_expect,
                                             "t_end": c.t_end})
                else:
                    push["acked_after_expect_window"] += 1
                    push["excluded_by_end"][c.end] = push["excluded_by_end"].get(c.end, 0) + 1
                    if pid in c.pushes:
                        push["received_after_expect_window"] += 1
                    if c.end == "node_lost" and self.t_kill and t > self.t_kill + 0.1:
                        lost_after_kill_200 += 1
            push["received_not_acked"] += len(c.pushes - acked_ids)
        result = {
            "nodes": self.nodes, "pids": self.pids, "kill_node": self.kill_node,
            "t_start": t_start, "t_main": t_main, "t_stop": t_stop, "t_drained": t_drained,
            "t_kill": self.t_kill, "t_end": now(), "warmup_s": a.warmup, "main_s": a.minutes * 60,
            "clients": a.clients, "push_rate": a.push_rate,
            "opened": len(self.clients),
            "opened_main": sum(1 for c in self.clients if c.wave == "main"),
            "with_cid": sum(1 for c in self.clients if c.cid),
            "ends": ends, "connect_fail": self.connect_fail,
            "push_status": {str(k): v for k, v in self.push_status.items()},
            "push_errors": self.push_errors, "push": push, "msgs": msgs,
            "node_lost_acked_200_after_kill": lost_after_kill_200,
            "baseline_rss": baseline, "end_rss": end_rss, "repeat_rss": repeat_rss,
            "t_repeat": t_repeat, "repeat_s": a.repeat if repeat_rss is not None else 0,
            "peak_rss": {i: max((r for _, r in s), default=None) for i, s in self.rss.items()},
            "rss_samples": self.rss, "zero_after": {"baseline": z, "end": z_end, "repeat": z_repeat},
            "cpu_pct": cpu,
            "client_nodes": {c.cid: c.node for c in self.clients if c.cid},
            "silent_t": {c.cid: c.t_expect + DRAIN for c in self.clients
                         if c.cid and c.end == "silent"},
        }
        with open(a.out, "w") as f:
            json.dump(result, f)
        print("load done", flush=True)


# =========================================================================== check
def tag_of(cid):
    s = cid.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4))[:2].hex()
    except Exception:  # noqa: BLE001
        return None


def check(args):
    L = json.load(open(args.load))
    events = [json.loads(line) for line in open(args.events) if line.strip()]
    connect, disc, msg = {}, {}, 0
    orphan_disc = []
    for e in events:
        if e["e"] == "CONNECT":
            connect[e["c"]] = e
        elif e["e"] == "DISCONNECT":
            disc.setdefault(e["c"], []).append(e)
        elif e["e"] == "MESSAGE":
            msg += 1
    for cid in disc:
        if cid not in connect:
            orphan_disc.append(cid)
    missing = [c for c in connect if c not in disc]
    dup = {c: len(v) for c, v in disc.items() if len(v) > 1}
    ok1 = not missing and not dup and not orphan_disc

    P = L["push"]
    ok2 = not P["lost"] and P["dup_received"] == 0

    nodes = range(len(L["nodes"]))
    killed = L["kill_node"]
    rss_rows, ok3 = [], True
    repeat = L.get("repeat_rss")
    for i in nodes:
        b, e, p = L["baseline_rss"].get(str(i)), L["end_rss"].get(str(i)), L["peak_rss"].get(str(i))
        if killed is not None and i == killed:
            rss_rows.append(f"| node{i} | {b} | {p} | killed | - | - | n/a (SIGKILLed) |")
            continue
        # With a repeat round, a node's baseline is its RSS after the main phase; the repeat
        # must come back to it.
        r = repeat.get(str(i)) if repeat else None
        base, final = (e, r) if r is not None else (b, e)
        margin = max(args.rss_margin_pct / 100.0 * base, args.rss_margin_mib * 1024)
        good = final is not None and final <= base + margin
        ok3 = ok3 and good
        rss_rows.append(f"| node{i} | {b} | {p} | {e} | {r if r is not None else '-'} | "
                        f"{final - base:+d} ({100.0 * (final - base) / base:+.1f}%) | "
                        f"{'PASS' if good else 'FAIL'} (limit {base + margin:.0f}) |")

    panics = []
    for log in args.logs.split(","):
        for n, line in enumerate(open(log, errors="replace"), 1):
            if "panicked" in line:
                panics.append(f"{os.path.basename(log)}:{n}: {line.strip()[:300]}")
    ok4 = not panics

    # kill timing
    kill_lines = []
    if killed is not None and L["t_kill"]:
        tags = {}
        for cid, node in L["client_nodes"].items():
            tags.setdefault(node, set()).add(tag_of(cid))
        ktags = tags.get(killed, set()) if isinstance(next(iter(tags), 0), int) else \
            tags.get(str(killed), set())
        t_kill = L["t_kill"]
        owned = [c for c, e in connect.items() if tag_of(c) in ktags and e["t"] < t_kill]
        alive_at_kill = [c for c in owned if not any(d["t"] < t_kill for d in disc.get(c, []))]
        after = [d for c in alive_at_kill for d in disc.get(c, [])]
        lost_reason = [d for d in after if d.get("reason") == "Gateway node lost"]
        codes = {}
        for d in after:
            codes[d.get("code")] = codes.get(d.get("code"), 0) + 1
        lat = sorted(d["t"] - t_kill for d in after)
        kill_lines.append(f"- node{killed} SIGKILLed at {time.strftime('%H:%M:%S', time.gmtime(t_kill))} UTC, "
                          f"{t_kill - L['t_main']:.0f} s into the main phase; node tag(s) {sorted(ktags)}")
        kill_lines.append(f"- its connections open at the kill (CONNECT seen, no DISCONNECT before it): "
                          f"{len(alive_at_kill)}; their DISCONNECT events after the kill: {len(after)} "
                          f"(`disconnectStatusCode` counts {codes}; reason \"Gateway node lost\": {len(lost_reason)})")
        if lat:
            kill_lines.append(f"- time from SIGKILL to those `$disconnect`s: first {lat[0]:.2f} s, "
                              f"median {lat[len(lat) // 2]:.2f} s, last {lat[-1]:.2f} s")
        missing_k = [c for c in alive_at_kill if c not in disc]
        kill_lines.append(f"- of them without any DISCONNECT: {len(missing_k)}")
        kill_lines.append(f"- `200` acknowledgements to a killed-node connection more than 0.1 s after the "
                          f"kill: {L['node_lost_acked_200_after_kill']}")

    # silent peers: was the DISCONNECT delivered before the client aborted its socket?
    silent_found = silent_total = 0
    for cid, t_silent in L["silent_t"].items():
        ds = disc.get(cid, [])
        silent_total += 1
        if ds and ds[0]["t"] < t_silent + SILENT_WAIT:
            silent_found += 1
    codes_all = {}
    for v in disc.values():
        codes_all[v[0].get("code")] = codes_all.get(v[0].get("code"), 0) + 1

    def v(ok):
        return "**PASS**" if ok else "**FAIL**"

    M = L["msgs"]
    md = []
    md.append(f"### Mode `{args.mode}`\n")
    md.append(f"- nodes: {len(L['nodes'])}; concurrent client slots: {L['clients']}; "
              f"push rate target: {L['push_rate']}/s; warm-up {L['warmup_s']} s, "
              f"main phase {L['main_s']:.0f} s ({L['main_s'] / 60:.1f} min), "
              f"drain of the last clients {L['t_drained'] - L['t_stop']:.0f} s")
    md.append(f"- average CPU over the main phase (% of one core): {L['cpu_pct']}")
    md.append(f"- connections opened (client side, warm-up + main): {L['opened']} "
              f"(main phase {L['opened_main']}); failed connects: {L['connect_fail'] or 0}")
    md.append(f"- client ends: {L['ends']}")
    md.append(f"- messages: sent {M['sent']}, round-tripped through the two-way route {M['echoed']}, "
              f"unmatched replies {M['bad_echo']}, replies missing for deliberately ended clients "
              f"{M['missing_reply']}, other frames {M['other_frames']}; backend MESSAGE events {msg}")
    md.append(f"- pushes: status counts {L['push_status']}, transport errors {L['push_errors']}")
    md.append("")
    md.append("| Check | Result | Verdict |")
    md.append("|---|---|---|")
    md.append(f"| 1. exactly one `$disconnect` per accepted connection | CONNECT (answered 200) {len(connect)}, "
              f"DISCONNECT {sum(len(x) for x in disc.values())}; missing {len(missing)}, duplicated {len(dup)}, "
              f"DISCONNECT without CONNECT {len(orphan_disc)} | {v(ok1)} |")
    md.append(f"| 2. every acknowledged push reached its live reader | acked (200) {P['acked']}; required "
              f"{P['expected']}, received {P['received_expected']}, lost {len(P['lost'])}; duplicates "
              f"received {P['dup_received']} | {v(ok2)} |")
    md.append(f"| 3. RSS back to baseline (margin max({args.rss_margin_pct}%, {args.rss_margin_mib} MiB)) | "
              f"see table | {v(ok3)} |")
    md.append(f"| 4. no `panicked` in any node's stderr | {len(panics)} lines | {v(ok4)} |")
    md.append("")
    md.append(f"Pushes acknowledged after a client's expectation window closed (not required, see "
              f"definitions): {P['acked_after_expect_window']} by end type {P['excluded_by_end']}, of "
              f"which {P['received_after_expect_window']} arrived anyway. Pushes received without a 200 "
              f"seen by the pusher: {P['received_not_acked']}.")
    md.append(f"`disconnectStatusCode` of all DISCONNECT events: {codes_all}. Silent peers whose "
              f"`$disconnect` arrived before the client itself aborted the socket (heartbeat found them): "
              f"{silent_found} of {silent_total}.")
    md.append("")
    if repeat:
        md.append(f"The baseline checked is each node's RSS at zero connections after the main phase (the heap "
                  f"reaches its working size there, not in the warm-up; after a kill the survivors also carry "
                  f"the killed node's clients); a repeat round of {L['repeat_s']:.0f} s at the same load must "
                  f"bring it back there. The warm-up baseline is shown for reference.")
        md.append("")
    md.append("| Node | RSS warm-up baseline KiB | peak KiB | end KiB | after repeat KiB | growth checked | verdict |")
    md.append("|---|---|---|---|---|---|---|")
    md.extend(rss_rows)
    md.append("")
    md.append("RSS (KiB) over the main phase, one sample per minute (a leak shows as a steady climb):\n")
    for i in nodes:
        ss = [(t, r) for t, r in L["rss_samples"].get(str(i), []) if L["t_main"] <= t <= L["t_stop"]]
        row, nxt = [], L["t_main"]
        for t, r in ss:
            if t >= nxt:
                row.append(f"{(t - L['t_main']) / 60:.0f}m:{r}")
                nxt += 60
        md.append(f"- node{i}: {' '.join(row)}")
    md.append("")
    if kill_lines:
        md.append("Node kill:\n")
        md.extend(kill_lines)
        md.append("")
    if missing or dup or orphan_disc:
        md.append(f"Disconnect problems: missing {missing[:50]}, duplicated {dict(list(dup.items())[:50])}, "
                  f"orphan {orphan_disc[:50]}")
        for c in list(dup)[:10]:
            md.append(f"  - {c}: {disc[c]}")
    if P["lost"]:
        md.append(f"Lost pushes (first 30 of {len(P['lost'])}):")
        for x in P["lost"][:30]:
            md.append(f"  - {json.dumps(x)}")
    if panics:
        md.append("Panics:")
        md.extend(f"  - `{p}`" for p in panics[:20])
    md.append("")
    with open(args.md, "w") as f:
        f.write("\n".join(md) + "\n")
    ok = ok1 and ok2 and ok3 and ok4
    print("\n".join(md))
    print(f"mode {args.mode}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("backend")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--out", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--nodes", required=True)
    lo.add_argument("--pids", required=True)
    lo.add_argument("--backend-pid", type=int, required=True)
    lo.add_argument("--minutes", type=float, default=10)
    lo.add_argument("--warmup", type=float, default=45)
    lo.add_argument("--settle", type=float, default=10)
    lo.add_argument("--clients", type=int, default=2000)
    lo.add_argument("--push-rate", type=float, default=200)
    lo.add_argument("--kill-node", type=int, default=None)
    lo.add_argument("--repeat", type=float, default=180,
                    help="seconds of a second round at the same load, the RSS check's baseline (0: none)")
    lo.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--mode", required=True)
    c.add_argument("--events", required=True)
    c.add_argument("--load", required=True)
    c.add_argument("--logs", required=True)
    c.add_argument("--md", required=True)
    c.add_argument("--rss-margin-pct", type=float, default=10)
    c.add_argument("--rss-margin-mib", type=float, default=16)
    a = ap.parse_args()
    if a.cmd == "backend":
        asyncio.run(run_backend(a.port, a.out))
    elif a.cmd == "load":
        asyncio.run(Load(a).run())
    else:
        sys.exit(check(a))


if __name__ == "__main__":
    main()
