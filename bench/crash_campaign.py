#!/usr/bin/env python3
"""crash_campaign.py — jobs submitted under load while `difftune serve` and its workers are
killed with SIGKILL at random moments (issue 7, "Proof"). Standard library only.

One round: the server runs while several client threads submit tiny CPU jobs (each with its own
Idempotency-Key), poll them and cancel some; at a random moment the campaign kills either the
server (kill -9, which takes its workers with it) or one worker (pid from GET /workers). After a
server kill it opens the database read-only, before anything else touches it, and checks that
`PRAGMA integrity_check` says ok and that every job acknowledged so far (201 received) is
stored; then it starts the server again on the same data directory and the next round begins.
A submission whose answer was lost (connection reset by the kill, refused while the server was
down, or dropped unread by the client on purpose: --drop-answer-ratio) is sent again with the
same key until it is answered, so a job the server had already stored is acknowledged by its
replay, never stored twice.

After the last round the clients stop submitting, every job runs to a terminal state, and the
campaign checks, through the API and then in the database with the server stopped:
  - every acknowledged job exists exactly once and is terminal (succeeded, failed or cancelled);
    the jobs in the store are exactly the acknowledged ones (no duplicate, no stray job), each
    idempotency key names one job and every acknowledgement of a key named that same job;
  - per job, events have increasing ids and page through GET /jobs/{id}/events the same as
    the store holds them; the "status" events follow the server's lifecycle: queued (attempt 0),
    then for each attempt n a "running" event with attempt n, ended by a requeue (queued with a
    reason) or by the one terminal status event, which is the job's last status event and
    matches the job's status and attempt count; worker events (progress, metric, checkpoint,
    sample, error) fall inside a running attempt;
  - a job that failed did so only because its attempts ran out under the kills (worker_died or
    server_restarted); a job that succeeded has its final checkpoint at its last step;
  - PRAGMA integrity_check and foreign_key_check are clean.

Prints a summary, writes it as JSON (--json), exits 0 when every check passed, 1 when one
failed, 2 when the campaign could not run.
"""
import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse

TERMINAL = ("succeeded", "failed", "cancelled")
WORKER_EVENTS = ("progress", "metric", "checkpoint", "sample", "error")
# why a job may fail in this campaign: its attempts ran out because the campaign killed them
KILL_FAILURES = ("worker_died", "server_restarted")
TINY_MODEL = {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2,
              "image_size": 8}
NO_ANSWER = (OSError, http.client.HTTPException)


def log(*parts):
    print("[%s]" % time.strftime("%H:%M:%S"), *parts, flush=True)


class Server:
    """One `difftune serve` at a time on one data directory; the port is kept across restarts."""

    def __init__(self, binary, data_dir, extra_args, env):
        self.binary, self.data_dir, self.extra, self.env = binary, data_dir, extra_args, env
        self.proc, self.port, self.starts = None, 0, 0
        self.lock = threading.Lock()
        self.up = threading.Event()

    def start(self, timeout=30):
        for port in ([self.port, 0] if self.port else [0]):
            self.starts += 1
            out_path = os.path.join(self.data_dir, "serve-%03d.out" % self.starts)
            err_path = os.path.join(self.data_dir, "serve.err")
            with open(out_path, "w") as out, open(err_path, "a") as err:
                proc = subprocess.Popen([self.binary, "serve", "--port", str(port), "--data-dir",
                                         self.data_dir] + self.extra, stdout=out, stderr=err,
                                        env=self.env)
            deadline = time.time() + timeout
            while time.time() < deadline and proc.poll() is None:
                with open(out_path) as f:
                    text = f.read()
                if "listening on http://" in text:
                    url = text.split("listening on http://", 1)[1].split("/", 1)[0]
                    with self.lock:
                        self.proc, self.port = proc, int(url.rsplit(":", 1)[1])
                    self.up.set()
                    return
                time.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        raise RuntimeError("the server did not start; see %s/serve.err" % self.data_dir)

    def pid(self):
        with self.lock:
            return self.proc.pid if self.proc else None

    def kill9(self):
        with self.lock:
            proc, self.proc = self.proc, None
        self.up.clear()
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, timeout=60):
        """SIGTERM and wait; returns the exit status."""
        with self.lock:
            proc, self.proc = self.proc, None
        self.up.clear()
        if not proc:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def request(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers, body bytes); raises OSError or HTTPException when there is no
        answer (the server is down or died mid-request)."""
        with self.lock:
            port = self.port if self.proc else 0
        if not port:
            raise ConnectionRefusedError("the server is down")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r, r.read()
        finally:
            conn.close()


class Campaign:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.plan = random.Random(args.seed)  # only the waits and the kinds of kill
        self.mu = threading.Lock()
        self.acked = {}           # idempotency key -> job id
        self.ack_of_job = {}      # job id -> key
        self.sent = set()         # every key ever sent
        self.acks_total = 0       # 201 answers, replays included
        self.replayed = 0         # 201 answers marked Idempotent-Replayed
        self.resent = 0           # submissions that needed more than one try
        self.resent_replayed = 0  # ... and whose answer was a replay (the first try had stored it)
        self.no_answer = 0        # requests that got no answer (server down or killed)
        self.dropped = 0          # submissions whose first answer the client did not read
        self.statuses = {}        # kind -> {status class -> count}
        self.problems = []        # every failed check, as text
        self.cancels = 0
        self.kills = []
        self.crash_checks = []
        self.stop_submit = threading.Event()
        self.deadline = None
        self.dataset = None

    def problem(self, text):
        with self.mu:
            self.problems.append(text)
        log("PROBLEM:", text)

    def count(self, kind, status):
        with self.mu:
            k = self.statuses.setdefault(kind, {})
            cls = "%dxx" % (status // 100)
            k[cls] = k.get(cls, 0) + 1

    # ---- the clients ---------------------------------------------------------------------------

    def job_spec(self, rng):
        a = self.a
        return {"method": "pretrain", "dataset": self.dataset, "model": TINY_MODEL,
                "hyperparameters": {"steps": rng.randint(a.min_steps, a.max_steps),
                                    "batch_size": 4, "learning_rate": 1e-3,
                                    "seed": rng.randint(0, 9999)},
                "eval": {"sample_every": 0, "fid_every": 0},
                "checkpoint": {"every": rng.choice([5, 10, 20]), "keep": 2},
                "priority": rng.randint(0, 2)}

    def submit(self, rng, key, body):
        """Sends POST /jobs with key until it is answered; the job id, or None when refused."""
        tries = 0
        server = self.server
        while True:
            tries += 1
            if tries == 1 and rng.random() < self.a.drop_answer_ratio:
                # a client that gives up on its answer (a timeout, a dropped connection): the
                # request is sent, its answer never read, and the job must not be stored twice
                if self.send_and_drop(key, body):
                    continue
            try:
                st, r, data = server.request("POST", "/jobs", body, {
                    "Content-Type": "application/json", "Idempotency-Key": key})
            except NO_ANSWER:
                with self.mu:
                    self.no_answer += 1
                if time.time() > self.deadline:
                    self.problem("submission %s never answered before the deadline" % key)
                    return None
                server.up.wait(1.0)
                time.sleep(rng.uniform(0.02, 0.2))
                continue
            self.count("POST /jobs", st)
            if st >= 500:
                self.problem("POST /jobs answered %d: %s" % (st, data[:300]))
                time.sleep(0.2)
                continue
            if st != 201:
                self.problem("POST /jobs answered %d: %s" % (st, data[:300]))
                return None
            jid = json.loads(data)["id"]
            replay = (r.getheader("Idempotent-Replayed") or "").lower() == "true"
            with self.mu:
                self.acks_total += 1
                self.replayed += replay
                if tries > 1:
                    self.resent += 1
                    self.resent_replayed += replay
                if self.acked.get(key, jid) != jid:
                    self.problems.append("key %s acknowledged as %s and as %s"
                                         % (key, self.acked[key], jid))
                if self.ack_of_job.get(jid, key) != key:
                    self.problems.append("job %s acknowledged for keys %s and %s"
                                         % (jid, self.ack_of_job[jid], key))
                self.acked[key] = jid
                self.ack_of_job[jid] = key
            return jid

    def send_and_drop(self, key, body):
        """Sends POST /jobs and closes the connection without reading the answer."""
        with self.server.lock:
            port = self.server.port if self.server.proc else 0
        if not port:
            return False
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/jobs", body=body, headers={
                "Content-Type": "application/json", "Idempotency-Key": key})
            time.sleep(0.02)
        except NO_ANSWER:
            pass
        finally:
            conn.close()
        with self.mu:
            self.dropped += 1
        return True

    def get_status(self, jid):
        try:
            st, _, data = self.server.request("GET", "/jobs/" + jid)
        except NO_ANSWER:
            return None
        self.count("GET /jobs/{id}", st)
        if st != 200:
            self.problem("GET /jobs/%s answered %d: %s" % (jid, st, data[:200]))
            return None
        return json.loads(data)["status"]

    def cancel(self, jid):
        try:
            st, _, data = self.server.request("POST", "/jobs/%s/cancel" % jid)
        except NO_ANSWER:
            return False
        self.count("POST /jobs/{id}/cancel", st)
        if st not in (200, 409):
            self.problem("cancel %s answered %d: %s" % (jid, st, data[:200]))
        with self.mu:
            self.cancels += st == 200
        return True

    def client(self, cid):
        a = self.a
        rng = random.Random(a.seed * 1000 + cid + 1)
        outstanding = {}  # job id -> when to cancel it (None: never)
        n = 0
        while True:
            if time.time() > self.deadline:
                break
            if not self.stop_submit.is_set() and len(outstanding) < a.max_outstanding:
                n += 1
                key = "campaign-%d-%d-%08x" % (cid, n, rng.getrandbits(32))
                with self.mu:
                    self.sent.add(key)
                jid = self.submit(rng, key, json.dumps(self.job_spec(rng)))
                if jid:
                    cancel = rng.random() < a.cancel_ratio
                    outstanding[jid] = time.time() + rng.uniform(0, 4) if cancel else None
            elif self.stop_submit.is_set() and not outstanding:
                break
            for jid in list(outstanding):
                st = self.get_status(jid)
                if st in TERMINAL:
                    del outstanding[jid]
                elif st and outstanding[jid] and time.time() >= outstanding[jid]:
                    if self.cancel(jid):
                        outstanding[jid] = None
            time.sleep(rng.uniform(0.05, 0.3))

    # ---- kills ---------------------------------------------------------------------------------

    def running_workers(self):
        try:
            st, _, data = self.server.request("GET", "/workers", timeout=5)
        except NO_ANSWER:
            return []
        self.count("GET /workers", st)
        if st != 200:
            return []
        return [w for w in json.loads(data)["data"] if w.get("pid") and w.get("job")]

    def kill_worker(self, rnd, w):
        pid = int(w["pid"])
        try:  # the pid must still be that job's worker, not a recycled one
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            return False
        if b"run-job" not in cmd or w["job"].encode() not in cmd:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.kills.append({"round": rnd, "t": round(time.time() - self.t0, 2), "target": "worker",
                           "job": w["job"], "pid": pid})
        log("round %d: killed the worker of %s (pid %d)" % (rnd, w["job"], pid))
        return True

    def check_after_crash(self, rnd):
        """With the server dead: the store's integrity, and every acknowledged job in it."""
        with self.mu:
            acked = set(self.acked.values())
        db = os.path.join(self.a.data_dir, "difftune.db")
        rec = {"round": rnd}
        try:
            # read-only: the server's own recovery at restart is what is under test
            con = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(db), uri=True, timeout=10)
            rec["integrity"] = ";".join(r[0] for r in con.execute("PRAGMA integrity_check"))
            stored = {r[0] for r in con.execute("SELECT id FROM jobs")}
            con.close()
        except sqlite3.Error as e:
            rec["integrity"] = "error: %s" % e
            stored = set()
        rec["acknowledged"] = len(acked)
        rec["missing"] = sorted(acked - stored)
        self.crash_checks.append(rec)
        if rec["integrity"] != "ok":
            self.problem("round %d: integrity_check after kill -9: %s" % (rnd, rec["integrity"]))
        if rec["missing"]:
            self.problem("round %d: acknowledged jobs missing after kill -9: %s"
                         % (rnd, rec["missing"]))

    def kill_server(self, rnd):
        pid = self.server.pid()
        self.server.kill9()
        self.kills.append({"round": rnd, "t": round(time.time() - self.t0, 2), "target": "server",
                           "pid": pid})
        self.check_after_crash(rnd)
        log("round %d: killed the server (pid %d); integrity %s, %d acknowledged, %d missing"
            % (rnd, pid, self.crash_checks[-1]["integrity"], self.crash_checks[-1]["acknowledged"],
               len(self.crash_checks[-1]["missing"])))
        time.sleep(self.rng.uniform(0, 0.5))
        self.server.start()

    # ---- setup and the final checks ------------------------------------------------------------

    def upload_dataset(self):
        a = self.a
        synth = os.path.join(a.data_dir, "..", "campaign-synth")
        subprocess.run([a.bin, "dataset", "synth", "--style", "solid", "--classes", "3",
                        "--per-class", "8", "--size", "8", "--out", synth], check=True,
                       stdout=subprocess.DEVNULL)
        tar = synth + ".tar"
        with tarfile.open(tar, "w") as t:
            t.add(synth, arcname="solid")
        with open(tar, "rb") as f:
            st, _, data = self.server.request("POST", "/datasets?name=solid", f.read(),
                                              {"Content-Type": "application/x-tar"}, timeout=60)
        if st != 201:
            raise RuntimeError("dataset upload answered %d: %s" % (st, data[:300]))
        self.dataset = json.loads(data)["id"]

    def get_json(self, path):
        st, _, data = self.server.request("GET", path, timeout=30)
        if st != 200:
            raise RuntimeError("GET %s answered %d: %s" % (path, st, data[:300]))
        return json.loads(data)

    def api_checks(self, acked):
        """With the server up after the drain: the job list, each job, its events by pages."""
        listed, after = [], None
        while True:
            page = self.get_json("/jobs?limit=100" + ("&after=" + after if after else ""))
            listed += [j["id"] for j in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        if len(listed) != len(set(listed)):
            self.problem("GET /jobs lists a job twice")
        if set(listed) != acked:
            self.problem("GET /jobs lists %d jobs, %d acknowledged; not acknowledged: %s; "
                         "not listed: %s" % (len(set(listed)), len(acked),
                                             sorted(set(listed) - acked)[:10],
                                             sorted(acked - set(listed))[:10]))
        jobs, api_events = {}, {}
        for jid in sorted(acked):
            jobs[jid] = self.get_json("/jobs/" + jid)
            ids, after = [], 0
            while True:  # small pages, so paging itself is exercised
                page = self.get_json("/jobs/%s/events?after=%d&limit=7" % (jid, after))
                ids += [e["id"] for e in page["data"]]
                if not page["has_more"]:
                    break
                after = page["last_id"]
            api_events[jid] = ids
            if jobs[jid]["status"] == "succeeded":
                ck = self.get_json("/jobs/%s/checkpoints" % jid)["data"]
                steps = jobs[jid]["spec"]["hyperparameters"]["steps"]
                if not ck or max(c["step"] for c in ck) != steps:
                    self.problem("job %s succeeded without its final checkpoint (step %d): %s"
                                 % (jid, steps, [c["step"] for c in ck]))
        return jobs, api_events

    def check_events(self, jid, job, evs, api_ids):
        """The lifecycle of one job as its events tell it (see the module comment)."""
        bad = []
        if [e[0] for e in evs] != api_ids:
            bad.append("the events paged through the API differ from the store's")
        if any(b[0] <= a[0] for a, b in zip(evs, evs[1:])):
            bad.append("event ids do not increase")
        state, attempt, terminal, running = None, 0, 0, []
        for eid, typ, data in evs:
            d = json.loads(data)
            if typ in WORKER_EVENTS and state != "running":
                bad.append("a %s event (%d) outside a running attempt" % (typ, eid))
            if typ != "status":
                continue
            s, a = d.get("status"), d.get("attempt")
            ok = False
            if state is None:
                ok = s == "queued" and a == 0
            elif state == "queued":
                ok = (s == "running" and a == attempt + 1) or (s == "cancelled" and a == attempt)
            elif state == "running":
                ok = a == attempt and (s in TERMINAL or (s == "queued" and "reason" in d) or
                                       (s == "running" and d.get("cancel_requested")))
            if not ok:
                bad.append("status event %d (%s, attempt %s) cannot follow %s (attempt %d)"
                           % (eid, s, a, state, attempt))
            if s == "running" and state == "queued":
                running.append(a)
            attempt = a if isinstance(a, int) else attempt
            terminal += s in TERMINAL
            state = s
        if terminal != 1:
            bad.append("%d terminal status events" % terminal)
        if state != job["status"] or attempt != job["attempt"]:
            bad.append("the last status event (%s, attempt %d) is not the job's (%s, attempt %d)"
                       % (state, attempt, job["status"], job["attempt"]))
        if running != list(range(1, job["attempt"] + 1)):
            bad.append("attempts started %s, the job counts %d" % (running, job["attempt"]))
        for b in bad:
            self.problem("job %s: %s" % (jid, b))

    def db_checks(self, jobs, api_events):
        db = os.path.join(self.a.data_dir, "difftune.db")
        con = sqlite3.connect(db)
        integrity = ";".join(r[0] for r in con.execute("PRAGMA integrity_check"))
        fk = con.execute("PRAGMA foreign_key_check").fetchall()
        if integrity != "ok":
            self.problem("final integrity_check: " + integrity)
        if fk:
            self.problem("foreign_key_check: %s" % fk[:10])
        rows = con.execute("SELECT id, status, attempt, idempotency_key FROM jobs").fetchall()
        idem = dict(con.execute("SELECT key, job_id FROM idempotency_keys").fetchall())
        with self.mu:
            acked = dict(self.acked)
            sent = set(self.sent)
        stored_ids = [r[0] for r in rows]
        if len(stored_ids) != len(acked) or set(stored_ids) != set(acked.values()):
            self.problem("the store holds %d jobs for %d acknowledged keys"
                         % (len(rows), len(acked)))
        for jid, status, attempt, key in rows:
            if key not in acked or acked[key] != jid:
                self.problem("stored job %s has key %s, acknowledged as %s"
                             % (jid, key, acked.get(key)))
        if idem != acked:
            self.problem("idempotency_keys (%d) do not map the acknowledged keys (%d) to their jobs"
                         % (len(idem), len(acked)))
        if sent - set(acked):
            self.problem("keys sent but never acknowledged: %s" % sorted(sent - set(acked))[:10])
        by_status, failures, attempts, events = {}, {}, {}, 0
        resumed = con.execute("SELECT count(DISTINCT job_id) FROM events WHERE type = 'log'"
                              " AND data LIKE '%resuming from checkpoint step%'").fetchone()[0]
        for jid, job in jobs.items():
            evs = con.execute("SELECT id, type, data FROM events WHERE job_id = ? ORDER BY id",
                              (jid,)).fetchall()
            events += len(evs)
            self.check_events(jid, job, evs, api_events[jid])
            by_status[job["status"]] = by_status.get(job["status"], 0) + 1
            attempts[job["attempt"]] = attempts.get(job["attempt"], 0) + 1
            if job["status"] not in TERMINAL:
                self.problem("job %s is %s at the end" % (jid, job["status"]))
            if job["status"] == "failed":
                code = (job.get("error") or {}).get("code")
                failures[code] = failures.get(code, 0) + 1
                if code not in KILL_FAILURES:
                    self.problem("job %s failed with %s: %s" % (jid, code, job.get("error")))
        con.close()
        return {"integrity_check": integrity, "foreign_key_violations": len(fk),
                "jobs_stored": len(rows), "idempotency_keys_stored": len(idem),
                "events_stored": events, "jobs_resumed_from_a_checkpoint": resumed,
                "by_status": by_status, "failed_by_code": failures,
                "attempts": {str(k): v for k, v in sorted(attempts.items())}}

    # ---- the campaign --------------------------------------------------------------------------

    def run(self):
        a = self.a
        os.makedirs(a.data_dir, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(a.omp_threads))
        self.server = Server(a.bin, a.data_dir, ["--devices", "cpu", "--slots-per-device",
                                                 str(a.slots), "--cancel-grace", "2",
                                                 "--log-every", "5"], env)
        self.t0 = time.time()
        self.server.start()
        self.upload_dataset()
        self.deadline = time.time() + a.deadline
        clients = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(a.clients)]
        for c in clients:
            c.start()
        log("%d clients submitting; %d rounds" % (a.clients, a.rounds))
        for rnd in range(1, a.rounds + 1):
            time.sleep(self.plan.uniform(a.min_wait, a.max_wait))
            # drawn every round, so a seed fixes which rounds aim at a worker
            aim_worker = self.plan.random() < a.worker_kill_ratio
            workers = self.running_workers() if aim_worker else []
            if workers and self.kill_worker(rnd, self.rng.choice(workers)):
                continue
            self.kill_server(rnd)
        t_kills = time.time() - self.t0
        log("kills done after %.1f s; draining" % t_kills)
        self.stop_submit.set()
        for c in clients:
            c.join(max(1, self.deadline - time.time()))
        if any(c.is_alive() for c in clients):
            self.problem("clients still busy at the deadline (jobs not terminal)")
        with self.mu:
            acked = set(self.acked.values())
        # the clients saw their own jobs end; wait for the server to agree on every one
        while time.time() < self.deadline:
            counts = self.get_json("/health").get("jobs", {})
            if not counts.get("queued") and not counts.get("running"):
                break
            time.sleep(0.5)
        jobs, api_events = self.api_checks(acked)
        stop_rc = self.server.stop()
        if stop_rc != 0:
            self.problem("the server's graceful stop exited %s" % stop_rc)
        db = self.db_checks(jobs, api_events)
        with self.mu:
            server_kills = sum(k["target"] == "server" for k in self.kills)
            summary = {
                "benchmark": "crash_campaign",
                "date": time.strftime("%Y-%m-%d"),
                "settings": {k: v for k, v in vars(a).items() if k not in ("json",)},
                "rounds": a.rounds,
                "kills": {"server": server_kills, "worker": len(self.kills) - server_kills},
                "duration_s": round(time.time() - self.t0, 1),
                "kill_phase_s": round(t_kills, 1),
                "jobs": {"acknowledged": len(self.acked), "acks_total": self.acks_total,
                         "replayed_acks": self.replayed, "submissions_resent": self.resent,
                         "resent_and_replayed": self.resent_replayed,
                         "answers_dropped_by_client": self.dropped,
                         "requests_unanswered": self.no_answer, "cancels_accepted": self.cancels},
                "store": db,
                "after_each_server_kill": {
                    "checks": len(self.crash_checks),
                    "integrity_ok": sum(c["integrity"] == "ok" for c in self.crash_checks),
                    "acknowledged_missing": sum(len(c["missing"]) for c in self.crash_checks)},
                "responses": self.statuses,
                "kill_log": self.kills,
                "problems": self.problems,
                "result": "pass" if not self.problems else "fail",
            }
        return summary


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the difftune binary")
    p.add_argument("--data-dir", required=True, help="a fresh directory for the server's data")
    p.add_argument("--rounds", type=int, default=20, help="kills (default 20)")
    p.add_argument("--clients", type=int, default=4, help="submitting threads (default 4)")
    p.add_argument("--max-outstanding", type=int, default=3,
                   help="unfinished jobs per client before it waits (default 3)")
    p.add_argument("--slots", type=int, default=2, help="--slots-per-device (default 2)")
    p.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS of the workers")
    p.add_argument("--min-wait", type=float, default=2.0, help="seconds between kills, at least")
    p.add_argument("--max-wait", type=float, default=8.0, help="... and at most")
    p.add_argument("--worker-kill-ratio", type=float, default=0.3,
                   help="chance a kill takes a worker instead of the server (default 0.3)")
    p.add_argument("--cancel-ratio", type=float, default=0.2,
                   help="share of jobs cancelled by their client (default 0.2)")
    p.add_argument("--drop-answer-ratio", type=float, default=0.1,
                   help="share of submissions whose first answer the client drops unread, then "
                        "sends again with the same key (default 0.1)")
    p.add_argument("--min-steps", type=int, default=50, help="training steps per job, at least")
    p.add_argument("--max-steps", type=int, default=400, help="... and at most")
    p.add_argument("--deadline", type=float, default=900,
                   help="seconds the whole campaign may take (default 900)")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--machine", default="", help="where it ran, for the record")
    p.add_argument("--commit", default="", help="the tree it ran, for the record")
    a = p.parse_args()
    if os.path.exists(os.path.join(a.data_dir, "difftune.db")):
        p.error("--data-dir must not hold a store already")
    c = Campaign(a)
    try:
        summary = c.run()
    except Exception as e:  # setup failed: no verdict
        log("campaign could not run: %s" % e)
        try:
            c.server.stop()
        except Exception:
            pass
        return 2
    text = json.dumps(summary, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    s = summary
    log("rounds %d: %d server kills, %d worker kills; %d jobs acknowledged (%d answers resent "
        "and replayed), by status %s; integrity after each kill ok %d/%d, acknowledged missing %d; "
        "final integrity %s; %d problems: %s"
        % (s["rounds"], s["kills"]["server"], s["kills"]["worker"], s["jobs"]["acknowledged"],
           s["jobs"]["resent_and_replayed"], s["store"]["by_status"],
           s["after_each_server_kill"]["integrity_ok"], s["after_each_server_kill"]["checks"],
           s["after_each_server_kill"]["acknowledged_missing"], s["store"]["integrity_check"],
           len(s["problems"]), s["result"].upper()))
    return 0 if s["result"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
