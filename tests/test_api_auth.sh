#!/usr/bin/env bash
# test_api_auth.sh — who may do what, through a real server: every route of the OpenAPI document
# (which test_openapi.sh holds to the route table) with no key, a wrong key, a revoked key and a
# key of each scope; browser sessions (GET only); per-key rate limits (429, Retry-After); the
# loopback rule for a server without keys; and no secret in the logs, the store or the answers.
source "$(dirname "$0")/server_util.sh"
SRC=${DIFFTUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
PY=${DIFFTUNE_PYTHON:-python3}
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_auth
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"

# ---- a keyless server refuses to listen beyond loopback -----------------------------------
"$BIN" serve --host 0.0.0.0 --port 0 --data-dir "$DATA" >"$TMP/open.out" 2>"$TMP/open.err"
check "no keys and --host 0.0.0.0: refused (exit 2)" [ $? -eq 2 ]
check "the refusal says how to make a key" grep -q 'difftune keys create' "$TMP/open.err"

# ---- resources to aim at, made while the server is keyless (open on loopback) -------------
serve_start "$DATA" --devices cpu --rate-limit 0
check "a keyless server says it is open to this machine only" grep -q 'no API keys' "$DATA/serve.out"
"$BIN" dataset synth --style solid --classes 2 --per-class 4 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/solid.tar" solid
http POST "/datasets?name=solid" --data-binary "@$TMP/solid.tar" -H 'Content-Type: application/x-tar'
expect_status 201 "keyless loopback: upload without a key"; DS=$(jb .id)
http POST /jobs -H 'Content-Type: application/json' -d "{\"method\": \"pretrain\", \"dataset\": \"$DS\",
  \"model\": {\"arch\": \"custom\", \"depth\": 1, \"hidden_size\": 16, \"num_heads\": 2, \"patch_size\": 2, \"image_size\": 8},
  \"hyperparameters\": {\"steps\": 20, \"batch_size\": 4}, \"eval\": {\"sample_every\": 10, \"fid_every\": 0},
  \"checkpoint\": {\"every\": 20}}"
expect_status 201 "keyless loopback: submit without a key"; JOB=$(jb .id)
wait_status "$JOB" succeeded 60; check "the job ran" [ $? -eq 0 ]
http GET "/jobs/$JOB/checkpoints"; CKPT=$(jb '.data[-1].name')
http GET "/jobs/$JOB/samples"; SAMPLE=$(jb '.data[-1].name')
http POST /models -H 'Content-Type: application/json' -d "{\"job\": \"$JOB\", \"checkpoint\": \"$CKPT\", \"name\": \"base\"}"
expect_status 201 "keyless loopback: promote without a key"; MDL=$(jb .id)

# ---- keys, made while the server runs ------------------------------------------------------
declare -A KEY
for scope in read submit admin; do
  KEY[$scope]=$("$BIN" keys create --scope "$scope" --name "t-$scope" --data-dir "$DATA" 2>/dev/null)
  [[ ${KEY[$scope]} =~ ^dtk_[0-9a-f]{64}$ ]] || bad "keys create --scope $scope printed '${KEY[$scope]}'"
done
REVOKED=$("$BIN" keys create --scope admin --name doomed --data-dir "$DATA" 2>/dev/null)
DOOMED=$("$BIN" keys list --json --data-dir "$DATA" | jq -r '.data[] | select(.name == "doomed") | .id')
"$BIN" keys revoke "$DOOMED" --data-dir "$DATA" >/dev/null || bad "keys revoke"
sleep 1.2 # the server re-counts active keys every second

# ---- every route: no key, a wrong key, a revoked key, and each scope -----------------------
# One request per documented operation, its path parameters filled with real ids, so that a
# request that passes the keys reaches the handler (which may still refuse it: 400, 404, 409).
"$PY" - "$SRC/api/openapi.json" "$JOB" "$DS" "$MDL" "$SAMPLE" "$CKPT" >"$TMP/routes" <<'PYTHON'
import json, re, sys
doc = json.load(open(sys.argv[1]))
job, ds, mdl, sample, ckpt = sys.argv[2:7]
fill = {"job_id": job, "dataset_id": ds, "model_id": mdl, "name": None, "path": "js/app.js"}
for path, item in doc["paths"].items():
    for method, op in item.items():
        if method not in ("get", "post", "delete"):
            continue
        url = path
        if "/samples/{name}" in url: url = url.replace("{name}", sample)
        if "/checkpoints/{name}" in url: url = url.replace("{name}", ckpt)
        if method == "delete":  # never delete the real ones: an unknown id still meets the keys first
            url = url.replace("{dataset_id}", "ds_" + "0" * 24).replace("{model_id}", "mdl_" + "0" * 24)
        url = re.sub(r"\{(\w+)\}", lambda m: fill[m.group(1)], url)
        print(method.upper(), url, op["x-scope"])
PYTHON
check "every operation listed" [ "$(wc -l <"$TMP/routes")" -ge 25 ]

rank() { case $1 in public) echo 0 ;; read) echo 1 ;; submit) echo 2 ;; admin) echo 3 ;; esac; }
# call METHOD URL [curl args]: the status, without following an event stream forever
call() {
  local m=$1 u=$2; shift 2
  local extra=()
  [ "$m" = POST ] && extra=(-H 'Content-Type: application/json' -d '{}')
  curl -sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 5 -X "$m" "${extra[@]}" "$@" "$URL$u"
}
while read -r method url scope; do
  need=$(rank "$scope")
  code=$(call "$method" "$url")
  if [ "$need" -eq 0 ]; then
    check "$method $url is public ($code)" [ "$code" != 401 -a "$code" != 403 ]
    continue
  fi
  check "$method $url without a key: 401 ($code)" [ "$code" = 401 ]
  check "$method $url: 401 names the Bearer scheme" grep -qi '^www-authenticate: Bearer' "$TMP/headers"
  code=$(call "$method" "$url" -H "Authorization: Bearer dtk_$(printf '%064d' 0)")
  check "$method $url with a wrong key: 401 ($code)" [ "$code" = 401 ]
  code=$(call "$method" "$url" -H "Authorization: Bearer $REVOKED")
  check "$method $url with a revoked key: 401 ($code)" [ "$code" = 401 ]
  for s in read submit admin; do
    code=$(call "$method" "$url" -H "Authorization: Bearer ${KEY[$s]}")
    if [ "$(rank $s)" -lt "$need" ]; then
      check "$method $url with a $s key: 403 ($code)" [ "$code" = 403 ]
      check "$method $url: 403 says which scope it needs" grep -q "needs $scope" "$TMP/body"
    else
      check "$method $url with a $s key: admitted ($code)" [ "$code" != 401 -a "$code" != 403 -a "$code" != 000 ]
    fi
  done
done <"$TMP/routes"

# ---- browser sessions -------------------------------------------------------------------------
http POST /session -H "Authorization: Bearer ${KEY[read]}"; expect_status 201 "a key opens a session"
COOKIE=$(sed -n 's/^[Ss]et-[Cc]ookie: \(difftune_session=[^;]*\);.*/\1/p' "$TMP/headers")
check "the session cookie is HttpOnly and SameSite=Strict" grep -qi '^set-cookie: difftune_session=.*HttpOnly; SameSite=Strict' "$TMP/headers"
check "the session names its scope" [ "$(jb '.scope')" = read ]
check "the session never shows the secret" not grep -q "${KEY[read]}" "$TMP/body"
code=$(call GET "/jobs/$JOB/samples/$SAMPLE" -H "Cookie: $COOKIE")
check "a session loads an image ($code)" [ "$code" = 200 ]
code=$(call GET "/jobs/$JOB/checkpoints/$CKPT" -H "Cookie: $COOKIE")
check "a session downloads a checkpoint ($code)" [ "$code" = 200 ]
code=$(call POST "/jobs/$JOB/retry" -H "Cookie: $COOKIE")
check "a session cannot change anything ($code)" [ "$code" = 401 ]
LAST=${COOKIE: -1}; FORGED=${COOKIE%?}$([ "$LAST" = 0 ] && echo 1 || echo 0)
code=$(call GET /jobs -H "Cookie: $FORGED")
check "a forged session is refused ($code)" [ "$code" = 401 ]
http POST /session -H "Cookie: $COOKIE"; expect_error 401 unauthorized Authorization "a session cannot open a session"
http DELETE /session; expect_status 204 "ending a session"
check "ending it clears the cookie" grep -qi '^set-cookie: difftune_session=;.*Max-Age=0' "$TMP/headers"
READID=$("$BIN" keys list --json --data-dir "$DATA" | jq -r '.data[] | select(.name == "t-read") | .id')
"$BIN" keys revoke "$READID" --data-dir "$DATA" >/dev/null
code=$(call GET /jobs -H "Cookie: $COOKIE")
check "revoking a key ends its sessions at once ($code)" [ "$code" = 401 ]

# ---- no secret anywhere it could leak ------------------------------------------------------
for s in submit admin; do
  check "the $s secret is not in the store" [ "$(grep -c -- "${KEY[$s]}" "$DATA/difftune.db" "$DATA"/difftune.db-wal 2>/dev/null | awk -F: '{n += $NF} END {print n + 0}')" = 0 ]
  check "the $s secret is not in the server's output" not grep -q -- "${KEY[$s]}" "$DATA/serve.out" "$DATA/serve.err"
done
code=$(call GET /jobs -H "Authorization: Bearer ${KEY[admin]}x")
check "a near-miss key is not echoed back" not grep -q -- "${KEY[admin]}" "$TMP/body"
serve_stop; check "the keyed server stops cleanly" [ $? -eq 0 ]

# ---- rate limits, and a keyed server may listen anywhere ------------------------------------
serve_start "$DATA" --devices cpu --rate-limit 1 --rate-burst 3 --host 0.0.0.0
check "with keys, --host 0.0.0.0 starts" [ -n "$SERVER_PID" ]
check "a keyed server says keys are needed" grep -q 'API key(s): every request' "$DATA/serve.out"
codes=""
for i in $(seq 1 8); do codes+="$(call GET /health) "; done
check "public routes are not rate limited ($codes)" [ "$codes" = "200 200 200 200 200 200 200 200 " ]
# A burst of 3, then one a second: however slowly the requests go out, no more than the burst
# plus one a second elapsed are admitted, and the first 3 always are.
codes="" t0=$(date +%s%3N)
for i in $(seq 1 8); do
  c=$(call GET /jobs -H "Authorization: Bearer ${KEY[submit]}")
  codes+="$c "
  [ "$c" = 429 ] && cp "$TMP/headers" "$TMP/h429" && cp "$TMP/body" "$TMP/b429"
done
elapsed=$(( $(date +%s%3N) - t0 ))
admitted=$(grep -o 200 <<<"$codes" | wc -l)
check "the burst is admitted ($codes)" [ "${codes:0:12}" = "200 200 200 " ]
check "then 429 ($codes in ${elapsed} ms)" grep -q 429 <<<"$codes"
check "no more than the burst and the rate admit ($admitted in ${elapsed} ms)" \
  [ "$admitted" -le $((3 + elapsed / 1000 + 1)) ]
check "429 says when to retry" grep -qi '^retry-after: [1-9]' "$TMP/h429"
check "429 is rate_limited" [ "$(jq -r .error.code "$TMP/b429")" = rate_limited ]
code=$(call GET /jobs -H "Authorization: Bearer ${KEY[admin]}")
check "another key has its own budget ($code)" [ "$code" = 200 ]
sleep 1.1
code=$(call GET /jobs -H "Authorization: Bearer ${KEY[submit]}")
check "the budget refills ($code)" [ "$code" = 200 ]
serve_stop; check "the server stops cleanly" [ $? -eq 0 ]
finish
