#!/usr/bin/env python3
"""load_run.py — hundreds of concurrent clients against one `difftune serve` on loopback for
minutes (issue 7, "Proof"): creating, polling, listing, streaming and downloading. Zero 5xx,
no connection failures, and a flat resident set are required. Standard library only: one
asyncio loop speaks HTTP/1.1 over raw sockets (keep-alive, chunked bodies, SSE).

What the server is given to do, and why. One device slot is held for the whole run by a "live"
job: a tiny pretraining that never ends on its own and reports progress every --log-every steps,
so event streams have a steady flow of new events to fan out and the supervisor keeps writing
the store while the API reads it. Its worker runs at the lowest CPU priority (nice 19, and its
scheduler autogroup lowered), so training takes only the CPU the server and the clients leave.
Every job the clients create therefore queues behind it and is cancelled by its creator: each
creation is a full write path (spec validation, the dataset read, the job, its idempotency key
and its first status event in one transaction) and each cancel a guarded transition with its
terminal event, which ends the stream of anyone watching that job, while no CPU goes to
training them. Two finished "fixture" jobs made before the load starts hold checkpoints and
sample grids to download.

Each client repeats, with a short random pause, one of these (weights in ACTIONS):
  create      POST /jobs (with an Idempotency-Key), GET /jobs/{id} once to three times, cancel
  create_sse  POST /jobs, open its event stream, cancel it from a second connection, and read
              the stream until the server ends it after the "cancelled" status event
  poll        GET /jobs/{id} of a fixture, the live job or a recent job
  list        GET /jobs (a status filter now and then) and, when there is more, the next page
  events      GET /jobs/{live}/events?after=...&limit=100
  sse_live    the live job's stream from a recent Last-Event-ID, for 1 to 5 s: ids must increase
  sse_replay  a fixture's whole stream from the start: it must end by itself, after its status
  range       GET a checkpoint with a random Range: 206, the Content-Range and length right
  download    a whole checkpoint (its sha256 checked) or a sample grid (a PNG)
  misc        /health, /workers, /metrics, a job's metrics, checkpoints or samples

The server's VmRSS (/proc/PID/status) is sampled every --sample-every seconds. After the warm-up
the floor (10th percentile) of the first minute is compared with the floor of the last minute;
the run passes when it grew at most --rss-limit-mib (bench/README.md has the reasoning). Once a
second a probe sends GET /health on a new connection: what a client arriving now waits.
Latencies are per kind of request (p50, p90, p99, max); a stream's latency is the time to its
headers, on a new connection. At the end the live job is cancelled, nothing may be left queued
or running, the server must stop cleanly and the store pass integrity_check.
Exit status: 0 pass, 1 fail, 2 could not run.
"""
import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import urllib.parse

TINY_MODEL = {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2,
              "image_size": 8}
ACTIONS = {"create": 3, "create_sse": 1, "poll": 4, "list": 2, "events": 1, "sse_live": 1,
           "sse_replay": 0.3, "range": 2, "download": 1, "misc": 1}
TERMINAL = ("succeeded", "failed", "cancelled")


def log(*parts):
    print("[%s]" % time.strftime("%H:%M:%S"), *parts, flush=True)


class Unexpected(Exception):
    """An answer other than the one the action expects (counted, and reported as a sample)."""


# ---- HTTP/1.1 over asyncio streams ------------------------------------------------------------

class Conn:
    """One keep-alive connection; reopened on demand."""

    def __init__(self, port):
        self.port, self.reader, self.writer = port, None, None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port,
                                                                 limit=1 << 20)

    def close(self):
        if self.writer:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, method, path, body=b"", headers=None):
        if not self.writer:
            await self.open()
        h = {"Host": "127.0.0.1", "Content-Length": str(len(body))}
        h.update(headers or {})
        head = "%s %s HTTP/1.1\r\n%s\r\n" % (method, path, "".join(
            "%s: %s\r\n" % kv for kv in h.items()))
        self.writer.write(head.encode("latin1") + body)
        await self.writer.drain()

    async def head(self):
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        status = int(line.split(b" ", 2)[1])
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, v = line.decode("latin1").split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return status, headers

    async def chunk(self):
        """The next chunk of a chunked body (b"" at its end)."""
        size = int((await self.reader.readline()).split(b";")[0], 16)
        data = await self.reader.readexactly(size) if size else b""
        await self.reader.readline()  # the CRLF after the data (after the last chunk: the
        return data                   # empty line that ends the trailers, none being sent)

    async def body(self, method, status, headers):
        if method == "HEAD" or status in (204, 304) or status < 200:
            return b""
        if "chunked" in headers.get("transfer-encoding", ""):
            parts = []
            while True:
                c = await self.chunk()
                if not c:
                    return b"".join(parts)
                parts.append(c)
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        data = await self.reader.read()
        self.close()
        return data

    async def request(self, method, path, body=b"", headers=None):
        """(status, headers, body). A keep-alive connection the server closed meanwhile is
        reopened once, for idempotent requests only."""
        for attempt in (0, 1):
            reused = self.writer is not None
            try:
                await self.send(method, path, body, headers)
                status, h = await self.head()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if reused and attempt == 0 and method == "GET":
                    continue
                raise
            data = await self.body(method, status, h)
            if h.get("connection", "").lower() == "close":
                self.close()
            return status, h, data


def sse_frames(buf):
    """Splits complete frames off buf; returns (frames, rest). A frame is a dict of its fields;
    a comment-only frame (heartbeat) is {}."""
    frames = []
    while True:
        i = buf.find(b"\n\n")
        if i < 0:
            return frames, buf
        block, buf = buf[:i], buf[i + 2:]
        f = {}
        for line in block.split(b"\n"):
            if line.startswith(b":") or b":" not in line:
                continue
            k, v = line.split(b":", 1)
            f[k.decode()] = v[1:].decode() if v.startswith(b" ") else v.decode()
        frames.append(f)


# ---- the run ----------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lat = {}          # kind -> [seconds]
        self.classes = {}      # kind -> {"2xx": n, ...}
        self.unexpected = {}   # "kind status" -> count
        self.samples = []      # a few unexpected answers, for the report
        self.errors = {}       # kind -> connection errors
        self.checks = {}       # name -> [passed, failed]
        self.requests = 0

    def answer(self, kind, status, seconds):
        self.requests += 1
        self.lat.setdefault(kind, []).append(seconds)
        c = self.classes.setdefault(kind, {})
        cls = "%dxx" % (status // 100)
        c[cls] = c.get(cls, 0) + 1

    def bad(self, kind, status, text):
        k = "%s %s" % (kind, status)
        self.unexpected[k] = self.unexpected.get(k, 0) + 1
        if len(self.samples) < 30:
            self.samples.append("%s: %s" % (k, text[:300]))

    def check(self, name, ok):
        c = self.checks.setdefault(name, [0, 0])
        c[0 if ok else 1] += 1


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class LoadRun:
    def __init__(self, a):
        self.a = a
        self.actions = dict(ACTIONS)
        for item in filter(None, (a.actions or "").split(",")):
            name, weight = item.split("=")
            if name not in ACTIONS:
                raise SystemExit("--actions: no action %s (%s)" % (name, ", ".join(ACTIONS)))
            self.actions[name] = float(weight)
        self.stats = Stats()
        self.recent = []       # ids of jobs created lately (polled by others)
        self.rss = []          # (t, kib)
        self.proc = None

    # ---- setup ------------------------------------------------------------------------------

    def start_server(self):
        a = self.a
        out_path = os.path.join(a.data_dir, "serve.out")
        args = [a.bin, "serve", "--port", "0", "--data-dir", a.data_dir, "--devices", "cpu",
                "--slots-per-device", "1", "--log-every", str(a.log_every)]
        if a.threads:
            args += ["--threads", str(a.threads)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        with open(out_path, "w") as out, open(os.path.join(a.data_dir, "serve.err"), "w") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, env=env)
        for _ in range(600):
            with open(out_path) as f:
                text = f.read()
            if "listening on http://" in text:
                self.port = int(text.split("listening on http://", 1)[1].split("/", 1)[0]
                                .rsplit(":", 1)[1])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("the server did not start: see %s/serve.err" % a.data_dir)

    async def call(self, conn, method, path, body=None, headers=None, want=(200,)):
        """A setup request: the parsed JSON answer, or an exception."""
        data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        h = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
        h.update(headers or {})
        st, _, out = await conn.request(method, path, data, h)
        if st not in want:
            raise RuntimeError("%s %s answered %d: %s" % (method, path, st, out[:300]))
        return json.loads(out) if out else None

    def job_spec(self, steps, every, sample_every=0, priority=0):
        return {"method": "pretrain", "dataset": self.dataset, "model": TINY_MODEL,
                "hyperparameters": {"steps": steps, "batch_size": 4, "learning_rate": 1e-3},
                "eval": {"sample_every": sample_every, "fid_every": 0},
                "checkpoint": {"every": every, "keep": 3}, "priority": priority}

    async def setup(self):
        a = self.a
        synth = os.path.join(a.data_dir, "..", "load-synth")
        subprocess.run([a.bin, "dataset", "synth", "--style", "solid", "--classes", "3",
                        "--per-class", "8", "--size", "8", "--out", synth], check=True,
                       stdout=subprocess.DEVNULL)
        with tarfile.open(synth + ".tar", "w") as t:
            t.add(synth, arcname="solid")
        conn = Conn(self.port)
        with open(synth + ".tar", "rb") as f:
            ds = await self.call(conn, "POST", "/datasets?name=solid", f.read(),
                                 {"Content-Type": "application/x-tar"}, want=(201,))
        self.dataset = ds["id"]
        # the fixtures: finished jobs with checkpoints and sample grids to download
        self.fixtures = []
        for _ in range(2):
            j = await self.call(conn, "POST", "/jobs", self.job_spec(150, 50, sample_every=50),
                                want=(201,))
            self.fixtures.append(j["id"])
        for jid in self.fixtures:
            for _ in range(1200):
                j = await self.call(conn, "GET", "/jobs/" + jid)
                if j["status"] in TERMINAL:
                    break
                await asyncio.sleep(0.1)
            if j["status"] != "succeeded":
                raise RuntimeError("fixture job %s is %s" % (jid, j["status"]))
        self.checkpoints, self.samples = [], []
        for jid in self.fixtures:
            for c in (await self.call(conn, "GET", "/jobs/%s/checkpoints" % jid))["data"]:
                self.checkpoints.append(("/jobs/%s/checkpoints/%s" % (jid, c["name"]),
                                         c["bytes"], c["sha256"]))
            for s in (await self.call(conn, "GET", "/jobs/%s/samples" % jid))["data"]:
                self.samples.append(s["url"])
        # the live job: holds the slot and streams events for the whole run
        live = await self.call(conn, "POST", "/jobs", self.job_spec(10 ** 8, 10 ** 7, priority=9),
                               want=(201,))
        self.live = live["id"]
        for _ in range(600):
            w = await self.call(conn, "GET", "/workers")
            pids = [x["pid"] for x in w["data"] if x.get("job") == self.live and x.get("pid")]
            if pids:
                break
            await asyncio.sleep(0.1)
        if not pids:
            raise RuntimeError("the live job did not start")
        self.live_pid = pids[0]
        # training takes only the CPU the server and the clients leave: the worker runs in a
        # session (so a scheduler autogroup) of its own, whose weight nice alone does not lower
        for what, fn in (("nice", lambda: os.setpriority(os.PRIO_PROCESS, self.live_pid, 19)),
                         ("autogroup", lambda: open("/proc/%d/autogroup" % self.live_pid,
                                                    "w").write("19"))):
            try:
                fn()
            except OSError as e:
                log("cannot lower the live worker's %s: %s" % (what, e))
        await asyncio.sleep(1.0)
        ev = await self.call(conn, "GET", "/jobs/%s/events?limit=1000" % self.live)
        self.live_last = ev["data"][-1]["id"] if ev["data"] else 0
        conn.close()
        log("setup: dataset %s, fixtures %s (%d checkpoints, %d samples), live job %s (worker %d)"
            % (self.dataset, self.fixtures, len(self.checkpoints), len(self.samples), self.live,
               self.live_pid))

    # ---- the clients -------------------------------------------------------------------------

    async def timed(self, conn, kind, method, path, body=b"", headers=None, want=(200,)):
        t = time.perf_counter()
        try:
            st, h, data = await conn.request(method, path, body, headers)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            conn.close()
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
            if len(self.stats.samples) < 30:
                self.stats.samples.append("%s: no answer: %r" % (kind, e))
            raise Unexpected(kind)
        self.stats.answer(kind, st, time.perf_counter() - t)
        if st not in want:
            self.stats.bad(kind, st, data.decode("utf-8", "replace"))
            raise Unexpected(kind)
        return st, h, data

    async def create(self, conn, rng, key):
        body = json.dumps(self.job_spec(rng.randint(10, 1000), 1000)).encode()
        _, h, data = await self.timed(conn, "POST /jobs", "POST", "/jobs", body,
                                      {"Content-Type": "application/json",
                                       "Idempotency-Key": key}, want=(201,))
        jid = json.loads(data)["id"]
        self.recent.append(jid)
        if len(self.recent) > 200:
            del self.recent[:100]
        return jid

    async def cancel(self, conn, jid):
        _, _, data = await self.timed(conn, "POST /jobs/{id}/cancel", "POST",
                                      "/jobs/%s/cancel" % jid)
        self.stats.check("a cancelled queued job is cancelled at once",
                         json.loads(data)["status"] == "cancelled")

    async def stream(self, kind, path, headers, seconds, until_end):
        """Reads an SSE stream for seconds (or until the server ends it); returns the frames
        and whether the server ended it."""
        conn = Conn(self.port)
        frames, ended = [], False
        try:
            t = time.perf_counter()
            try:
                await conn.send("GET", path, b"", dict({"Accept": "text/event-stream"}, **headers))
                st, h = await conn.head()
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
                if len(self.stats.samples) < 30:
                    self.stats.samples.append("%s: no answer: %r" % (kind, e))
                raise Unexpected(kind)
            self.stats.answer(kind, st, time.perf_counter() - t)
            if st != 200 or "chunked" not in h.get("transfer-encoding", ""):
                body = await conn.body("GET", st, h)
                self.stats.bad(kind, st, body.decode("utf-8", "replace"))
                raise Unexpected(kind)
            buf, deadline = b"", time.monotonic() + seconds
            while True:
                left = deadline - time.monotonic()
                if left <= 0 and not until_end:
                    break
                try:
                    c = await asyncio.wait_for(conn.chunk(), timeout=max(left, 0.01))
                except asyncio.TimeoutError:
                    if until_end:
                        self.stats.bad(kind, "timeout", "the stream did not end in %g s" % seconds)
                        raise Unexpected(kind)
                    break
                if not c:
                    ended = True
                    break
                got, buf = sse_frames(buf + c)
                frames += [f for f in got if f]
        finally:
            conn.close()
        return frames, ended

    async def act(self, conn, rng, action, cid, n):
        s = self.stats
        if action in ("create", "create_sse"):
            jid = await self.create(conn, rng, "load-%d-%d-%08x" % (cid, n, rng.getrandbits(32)))
            if action == "create":
                for _ in range(rng.randint(1, 3)):
                    _, _, data = await self.timed(conn, "GET /jobs/{id}", "GET", "/jobs/" + jid)
                    s.check("a created job reads back queued",
                            json.loads(data)["status"] == "queued")
                await self.cancel(conn, jid)
                return
            watch = asyncio.ensure_future(self.stream("SSE /jobs/{id}/events (new job)",
                                                      "/jobs/%s/events" % jid, {}, 30, True))
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            await self.cancel(conn, jid)
            frames, ended = await watch
            statuses = [json.loads(f["data"])["data"]["status"] for f in frames
                        if f.get("event") == "status"]
            s.check("a new job's stream ends after its status queued then cancelled",
                    ended and statuses == ["queued", "cancelled"])
        elif action == "poll":
            jid = rng.choice(self.fixtures + [self.live] + self.recent[-50:])
            await self.timed(conn, "GET /jobs/{id}", "GET", "/jobs/" + jid)
        elif action == "list":
            q = "/jobs?limit=20"
            if rng.random() < 0.4:
                q += "&status=" + rng.choice(["queued", "running", "succeeded", "cancelled"])
            _, _, data = await self.timed(conn, "GET /jobs", "GET", q)
            page = json.loads(data)
            if page["has_more"]:
                _, _, data = await self.timed(conn, "GET /jobs", "GET",
                                              q + "&after=" + page["last_id"])
                ids = [j["id"] for j in page["data"]] + [j["id"] for j in json.loads(data)["data"]]
                s.check("two pages of GET /jobs do not overlap", len(ids) == len(set(ids)))
        elif action == "events":
            after = max(0, self.live_last - rng.randint(0, 300))
            _, _, data = await self.timed(conn, "GET /jobs/{id}/events", "GET",
                                          "/jobs/%s/events?after=%d&limit=100" % (self.live, after))
            ids = [e["id"] for e in json.loads(data)["data"]]
            s.check("event pages increase", all(b > a for a, b in zip(ids, ids[1:])) and
                    (not ids or ids[0] > after))
            if ids:
                self.live_last = max(self.live_last, ids[-1])
        elif action == "sse_live":
            after = max(0, self.live_last - rng.randint(0, 50))
            frames, _ = await self.stream("SSE /jobs/{id}/events (live)",
                                          "/jobs/%s/events" % self.live,
                                          {"Last-Event-ID": str(after)}, rng.uniform(1, 5), False)
            ids = [int(f["id"]) for f in frames if "id" in f]
            s.check("a live stream resumes after Last-Event-ID, ids increasing",
                    all(b > a for a, b in zip([after] + ids, ids)))
            if ids:
                self.live_last = max(self.live_last, ids[-1])
        elif action == "sse_replay":
            jid = rng.choice(self.fixtures)
            frames, ended = await self.stream("SSE /jobs/{id}/events (replay)",
                                              "/jobs/%s/events" % jid, {}, 60, True)
            s.check("a finished job's stream replays and ends with succeeded",
                    ended and frames and frames[-1].get("event") == "status" and
                    json.loads(frames[-1]["data"])["data"]["status"] == "succeeded")
        elif action == "range":
            path, size, _ = rng.choice(self.checkpoints)
            a = rng.randrange(size)
            b = min(size - 1, a + rng.randint(0, 65535))
            _, h, data = await self.timed(conn, "GET checkpoint (Range)", "GET", path, b"",
                                          {"Range": "bytes=%d-%d" % (a, b)}, want=(206,))
            s.check("a range answer has the bytes and Content-Range asked for",
                    len(data) == b - a + 1 and
                    h.get("content-range") == "bytes %d-%d/%d" % (a, b, size))
        elif action == "download":
            if rng.random() < 0.5:
                path, size, sha = rng.choice(self.checkpoints)
                _, _, data = await self.timed(conn, "GET checkpoint", "GET", path)
                s.check("a whole checkpoint matches its sha256",
                        len(data) == size and hashlib.sha256(data).hexdigest() == sha)
            else:
                _, _, data = await self.timed(conn, "GET sample png", "GET",
                                              rng.choice(self.samples))
                s.check("a sample grid is a PNG", data[:8] == b"\x89PNG\r\n\x1a\n")
        elif action == "misc":
            jid = rng.choice(self.fixtures + [self.live])
            path = rng.choice(["/health", "/workers", "/metrics", "/jobs/%s/metrics" % jid,
                               "/jobs/%s/checkpoints" % jid, "/jobs/%s/samples" % jid])
            kind = "GET " + (path if not path.startswith("/jobs/") else
                             "/jobs/{id}/" + path.rsplit("/", 1)[1])
            await self.timed(conn, kind, "GET", path)

    async def client(self, cid, stop_at):
        rng = random.Random(self.a.seed * 10000 + cid)
        names, weights = list(self.actions), list(self.actions.values())
        conn, n = Conn(self.port), 0
        await asyncio.sleep(rng.uniform(0, 2))  # the clients arrive over two seconds
        while time.monotonic() < stop_at:
            n += 1
            try:
                await self.act(conn, rng, rng.choices(names, weights)[0], cid, n)
            except Unexpected:
                pass
            await asyncio.sleep(rng.expovariate(1.0 / self.a.think) if self.a.think else 0)
        conn.close()

    async def probe(self, stop_at):
        """Once a second, GET /health on a new connection: what a client arriving now waits."""
        while time.monotonic() < stop_at:
            conn = Conn(self.port)
            try:
                await self.timed(conn, "GET /health (new connection)", "GET", "/health")
            except Unexpected:
                pass
            conn.close()
            await asyncio.sleep(1.0)

    async def sample_rss(self, t0, stop_at):
        pid = self.proc.pid
        while time.monotonic() < stop_at + 1:
            try:
                with open("/proc/%d/status" % pid) as f:
                    st = dict(line.split(":", 1) for line in f if ":" in line)
                fds = len(os.listdir("/proc/%d/fd" % pid))
                self.rss.append({"t": round(time.monotonic() - t0, 1),
                                 "rss_kib": int(st["VmRSS"].split()[0]),
                                 "threads": int(st["Threads"]), "fds": fds,
                                 "requests": self.stats.requests})
            except (OSError, KeyError, ValueError):
                pass
            await asyncio.sleep(self.a.sample_every)

    def server_cpu_s(self):
        """The server's user+system CPU seconds so far (its workers not included)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def load(self):
        a = self.a
        cpu0, own0, load0 = self.server_cpu_s(), os.times(), os.getloadavg()
        t0 = time.monotonic()
        stop_at = t0 + a.duration
        sampler = asyncio.ensure_future(self.sample_rss(t0, stop_at))
        clients = [asyncio.ensure_future(self.client(i, stop_at)) for i in range(a.clients)]
        clients.append(asyncio.ensure_future(self.probe(stop_at)))

        async def progress():
            while time.monotonic() < stop_at:
                await asyncio.sleep(30)
                r = self.rss[-1] if self.rss else {}
                log("t=%3.0fs  %d requests, RSS %s KiB, %s threads, %s fds"
                    % (time.monotonic() - t0, self.stats.requests, r.get("rss_kib"),
                       r.get("threads"), r.get("fds")))
        ticker = asyncio.ensure_future(progress())
        await asyncio.gather(*clients)
        self.elapsed = time.monotonic() - t0
        own1 = os.times()
        self.cpu = {"server_s": round(self.server_cpu_s() - cpu0, 1),
                    "clients_s": round(own1.user + own1.system - own0.user - own0.system, 1),
                    "cores": os.cpu_count(), "loadavg_before": load0,
                    "loadavg_after": os.getloadavg()}
        ticker.cancel()
        await sampler

    async def finish(self):
        """Cancels the live job, checks nothing is left queued, stops the server."""
        conn = Conn(self.port)
        await self.call(conn, "POST", "/jobs/%s/cancel" % self.live)
        for _ in range(300):
            j = await self.call(conn, "GET", "/jobs/" + self.live)
            if j["status"] in TERMINAL:
                break
            await asyncio.sleep(0.1)
        health = await self.call(conn, "GET", "/health")
        conn.close()
        return j["status"], health.get("jobs", {})

    def run(self):
        a = self.a
        os.makedirs(a.data_dir, exist_ok=True)
        self.start_server()
        try:
            asyncio.run(self.setup())
            log("load: %d clients for %d s" % (a.clients, a.duration))
            asyncio.run(self.load())
            live_status, left = asyncio.run(self.finish())
        finally:
            self.proc.send_signal(signal.SIGTERM)
            try:
                stop_rc = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                stop_rc = self.proc.wait()
        con = sqlite3.connect(os.path.join(a.data_dir, "difftune.db"))
        integrity = ";".join(r[0] for r in con.execute("PRAGMA integrity_check"))
        jobs = dict(con.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
        return self.report(live_status, left, stop_rc, integrity, jobs, events)

    def report(self, live_status, left, stop_rc, integrity, jobs, events):
        a, s = self.a, self.stats
        total = {}
        for c in s.classes.values():
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
        latency = {}
        for kind, v in sorted(s.lat.items()):
            latency[kind] = {"n": len(v), "p50_ms": round(pct(v, 50) * 1e3, 2),
                             "p90_ms": round(pct(v, 90) * 1e3, 2),
                             "p99_ms": round(pct(v, 99) * 1e3, 2),
                             "max_ms": round(max(v) * 1e3, 1)}
        # memory: the first minute after the warm-up against the last minute. The judge is the
        # floor of each minute (its 10th percentile): a sample also catches the transient
        # buffers of the answers being built at that instant, which come and go with sampling
        # luck, while memory the server keeps (a leak, an unbounded cache) lifts the floor.
        end = self.rss[-1]["t"] if self.rss else 0
        first = [r for r in self.rss if a.warmup <= r["t"] < a.warmup + 60]
        last = [r for r in self.rss if r["t"] >= end - 60]
        med = lambda rows: pct([r["rss_kib"] for r in rows], 50)
        floor = lambda rows: pct([r["rss_kib"] for r in rows], 10)
        growth_kib = floor(last) - floor(first) if first and last else None
        reqs_between = (last[len(last) // 2]["requests"] - first[len(first) // 2]["requests"]) \
            if first and last else 0
        checks_failed = {k: v[1] for k, v in s.checks.items() if v[1]}
        problems = []
        if total.get("5xx"):
            problems.append("%d 5xx answers" % total["5xx"])
        if s.errors:
            problems.append("requests without an answer: %s" % s.errors)
        if s.unexpected:
            problems.append("unexpected answers: %s" % s.unexpected)
        if checks_failed:
            problems.append("failed checks: %s" % checks_failed)
        if a.duration < a.warmup + 120:
            problems.append("the run is too short for two minutes after the warm-up")
        elif growth_kib is None or growth_kib > a.rss_limit_mib * 1024:
            problems.append("the RSS floor grew %s KiB from the first to the last minute "
                            "(limit %g MiB)" % (growth_kib, a.rss_limit_mib))
        if stop_rc != 0:
            problems.append("the server's graceful stop exited %s" % stop_rc)
        if integrity != "ok":
            problems.append("integrity_check: " + integrity)
        if live_status != "cancelled" or left.get("queued") or left.get("running"):
            problems.append("left behind: live job %s, %s" % (live_status, left))
        return {
            "benchmark": "load_run",
            "date": time.strftime("%Y-%m-%d"),
            "machine": a.machine, "commit": a.commit, "build": a.build_type,
            "settings": {"clients": a.clients, "duration_s": a.duration, "think_s": a.think,
                         "warmup_s": a.warmup, "server_threads": a.threads or os.cpu_count(),
                         "log_every": a.log_every, "seed": a.seed, "actions": self.actions,
                         "rss_limit_mib": a.rss_limit_mib},
            "elapsed_s": round(self.elapsed, 1),
            "requests": s.requests,
            "requests_per_second": round(s.requests / self.elapsed, 1),
            "cpu": self.cpu,
            "by_class": total,
            "by_kind": s.classes,
            "unexpected": s.unexpected,
            "no_answer": s.errors,
            "samples": s.samples,
            "checks": {k: {"passed": v[0], "failed": v[1]} for k, v in sorted(s.checks.items())},
            "latency": latency,
            "memory": {
                "rss_first_sample_kib": self.rss[0]["rss_kib"] if self.rss else None,
                "rss_first_minute_floor_kib": floor(first) if first else None,
                "rss_last_minute_floor_kib": floor(last) if last else None,
                "rss_growth_kib": growth_kib,
                "rss_first_minute_median_kib": med(first) if first else None,
                "rss_last_minute_median_kib": med(last) if last else None,
                "rss_max_kib": max((r["rss_kib"] for r in self.rss), default=None),
                "requests_between_the_minutes": reqs_between,
                "growth_bytes_per_request": round(growth_kib * 1024 / reqs_between, 2)
                if reqs_between and growth_kib is not None else None,
                "threads_first_last": [self.rss[0]["threads"], self.rss[-1]["threads"]]
                if self.rss else None,
                "fds_first_last": [self.rss[0]["fds"], self.rss[-1]["fds"]] if self.rss else None,
                "series": self.rss},
            "store": {"integrity_check": integrity, "jobs_by_status": jobs, "events": events,
                      "server_exit": stop_rc},
            "problems": problems,
            "result": "pass" if not problems else "fail",
        }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the difftune binary (a Release build)")
    p.add_argument("--data-dir", required=True, help="a fresh directory for the server's data")
    p.add_argument("--clients", type=int, default=300, help="concurrent clients (default 300)")
    p.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    p.add_argument("--warmup", type=float, default=30,
                   help="seconds before the first memory minute (default 30)")
    p.add_argument("--think", type=float, default=0.05,
                   help="mean pause of a client between actions, seconds (default 0.05)")
    p.add_argument("--threads", type=int, default=0, help="server --threads (default: its own)")
    p.add_argument("--log-every", type=int, default=50,
                   help="the live job's steps per progress event (default 50)")
    p.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--rss-limit-mib", type=float, default=4.0,
                   help="most the RSS may grow from the first to the last minute (default 4)")
    p.add_argument("--actions", default="",
                   help="weights to change, e.g. sse_live=0,create=5 (default: ACTIONS)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--machine", default="")
    p.add_argument("--commit", default="")
    p.add_argument("--build-type", default="", help="for the record")
    a = p.parse_args()
    if os.path.exists(os.path.join(a.data_dir, "difftune.db")):
        p.error("--data-dir must not hold a store already")
    run = LoadRun(a)
    try:
        r = run.run()
    except Exception as e:
        log("the load run could not run: %r" % e)
        return 2
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
            f.write("\n")
    m = r["memory"]
    log("%d clients, %.0f s: %d requests (%.0f/s), by class %s; RSS floor %s -> %s KiB (growth "
        "%s KiB, limit %g MiB; medians %s -> %s KiB, max %s KiB); %s"
        % (a.clients, r["elapsed_s"], r["requests"], r["requests_per_second"], r["by_class"],
           m["rss_first_minute_floor_kib"], m["rss_last_minute_floor_kib"], m["rss_growth_kib"],
           a.rss_limit_mib, m["rss_first_minute_median_kib"], m["rss_last_minute_median_kib"],
           m["rss_max_kib"], r["result"].upper()))
    for kind, l in r["latency"].items():
        log("  %-36s n=%-7d p50 %7.2f ms  p99 %8.2f ms" % (kind, l["n"], l["p50_ms"], l["p99_ms"]))
    for prob in r["problems"]:
        log("PROBLEM:", prob)
    return 0 if r["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
