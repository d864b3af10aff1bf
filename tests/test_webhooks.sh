#!/usr/bin/env bash
# test_webhooks.sh — job webhooks behind a real `difftune serve`, received by a Python receiver
# on loopback that verifies every Standard Webhooks signature with the secret `difftune webhooks
# secret` prints (standard library hmac and base64 only, itself checked on the spec's reference
# vector first). A job with events ["status","checkpoint"] delivers queued, running, its
# checkpoints and succeeded, in event order, after a 500 that is retried under the same
# webhook-id; a receiver that hangs for 20 s slows neither the API, nor its job, nor the server's
# shutdown; an unreachable receiver does not touch its job; Retry-After is honoured, a 400 is not
# retried; bad webhook specs are 400 naming the field; the secret appears in no log, event or
# answer.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/webhooks
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"
PY=${DIFFTUNE_PYTHON:-python3}
RECEIVER_PID=""
holds() { jq -en "$1" >/dev/null; } # holds EXPR: a jq expression on numbers is true
trap '[ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null; [ -n "$RECEIVER_PID" ] && kill -KILL "$RECEIVER_PID" 2>/dev/null' EXIT

# 3 attempts (retries after ~1 s and ~2 s) so the failures below settle within the test
serve_start "$DATA" --devices cpu --slots-per-device 4 --webhook-attempts 3
SECRET=$("$BIN" webhooks secret --data-dir "$DATA" 2>"$TMP/secret.err")
check "webhooks secret prints a whsec_ secret ($SECRET)" grep -qxE 'whsec_[A-Za-z0-9+/]{43}=' <<<"$SECRET"
check "webhooks secret made the file (the server had sent nothing yet)" grep -q "made $DATA/webhook.secret" "$TMP/secret.err"
check "the secret file is mode 0600" [ "$(stat -c %a "$DATA/webhook.secret")" = 600 ]
check "a second call prints the same secret" [ "$("$BIN" webhooks secret --data-dir "$DATA" 2>/dev/null)" = "$SECRET" ]
check "DIFFTUNE_DATA_DIR is the default data directory" \
  [ "$(cd "$TMP" && DIFFTUNE_DATA_DIR="$DATA" "$BIN" webhooks secret 2>/dev/null)" = "$SECRET" ]
expect_rc 2 "webhooks without a command" -- webhooks
expect_rc 2 "webhooks with an unknown option" -- webhooks secret --data-dri "$DATA"

# ---- the receiver ------------------------------------------------------------------------------
cat >"$TMP/receiver.py" <<'PYTHON'
import base64, hashlib, hmac, json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secret, log_path, port_path = sys.argv[1], sys.argv[2], sys.argv[3]

def sign(secret, msg_id, stamp, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, b"%s.%s.%s" % (msg_id.encode(), stamp.encode(), body), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()

def verify(secret, msg_id, stamp, sig_header, body):
    want = sign(secret, msg_id, stamp, body)
    return any(hmac.compare_digest(want, s) for s in sig_header.split(" "))

# the verifier itself, on the Standard Webhooks reference vector
assert verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
              "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", b'{"test": 2432232314}')
assert not verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331",
                  "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", b'{"test": 2432232314}')

lock = threading.Lock()
seen = {}

class Receiver(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        stamp = self.headers.get("webhook-timestamp", "")
        sig = self.headers.get("webhook-signature", "")
        ok = bool(msg_id and stamp.isdigit() and sig) and verify(secret, msg_id, stamp, sig, body) \
            and abs(time.time() - int(stamp)) < 300
        path = self.path
        with lock:
            n = seen[path] = seen.get(path, 0) + 1
        code, headers = 200, {}
        if path == "/flaky" and n == 1:
            code = 500
        elif path == "/busy" and n == 1:
            code, headers = 503, {"Retry-After": "3"}
        elif path == "/reject":
            code = 400
        record = {"path": path, "id": msg_id, "stamp": stamp, "sig_ok": ok, "answer": code,
                  "arrived": time.time(), "content_type": self.headers.get("Content-Type", ""),
                  "body": body.decode("utf-8", "replace")}
        with lock, open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if path == "/slow":
            time.sleep(20)
        try:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass  # the sender gave up first

server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
server.daemon_threads = True
with open(port_path, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PYTHON
: >"$TMP/deliveries.jsonl"
"$PY" "$TMP/receiver.py" "$SECRET" "$TMP/deliveries.jsonl" "$TMP/receiver.port" 2>"$TMP/receiver.err" &
RECEIVER_PID=$!
for i in $(seq 1 100); do [ -s "$TMP/receiver.port" ] && break; sleep 0.05; done
check "the receiver started (its verifier passed the reference vector): $(cat "$TMP/receiver.err")" [ -s "$TMP/receiver.port" ]
HOOK="http://127.0.0.1:$(cat "$TMP/receiver.port")"
# a port nothing listens on
CLOSED=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/solid.tar" solid
http POST "/datasets?name=solid" --data-binary "@$TMP/solid.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "upload a dataset"; DS=$(jb .id)
TINY='"model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2, "image_size": 8}'
job() { # job STEPS CKPT_EVERY WEBHOOK_JSON: a tiny pretraining job; sets JOB
  http POST /jobs -H 'Content-Type: application/json' -d "{\"method\": \"pretrain\", \"dataset\": \"$DS\", $TINY,
    \"hyperparameters\": {\"steps\": $1, \"batch_size\": 4, \"learning_rate\": 1e-3},
    \"eval\": {\"sample_every\": 0, \"fid_every\": 0, \"steps\": 2}, \"checkpoint\": {\"every\": $2}, \"webhook\": $3}"
  expect_status 201 "submit a job with webhook $3"
  JOB=$(jb .id)
}

# ---- bad webhook specs: 400 naming the field -------------------------------------------------------
bad_hook() { # bad_hook WEBHOOK_JSON CODE PARAM
  http POST /jobs -H 'Content-Type: application/json' -d "{\"method\": \"pretrain\", \"dataset\": \"$DS\", $TINY, \"webhook\": $1}"
  expect_error 400 "$2" "$3" "webhook $1"
}
bad_hook '{"url": "ftp://127.0.0.1/x"}' invalid_value webhook.url
bad_hook '{"url": "http://user:pw@127.0.0.1/x"}' invalid_value webhook.url
bad_hook "{\"url\": \"http://h/$(head -c 2048 /dev/zero | tr '\0' a)\"}" invalid_value webhook.url
bad_hook '{"events": ["status"]}' missing_field webhook.url
bad_hook '{"url": 7}' invalid_type webhook.url
bad_hook '{"url": "http://127.0.0.1/x", "events": ["status", "finished"]}' invalid_value webhook.events
bad_hook '{"url": "http://127.0.0.1/x", "events": []}' invalid_value webhook.events
bad_hook '{"url": "http://127.0.0.1/x", "events": "status"}' invalid_type webhook.events
bad_hook '{"url": "http://127.0.0.1/x", "secret": "s"}' unknown_field webhook.secret
bad_hook '"http://127.0.0.1/x"' invalid_type webhook

# ---- statuses and checkpoints, in order, the first attempt answered 500 -----------------------------
job 20 10 "{\"url\": \"$HOOK/flaky\", \"events\": [\"checkpoint\", \"status\"]}"; A=$JOB
check "the job shows its webhook, events in canonical order" \
  [ "$(jb '.spec.webhook | "\(.url) \(.events | join(","))"')" = "$HOOK/flaky status,checkpoint" ]
# a receiver that hangs (20 s; the server gives up after 10 s), one that is not there, one that asks
# to wait 3 s, one that refuses
job 2 2 "{\"url\": \"$HOOK/slow\"}"; SLOW=$JOB
job 2 2 "{\"url\": \"http://127.0.0.1:$CLOSED/hook\", \"events\": [\"status\", \"checkpoint\", \"log\"]}"; DOWN=$JOB
job 2 2 "{\"url\": \"$HOOK/busy\"}"; BUSY=$JOB
job 2 2 "{\"url\": \"$HOOK/reject\"}"; REJECT=$JOB
job 2 2 null; PLAIN=$JOB

# the API stays fast while a delivery hangs
for i in $(seq 1 100); do grep -q '"path": "/slow"' "$TMP/deliveries.jsonl" && break; sleep 0.1; done
check "a delivery to the hanging receiver is in flight" grep -q '"path": "/slow"' "$TMP/deliveries.jsonl"
: >"$TMP/health.times"
for i in $(seq 1 20); do
  curl -sS -o /dev/null -w '%{time_total}\n' "$URL/health" >>"$TMP/health.times"
  sleep 0.05
done
HEALTH_MAX=$(sort -g "$TMP/health.times" | tail -1)
echo "GET /health while a webhook hangs: max ${HEALTH_MAX}s over 20 requests"
check "GET /health stays fast while a webhook hangs (max ${HEALTH_MAX}s)" holds "$HEALTH_MAX < 1"
POST_S=$(curl -sS -o "$TMP/body" -w '%{time_total}' -X POST "$URL/jobs" -H 'Content-Type: application/json' -d "{\"method\": \"pretrain\",
  \"dataset\": \"$DS\", $TINY, \"hyperparameters\": {\"steps\": 2, \"batch_size\": 4}, \"eval\": {\"sample_every\": 0, \"fid_every\": 0, \"steps\": 2},
  \"webhook\": {\"url\": \"$HOOK/slow\"}}")
SLOW2=$(jb .id)
echo "POST /jobs with a webhook to the hanging receiver: ${POST_S}s"
check "so does POST /jobs with a webhook to it (${POST_S}s)" holds "$POST_S < 1"

for j in "$A" "$SLOW" "$SLOW2" "$DOWN" "$BUSY" "$REJECT" "$PLAIN"; do
  wait_status "$j" succeeded 120; check "job $j succeeded, whatever its receiver does" [ $? -eq 0 ]
done

# ... nor its job: the supervisor spawned the worker right after the claim (whose running status
# went to the hanging receiver) and stored the end right after the worker's last event. Run times
# depend on how many jobs share the CPU; these two gaps do not.
curl -sS "$URL/jobs/$SLOW" >"$TMP/slow.job"
curl -sS "$URL/jobs/$SLOW/events?limit=1000" >"$TMP/slow.events"
GAP_START=$(jq -n --slurpfile j "$TMP/slow.job" --slurpfile e "$TMP/slow.events" \
  '[$e[0].data[] | select(.type != "status")][0].time - $j[0].started_at')
GAP_END=$(jq -n --slurpfile j "$TMP/slow.job" --slurpfile e "$TMP/slow.events" \
  '$j[0].finished_at - [$e[0].data[] | select(.type != "status")][-1].time')
echo "the job with a hanging receiver: first event ${GAP_START}s after its claim, finished ${GAP_END}s after its last event"
check "its worker started at once (${GAP_START}s after the claim)" holds "$GAP_START < 8"
check "its end was stored at once (${GAP_END}s after its last event)" holds "$GAP_END < 8"

# the checks on what arrived, in Python (the standard library only)
verify_deliveries() {
  "$PY" - "$TMP/deliveries.jsonl" "$A" "$BUSY" "$REJECT" <<'PYTHON'
import json, re, sys
path, job, busy, reject = sys.argv[1:5]
recs = [json.loads(l) for l in open(path)]
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)
need(recs and all(r["sig_ok"] for r in recs), "every delivery carries a valid signature and a recent timestamp")
need(all(r["content_type"] == "application/json" for r in recs), "every delivery is application/json")
flaky = [r for r in recs if r["path"] == "/flaky"]
need(flaky and flaky[0]["answer"] == 500, "the first /flaky delivery was answered 500")
if flaky:
    need(len(flaky) > 1 and flaky[1]["id"] == flaky[0]["id"], "its retry carries the same webhook-id")
    need(len(flaky) > 1 and flaky[1]["arrived"] - flaky[0]["arrived"] >= 0.7,
         "the retry waited for the backoff (%.2fs)" % (flaky[1]["arrived"] - flaky[0]["arrived"] if len(flaky) > 1 else -1))
ok = [r for r in flaky if r["answer"] == 200]
got = []
for r in ok:
    b = json.loads(r["body"])
    d = b["data"]
    need(d["job"] == job, "data.job is the job")
    need(r["id"] == "evt_%s_%d" % (job, d["event_id"]), "webhook-id is evt_<job>_<event id>: " + r["id"])
    need(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", b["timestamp"]) is not None,
         "timestamp is ISO 8601 UTC: " + b["timestamp"])
    got.append((d["event_id"], b["type"], d.get("status") or d.get("name")))
ids = [g[0] for g in got]
need(ids == sorted(ids) and len(set(ids)) == len(ids), "delivered in event order, each once: %s" % ids)
kinds = [g[1] if g[1] == "checkpoint" else g[2] for g in got]
need(kinds == ["queued", "running", "checkpoint", "checkpoint", "succeeded"],
     "queued, running, two checkpoints, succeeded: %s" % kinds)
names = [g[2] for g in got if g[1] == "checkpoint"]
need(all(n and n.endswith(".safetensors") for n in names), "checkpoint events name their file: %s" % names)
busy_recs = [r for r in recs if r["path"] == "/busy"]
need(len(busy_recs) >= 2 and busy_recs[0]["answer"] == 503 and busy_recs[1]["id"] == busy_recs[0]["id"]
     and busy_recs[1]["arrived"] - busy_recs[0]["arrived"] >= 2.9,
     "Retry-After: 3 was honoured (%s)" % ["%.2f" % (r["arrived"] - busy_recs[0]["arrived"]) for r in busy_recs])
rej = [r for r in recs if r["path"] == "/reject"]
need(len({r["id"] for r in rej}) == len(rej), "a 400 is not retried (%d requests, %d ids)" % (len(rej), len({r["id"] for r in rej})))
for p in problems:
    print("FAIL: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PYTHON
}
# the last delivery (succeeded) may still be on its way: wait for it
for i in $(seq 1 100); do
  grep -q '"path": "/flaky".*succeeded' "$TMP/deliveries.jsonl" && grep -c '"path": "/busy"' "$TMP/deliveries.jsonl" | grep -qv '^[01]$' && break
  sleep 0.1
done
verify_deliveries; check "the deliveries (signatures, retry, order, filter, Retry-After, no retry on 400)" [ $? -eq 0 ]
check "a job without a webhook sends nothing" not grep -q "$PLAIN" "$TMP/deliveries.jsonl"

# the unreachable receiver: 3 attempts (~1 s + ~2 s apart) per delivery, then failed
metric() { curl -sS "$URL/metrics" | sed -n "s/^difftune_webhook_$1 //p"; }
for i in $(seq 1 150); do
  [ "$(metric 'deliveries_total{result="failed"}')" -ge 4 ] && [ "$(metric 'deliveries_total{result="ok"}')" -ge 8 ] && break
  sleep 0.1
done
# failed: /reject's queued, running, succeeded (3) and the unreachable one's first
FAILED=$(metric 'deliveries_total{result="failed"}')
check "failed deliveries are counted in /metrics ($FAILED)" [ "${FAILED:-0}" -ge 4 ]
# ok: /flaky's five and /busy's three statuses
check "delivered ones too" [ "$(metric 'deliveries_total{result="ok"}')" -ge 8 ]
check "and the retries" [ "$(metric 'retries_total')" -ge 3 ]
check "the failure names the host, not the path" grep -q "to 127.0.0.1:$CLOSED: failed after 3 attempts" "$DATA/serve.err"
check "the log never shows a receiver's path" not grep -q "/hook\|/flaky\|/reject" "$DATA/serve.err"
check "a 400 failed at once" grep -q "evt_${REJECT}_[0-9]* (status) to 127.0.0.1:[0-9]*: failed after 1 attempt: HTTP 400" "$DATA/serve.err"

# the secret is nowhere but its file
for p in "/jobs/$A" "/jobs/$A/events?limit=1000" "/jobs?limit=100" /metrics /health; do
  http GET "$p"
  check "the secret is not in GET $p" not grep -qF "${SECRET#whsec_}" "$TMP/body"
done
check "the secret is not in the server's log" not grep -qF "${SECRET#whsec_}" "$DATA/serve.err" "$DATA/serve.out"
check "nor in the workers' logs" not grep -rqF "${SECRET#whsec_}" "$DATA/jobs"

# shutdown does not wait for the hanging receiver (its deliveries are dropped and counted)
SLOW_HANGING=$(grep -c '"path": "/slow"' "$TMP/deliveries.jsonl")
t0=$EPOCHREALTIME
serve_stop; rc=$?
STOP_S=$(jq -n "$EPOCHREALTIME - $t0")
echo "shutdown with webhook deliveries pending: ${STOP_S}s"
check "graceful shutdown" [ $rc -eq 0 ]
check "shutdown took ${STOP_S}s with a delivery hanging (at most 3 s)" holds "$STOP_S < 3"
check "undelivered ones were dropped, said in one line" grep -qE "webhooks: [0-9]+ deliver(y|ies) not made before shutdown (was|were) dropped" "$DATA/serve.err"
check "the hanging receiver was tried ($SLOW_HANGING)" [ "$SLOW_HANGING" -ge 1 ]

kill "$RECEIVER_PID" 2>/dev/null; wait "$RECEIVER_PID" 2>/dev/null; RECEIVER_PID=""
finish
