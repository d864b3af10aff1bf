# server_util.sh — sourced by the API tests (tests/test_api_*.sh): runs a real `difftune serve`
# on loopback and drives it with curl; jq reads the JSON answers.
#
#   serve_start DIR [serve options...]   starts a server on a free port; sets URL and SERVER_PID
#   serve_stop                           SIGTERM, and waits for a clean exit
#   http METHOD PATH [curl args...]      one request: CODE, the body in $TMP/body, headers in $TMP/headers
#   jb FILTER                            jq -r FILTER on the last body
#   expect_status CODE WHAT              checks the last status
#   expect_error STATUS CODE PARAM WHAT  checks status, error.code, error.param ("-" = none) and X-Request-Id
#   wait_status JOB STATUS [SECONDS]     polls GET /jobs/JOB until it has STATUS
#   submit JSON                          POST /jobs, expects 201; sets JOB
#   upload_domains                       synthetic solid and outline sets (3 classes x 8, 8 px)
#                                        uploaded as datasets; sets SOLID and OUTLINE
#   (check, ok, bad and finish come from check_util.sh)
source "$(dirname "${BASH_SOURCE[0]}")/check_util.sh"
command -v curl >/dev/null || { echo "curl is required (deploy/install-deps.sh installs it)" >&2; exit 1; }

SERVER_PID=""
serve_start() {
  local dir=$1; shift
  mkdir -p "$dir"
  rm -f "$dir/serve.out" # a restart must not read the port of the server before it
  "$BIN" serve --port 0 --data-dir "$dir" "$@" >"$dir/serve.out" 2>>"$dir/serve.err" &
  SERVER_PID=$!
  local i port=""
  for i in $(seq 1 200); do
    port=$(sed -n 's|.*listening on http://[^/]*:\([0-9]*\)/.*|\1|p' "$dir/serve.out" 2>/dev/null)
    [ -n "$port" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "server did not start: $(cat "$dir/serve.err")" >&2
    exit 1
  fi
  URL="http://127.0.0.1:$port"
}

serve_stop() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID"
  local rc=$?
  SERVER_PID=""
  return $rc
}

# Leave no server behind when a test exits early.
trap '[ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null' EXIT

http() {
  local m=$1 p=$2; shift 2
  CODE=$(curl -sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$m" "$URL$p" "$@")
}

jb() { jq -r "$1" "$TMP/body" 2>/dev/null; }

submit() {
  http POST /jobs -H 'Content-Type: application/json' -d "$1"
  expect_status 201 "submit $(echo "$1" | tr -s ' \n' ' ' | head -c 200)"
  JOB=$(jb .id)
}

upload_domains() {
  "$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
  "$BIN" dataset synth --style outline --classes 3 --per-class 8 --size 8 --out "$TMP/outline" >/dev/null || bad "synth"
  tar -C "$TMP" -cf "$TMP/solid.tar" solid && tar -C "$TMP" -cf "$TMP/outline.tar" outline
  http POST "/datasets?name=solid" --data-binary "@$TMP/solid.tar" -H 'Content-Type: application/x-tar'
  expect_status 201 "upload solid"; SOLID=$(jb .id)
  http POST "/datasets?name=outline" --data-binary "@$TMP/outline.tar" -H 'Content-Type: application/x-tar'
  expect_status 201 "upload outline"; OUTLINE=$(jb .id)
}

expect_status() {
  if [ "$CODE" = "$1" ]; then ok; else bad "$2: status $CODE, expected $1: $(head -c 300 "$TMP/body")"; fi
}

expect_error() {
  local st=$1 code=$2 param=$3 what=$4
  if [ "$CODE" != "$st" ]; then bad "$what: status $CODE, expected $st: $(head -c 300 "$TMP/body")"; return; fi
  local got_code got_param
  got_code=$(jb '.error.code')
  got_param=$(jb '.error.param // "-"')
  [ "$got_code" = "$code" ] || { bad "$what: error.code '$got_code', expected '$code'"; return; }
  [ "$got_param" = "$param" ] || { bad "$what: error.param '$got_param', expected '$param'"; return; }
  [ -n "$(jb '.error.message')" ] || { bad "$what: no error.message"; return; }
  grep -qi '^x-request-id: ' "$TMP/headers" || { bad "$what: no X-Request-Id header"; return; }
  ok
}

wait_status() {
  local job=$1 want=$2 secs=${3:-120} i st=""
  for i in $(seq 1 $((secs * 10))); do
    st=$(curl -sS "$URL/jobs/$job" | jq -r .status)
    [ "$st" = "$want" ] && return 0
    case "$st" in succeeded|failed|cancelled) [ "$st" != "$want" ] && break ;; esac
    sleep 0.1
  done
  echo "job $job is '$st', waited for '$want': $(curl -sS "$URL/jobs/$job")" >&2
  return 1
}

