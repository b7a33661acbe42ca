#!/usr/bin/env python3
"""Resume soak for sockway: clients that drop and resume across a cluster. Driven by
tests/soak/run.sh --mode resume (the backend is soak.py's).

Subcommands:
  load   --nodes ADDR,... --pids PID,... --seconds S --clients N --out FILE [--kill-node I]
         clients that keep one connection each through repeated abrupt drops and resumes on
         random nodes, pushers posting to them through random nodes, one node SIGKILLed
         halfway; writes what every client read and every post's status as JSON
  check  --events FILE --load FILE --logs LOG,... --md OUT [--strict]
         the checks of tests/soak/DEFINITIONS.md ("Resume mode"); exits 1 on failure
"""
import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from urllib.parse import quote

from soak import Http, rss_kib

STAGE = "soak"
RESUME_PROTOCOL = "sockway.resume.v1"
TOKEN_PREFIX = "sockway.resume.token."
LIVE = (1.0, 6.0)          # seconds a socket lives before its client drops it, uniform
AWAY = (0.0, 0.5)          # seconds a dropped client waits before it resumes, uniform
RETRY = 0.2                # seconds between failed reconnect attempts
DRAIN = 3.0                # at the end, a client reads this long after the pushers stopped
SOURCES = [f"127.0.0.{i}" for i in range(2, 18)]


def now():
    return time.time()


class Conn:
    """One connection id as its client saw it."""

    __slots__ = ("cid", "client", "opened", "received", "resumes", "drops", "node_ends",
                 "refused_at", "closed_at", "acked", "missed", "last_resume", "path")

    def __init__(self, cid, client, t):
        self.cid, self.client, self.opened = cid, client, t
        self.received = []      # (sender, sequence) in the order read
        self.resumes = 0
        self.drops = 0          # sockets the client dropped on purpose
        self.node_ends = 0      # sockets that ended under the client (its node was killed)
        self.refused_at = None  # the time a resume was refused (4410)
        self.closed_at = None   # the clean close at the end
        self.acked = []         # (sender, sequence, ack time) of every 200
        self.missed = 0
        self.last_resume = None
        self.path = []          # the node of each resume frame, in order: where it has been


class Load:
    def __init__(self, args):
        self.args = args
        self.nodes = args.nodes.split(",")
        self.pids = [int(p) for p in args.pids.split(",")]
        self.alive = list(range(len(self.nodes)))
        self.conns = {}          # cid -> Conn
        self.pushable = []       # cids a pusher may pick (open or suspended, not ended)
        self.where = {}          # cid -> node of its last resume frame (the node holding it)
        self.dropping = True
        self.pushing = True
        self.ending = False
        self.t_kill = None
        self.held_by_killed = []
        self.connect_fail = {}
        self.other_close = {}
        self.push_status = {}
        self.push_errors = 0
        self.rss = {i: [] for i in range(len(self.nodes))}

    def fail(self, kind):
        self.connect_fail[kind] = self.connect_fail.get(kind, 0) + 1

    def url(self, node):
        return f"ws://{self.nodes[node]}/{STAGE}"

    async def client(self, idx):
        try:
            await self.client_life(idx)
        except Exception as e:  # noqa: BLE001  (counted: the report shows it)
            self.fail(f"client crashed: {e!r}"[:200])

    # ---- one client: one connection id at a time, kept through drops for as long as it can
    async def client_life(self, idx):
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed
        await asyncio.sleep(random.uniform(0, 5))
        conn, token, count = None, None, 0
        while True:
            node = random.choice(self.alive)
            protocols = [RESUME_PROTOCOL]
            if token:
                protocols.append(f"{TOKEN_PREFIX}{token}.{count}")
            try:
                ws = await connect(self.url(node), subprotocols=protocols, ping_interval=None,
                                   compression=None, open_timeout=10, close_timeout=5,
                                   max_queue=None, local_addr=(random.choice(SOURCES), 0))
            except Exception as e:  # noqa: BLE001
                self.fail(type(e).__name__)
                await asyncio.sleep(RETRY)
                continue
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
                ws.transport.abort()
                if code == 4410 and conn is not None:
                    conn.refused_at = now()
                    self.forget(conn)
                    conn, token, count = None, None, 0
                else:
                    self.other_close[str(code)] = self.other_close.get(str(code), 0) + 1
                    await asyncio.sleep(RETRY)
                continue
            except Exception as e:  # noqa: BLE001
                self.fail("greeting:" + type(e).__name__)
                ws.transport.abort()
                await asyncio.sleep(RETRY)
                continue
            if frame.get("resumed"):
                assert frame["connectionId"] == conn.cid, (frame, conn.cid)
                count = frame["sequence"]
                conn.resumes += 1
                conn.missed += frame.get("missed", 0)
                conn.last_resume = now()
            else:
                if conn is not None:  # only a refused resume starts over
                    self.fail("unexpected new connection")
                conn = Conn(frame["connectionId"], idx, now())
                self.conns[conn.cid] = conn
                self.pushable.append(conn.cid)
                count = 0
            token = frame["token"]
            self.where[conn.cid] = node
            if not conn.path or conn.path[-1] != node:
                conn.path.append(node)

            # The socket's life: read until the client drops it, its node goes, or the end.
            deadline = now() + random.uniform(*LIVE)
            ended_under_us = False
            drain_until = None
            while True:
                if self.ending and drain_until is None:
                    drain_until = now() + DRAIN
                limit = drain_until if drain_until is not None else \
                    (deadline if self.dropping else now() + 0.5)
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.0, limit - now()))
                except asyncio.TimeoutError:
                    if drain_until is not None and now() >= drain_until:
                        break
                    if self.dropping and now() >= deadline:
                        break
                    continue
                except ConnectionClosed:
                    ended_under_us = True
                    break
                count += 1
                try:
                    message = json.loads(raw)
                    conn.received.append((message["p"], message["s"]))
                except (ValueError, KeyError, TypeError):
                    conn.received.append(("other", raw[:80] if isinstance(raw, str) else "binary"))
            if drain_until is not None and not ended_under_us:
                await ws.close()
                conn.closed_at = now()
                self.forget(conn)
                return
            if ended_under_us:
                conn.node_ends += 1
            else:
                conn.drops += 1
                ws.transport.abort()  # no close frame: the connection is suspended
                await asyncio.sleep(random.uniform(*AWAY))

    def forget(self, conn):
        try:
            self.pushable.remove(conn.cid)
        except ValueError:
            pass

    # ---- pushers: each one posts to random connections in its own order
    async def pusher(self, sender, rate):
        sequences = {}
        conns = {}
        interval = 1.0 / rate
        while self.pushing:
            t0 = now()
            if self.pushable:
                cid = random.choice(self.pushable)
                node = random.choice(self.alive)
                h = conns.get(node)
                if h is None:
                    host, port = self.nodes[node].split(":")
                    h = conns[node] = Http(host, int(port))
                sequence = sequences.get(cid, 0) + 1
                sequences[cid] = sequence
                body = json.dumps({"p": sender, "s": sequence}).encode()
                try:
                    status, _ = await h.request("POST", f"/{STAGE}/@connections/{quote(cid, safe='')}", body)
                except Exception:  # noqa: BLE001
                    self.push_errors += 1
                    conns.pop(node, None)
                    status = None
                if status is not None:
                    self.push_status[status] = self.push_status.get(status, 0) + 1
                    if status == 200:
                        self.conns[cid].acked.append((sender, sequence, now()))
            await asyncio.sleep(max(0.0, interval - (now() - t0)))
        for h in conns.values():
            h.close()

    async def sampler(self):
        while True:
            for i, pid in enumerate(self.pids):
                r = rss_kib(pid)
                if r is not None:
                    self.rss[i].append((round(now(), 1), r))
            await asyncio.sleep(2)

    async def wait_zero(self, timeout):
        t0 = now()
        while now() - t0 < timeout:
            counts = []
            for i in self.alive:
                host, port = self.nodes[i].split(":")
                h = Http(host, int(port))
                try:
                    _, data = await h.request("GET", "/metrics")
                    value = None
                    for line in data.decode().splitlines():
                        if line.startswith("sockway_connections "):
                            value = float(line.split()[-1])
                    counts.append(value)
                except Exception:  # noqa: BLE001
                    counts.append(None)
                finally:
                    h.close()
            if all(x == 0 for x in counts):
                return now() - t0
            await asyncio.sleep(0.5)
        return None

    async def run(self):
        a = self.args
        samp = asyncio.create_task(self.sampler())
        t_start = now()
        clients = [asyncio.create_task(self.client(i)) for i in range(a.clients)]
        pushers = [asyncio.create_task(self.pusher(s, a.push_rate / a.pushers))
                   for s in range(a.pushers)]

        async def progress():
            while True:
                await asyncio.sleep(15)
                print(f"+{now() - t_start:4.0f}s connections={len(self.conns)} "
                      f"pushable={len(self.pushable)} pushes={self.push_status} "
                      f"resumes={sum(c.resumes for c in self.conns.values())} "
                      f"refused={sum(1 for c in self.conns.values() if c.refused_at)} "
                      f"connect_fail={self.connect_fail} other_close={self.other_close}", flush=True)
        prog = asyncio.create_task(progress())
        if a.kill_node is not None:
            await asyncio.sleep(a.seconds / 2)
            self.held_by_killed = [cid for cid, node in self.where.items()
                                   if node == a.kill_node and cid in self.pushable]
            os.kill(self.pids[a.kill_node], signal.SIGKILL)
            self.t_kill = now()
            self.alive.remove(a.kill_node)
            print(f"SIGKILLed node {a.kill_node} at +{self.t_kill - t_start:.1f}s, holding "
                  f"{len(self.held_by_killed)} connections", flush=True)
            await asyncio.sleep(max(0.0, a.seconds - (now() - t_start)))
        else:
            await asyncio.sleep(a.seconds)
        # The end: no more drops (a suspended client resumes), then no more posts, then every
        # client reads for DRAIN seconds and closes with 1000.
        t_stop = now()
        self.dropping = False
        await asyncio.sleep(1.0)
        self.pushing = False
        await asyncio.gather(*pushers)
        self.ending = True
        await asyncio.wait_for(asyncio.gather(*clients), 120)
        t_closed = now()
        zero_after = await self.wait_zero(60)
        await asyncio.sleep(a.settle)
        end_rss = {i: rss_kib(p) for i, p in enumerate(self.pids)}
        samp.cancel()
        prog.cancel()
        result = {
            "nodes": self.nodes, "kill_node": a.kill_node, "t_start": t_start, "t_stop": t_stop,
            "t_closed": t_closed, "t_kill": self.t_kill, "seconds": a.seconds,
            "clients": a.clients, "push_rate": a.push_rate, "pushers": a.pushers,
            "held_by_killed": self.held_by_killed, "connect_fail": self.connect_fail,
            "other_close": self.other_close,
            "push_status": {str(k): v for k, v in self.push_status.items()},
            "push_errors": self.push_errors, "zero_after": zero_after, "end_rss": end_rss,
            "rss_samples": self.rss,
            "conns": {cid: {"client": c.client, "opened": c.opened, "received": c.received,
                            "resumes": c.resumes, "drops": c.drops, "node_ends": c.node_ends,
                            "refused_at": c.refused_at, "closed_at": c.closed_at,
                            "acked": c.acked, "missed": c.missed, "last_resume": c.last_resume,
                            "path": c.path}
                      for cid, c in self.conns.items()},
        }
        with open(a.out, "w") as f:
            json.dump(result, f)
        print("load done", flush=True)


# =========================================================================== check
def check(args):
    L = json.load(open(args.load))
    events = [json.loads(line) for line in open(args.events) if line.strip()]
    connects, disconnects = {}, {}
    for e in events:
        if e["e"] == "CONNECT":
            connects.setdefault(e["c"], []).append(e)
        elif e["e"] == "DISCONNECT":
            disconnects.setdefault(e["c"], []).append(e)
    conns = L["conns"]
    held = set(L["held_by_killed"])

    # 1. The backend's view: one $connect and one $disconnect per connection, none early.
    second_connect = [c for c, v in connects.items() if len(v) > 1]
    missing_disc = [c for c in connects if c not in disconnects]
    dup_disc = {c: len(v) for c, v in disconnects.items() if len(v) > 1}
    orphan_disc = [c for c in disconnects if c not in connects]
    unknown = [c for c in conns if c not in connects]
    early = []  # a $disconnect before the connection's client was done with it
    for cid, c in conns.items():
        for d in disconnects.get(cid, []):
            done = c["closed_at"] or c["refused_at"]
            if done is None or d["t"] < (c["last_resume"] or c["opened"]):
                early.append(cid)
    ok1 = not (second_connect or missing_disc or dup_disc or orphan_disc or unknown or early)

    # 2. Resumes: refused only for connections the killed node held. With --strict, only for
    # those that were open there when it died (their socket ended under the client): an open
    # connection's state lives in its node's memory, a suspended one's in Redis too, so every
    # suspended connection must resume, wherever it was held.
    refused = [cid for cid, c in conns.items() if c["refused_at"]]
    if args.strict:
        refused_excused = [cid for cid in refused if cid in held and conns[cid]["node_ends"] > 0]
    else:
        refused_excused = [cid for cid in refused if cid in held]
    refused_unexcused = [cid for cid in refused if cid not in refused_excused]
    ok2 = not refused_unexcused

    # 3. Every acknowledged post delivered exactly once, in each sender's order; a connection
    # whose resume was refused (excused above) owes only its one $disconnect (check 1).
    lost, dups, disorder, others = [], 0, [], 0
    acked_total = required = delivered = 0
    for cid, c in conns.items():
        received = [tuple(x) for x in c["received"]]
        others += sum(1 for x in received if x[0] == "other")
        seen = set()
        last = {}
        for sender, sequence in received:
            if sender == "other":
                continue
            if (sender, sequence) in seen:
                dups += 1
            seen.add((sender, sequence))
            if sequence <= last.get(sender, 0):
                disorder.append((cid, sender, sequence, last.get(sender)))
            last[sender] = max(last.get(sender, 0), sequence)
        acked_total += len(c["acked"])
        if cid in refused_excused and not args.strict:
            continue
        for sender, sequence, t in c["acked"]:
            # With --strict, a connection open on the killed node still owes every post
            # acknowledged before the kill: an acknowledged post is never lost.
            if cid in refused_excused and t >= L["t_kill"]:
                continue
            required += 1
            if (sender, sequence) in seen:
                delivered += 1
            else:
                lost.append({"cid": cid, "sender": sender, "sequence": sequence, "ack_t": t,
                             "held_by_killed": cid in held,
                             "resume_refused": c["refused_at"] is not None})
    ok3 = not lost and dups == 0 and not disorder and others == 0

    # 4. RSS bounded: after every client closed, each surviving node is back within the margin
    # of its RSS 30 s into the run (its working size at this load).
    rss_rows, ok4 = [], True
    for i in range(len(L["nodes"])):
        samples = L["rss_samples"].get(str(i), [])
        base = next((r for t, r in samples if t >= L["t_start"] + 30), None)
        peak = max((r for _, r in samples), default=None)
        if L["kill_node"] is not None and i == L["kill_node"]:
            rss_rows.append(f"| node{i} | {base} | {peak} | killed | n/a (SIGKILLed) |")
            continue
        end = L["end_rss"].get(str(i))
        margin = max(0.10 * base, 16 * 1024) if base else 0
        good = base is not None and end is not None and end <= base + margin
        ok4 = ok4 and good
        rss_rows.append(f"| node{i} | {base} | {peak} | {end} | "
                        f"{'PASS' if good else 'FAIL'} (limit {base + margin:.0f}) |")

    panics = []
    for log in args.logs.split(","):
        for n, line in enumerate(open(log, errors="replace"), 1):
            if "panicked" in line:
                panics.append(f"{os.path.basename(log)}:{n}: {line.strip()[:300]}")
    ok5 = not panics

    def v(ok):
        return "**PASS**" if ok else "**FAIL**"

    resumes = sum(c["resumes"] for c in conns.values())
    drops = sum(c["drops"] for c in conns.values())
    node_ends = sum(c["node_ends"] for c in conns.values())
    missed = sum(c["missed"] for c in conns.values())
    codes = {}
    for v_ in disconnects.values():
        key = f"{v_[0].get('code')} {v_[0].get('reason')}"
        codes[key] = codes.get(key, 0) + 1
    held_refused = [cid for cid in held if conns[cid]["refused_at"]]
    held_resumed = [cid for cid in held if not conns[cid]["refused_at"]]
    md = [f"### Mode `resume`{' (strict)' if args.strict else ''}\n"]
    md.append(f"- nodes: {len(L['nodes'])} on one redis-server, `[resume] window = \"10s\"`; clients: "
              f"{L['clients']}; posts: {L['push_rate']}/s from {L['pushers']} senders; "
              f"run {L['seconds']:.0f} s, then 1 s without drops, the posts stopped, a {DRAIN:.0f} s "
              f"drain and a clean close of every connection")
    md.append(f"- connections (ids): {len(conns)}; sockets dropped by their client without a close "
              f"frame: {drops}; sockets ended under their client (node killed): {node_ends}; "
              f"resumes: {resumes} (`missed` reported: {missed}); refused resumes (4410): {len(refused)}")
    md.append(f"- failed connect attempts (retried): {L['connect_fail'] or 0}; other closes before the "
              f"resume frame: {L['other_close'] or 0}")
    md.append(f"- posts: status counts {L['push_status']}, transport errors {L['push_errors']}")
    if L["t_kill"]:
        md.append(f"- node{L['kill_node']} SIGKILLed {L['t_kill'] - L['t_start']:.0f} s into the run, "
                  f"holding {len(held)} connections (open or suspended): {len(held_resumed)} resumed on "
                  f"a survivor, {len(held_refused)} refused with 4410 "
                  f"(their `$disconnect`: {sum(1 for c in held_refused if c in disconnects)} of "
                  f"{len(held_refused)})")
    md.append(f"- `$disconnect` codes and reasons: {codes}")
    md.append(f"- connections back to zero {L['zero_after']:.1f} s after the last client closed"
              if L["zero_after"] is not None else "- connections never reported zero")
    md.append("")
    md.append("| Check | Result | Verdict |")
    md.append("|---|---|---|")
    md.append(f"| 1. one `$connect` and one `$disconnect` per connection, none while it was resumable | "
              f"CONNECT {len(connects)}, DISCONNECT {sum(len(x) for x in disconnects.values())}; a second "
              f"CONNECT for an id {len(second_connect)}, missing DISCONNECT {len(missing_disc)}, duplicated "
              f"{len(dup_disc)}, without CONNECT {len(orphan_disc)}, ids the backend never saw {len(unknown)}, "
              f"DISCONNECT before the client was done {len(early)} | {v(ok1)} |")
    md.append(f"| 2. every resume accepted, except those of connections the killed node held{' open (not suspended) when it died' if args.strict else ''} | "
              f"refused {len(refused)}, of them excused {len(refused_excused)} | {v(ok2)} |")
    md.append(f"| 3. every post answered 200 delivered once, in its sender's order | acked {acked_total}; "
              f"required {required}, delivered {delivered}, lost {len(lost)}; duplicates {dups}, out of "
              f"order {len(disorder)}, unexpected frames {others} | {v(ok3)} |")
    md.append(f"| 4. RSS back within max(10 %, 16 MiB) of its size 30 s into the run | see table | {v(ok4)} |")
    md.append(f"| 5. no `panicked` in any node's stderr | {len(panics)} lines | {v(ok5)} |")
    md.append("")
    md.append("| Node | RSS at 30 s KiB | peak KiB | end KiB (zero connections) | verdict |")
    md.append("|---|---|---|---|---|")
    md.extend(rss_rows)
    md.append("")
    if lost:
        on_refused = sum(1 for x in lost if x["resume_refused"])
        md.append(f"Lost posts: {len(lost)}, of them on connections whose resume was refused (not "
                  f"excused) {on_refused}.")
        md.append(f"Lost posts (first 20 of {len(lost)}): " + "; ".join(json.dumps(x) for x in lost[:20]))
    if disorder:
        md.append(f"Out of order (first 20): {disorder[:20]}")
    if refused_unexcused:
        killed = L["kill_node"]
        minted = [c for c in refused_unexcused if conns[c].get("path", [])[:1] == [killed]]
        through = [c for c in refused_unexcused
                   if c not in minted and killed in conns[c].get("path", [])]
        after = sorted(conns[c]["refused_at"] - L["t_kill"] for c in refused_unexcused) \
            if L["t_kill"] else []
        md.append(f"Refused resumes not excused: {len(refused_unexcused)}, of connections whose id "
                  f"node{killed} minted {len(minted)}, that had been on node{killed} since "
                  f"{len(through)}, neither {len(refused_unexcused) - len(minted) - len(through)}; "
                  + (f"refused {after[0]:.1f} s to {after[-1]:.1f} s after the kill; " if after else "")
                  + f"first 10: {refused_unexcused[:10]}")
    if second_connect or missing_disc or dup_disc or orphan_disc or unknown or early:
        md.append(f"Disconnect problems: second CONNECT {second_connect[:20]}, missing {missing_disc[:20]}, "
                  f"duplicated {dict(list(dup_disc.items())[:20])}, orphan {orphan_disc[:20]}, "
                  f"unknown {unknown[:20]}, early {early[:20]}")
    if panics:
        md.append("Panics:")
        md.extend(f"  - `{p}`" for p in panics[:20])
    md.append("")
    with open(args.md, "w") as f:
        f.write("\n".join(md) + "\n")
    ok = ok1 and ok2 and ok3 and ok4 and ok5
    print("\n".join(md))
    print(f"mode resume: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    lo = sub.add_parser("load")
    lo.add_argument("--nodes", required=True)
    lo.add_argument("--pids", required=True)
    lo.add_argument("--seconds", type=float, default=150)
    lo.add_argument("--clients", type=int, default=300)
    lo.add_argument("--push-rate", type=float, default=100)
    lo.add_argument("--pushers", type=int, default=8)
    lo.add_argument("--settle", type=float, default=5)
    lo.add_argument("--kill-node", type=int, default=None)
    lo.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--events", required=True)
    c.add_argument("--load", required=True)
    c.add_argument("--logs", required=True)
    c.add_argument("--md", required=True)
    c.add_argument("--strict", action="store_true",
                   help="a connection the killed node held must be resumed too (no 4410 at all)")
    a = ap.parse_args()
    if a.cmd == "load":
        asyncio.run(Load(a).run())
    else:
        sys.exit(check(a))


if __name__ == "__main__":
    main()
