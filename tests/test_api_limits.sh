#!/usr/bin/env bash
# test_api_limits.sh — the server's limits on what a request may make it do: JSON nesting depth,
# body size, upload size, the number of members of a dataset archive and what it may unpack to
# (a decompression bomb is stopped while it extracts, with nothing left behind).
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/api_limits
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"
serve_start "$DATA" --devices cpu --slots-per-device 0 --max-upload-mb 1 --max-unpacked-mb 2 --max-archive-files 10

# JSON nesting
deep() { local n=$1 open="" close=""; for ((i = 0; i < n; i++)); do open+='{"a":'; close+='}'; done; echo "${open}1${close}"; }
http POST /jobs -H 'Content-Type: application/json' -d "$(deep 40)"
expect_error 400 invalid_json - "a body nested 40 deep"
check "the message names the depth limit" grep -q 'more than 32 deep' "$TMP/body"
http POST /jobs -H 'Content-Type: application/json' -d "$(deep 3)"
check "3 deep is parsed (then refused as a job: $(jb .error.code))" [ "$(jb .error.code)" != invalid_json ]
http POST /jobs -H 'Content-Type: application/json' -d "{\"method\": \"$(printf '[%.0s' $(seq 1 100))\"}"
check "brackets inside strings do not count ($(jb .error.code))" [ "$(jb .error.code)" != invalid_json ]

# body and upload sizes
head -c 2000000 /dev/zero | tr '\0' ' ' >"$TMP/big.json"
http POST /jobs -H 'Content-Type: application/json' --data-binary "@$TMP/big.json"
expect_error 413 payload_too_large - "a JSON body over 1 MiB"
head -c 1200000 /dev/urandom >"$TMP/big.tar"
http POST "/datasets?name=big" --data-binary "@$TMP/big.tar" -H 'Content-Type: application/x-tar'
expect_error 413 payload_too_large - "an upload over --max-upload-mb"

# archive members
"$BIN" dataset synth --style solid --classes 3 --per-class 4 --size 8 --out "$TMP/many" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/many.tar" many
http POST "/datasets?name=many" --data-binary "@$TMP/many.tar" -H 'Content-Type: application/x-tar'
expect_error 413 payload_too_large file "an archive with more than --max-archive-files members"

# a decompression bomb: 8 MiB of zeros gzip to a few KiB; extraction stops at 2 MiB
mkdir -p "$TMP/bomb/cls"
head -c 8388608 /dev/zero >"$TMP/bomb/cls/a.png"
tar -C "$TMP" -czf "$TMP/bomb.tar.gz" bomb
check "the bomb is small on the wire ($(stat -c %s "$TMP/bomb.tar.gz") bytes)" [ "$(stat -c %s "$TMP/bomb.tar.gz")" -lt 100000 ]
http POST "/datasets?name=bomb" --data-binary "@$TMP/bomb.tar.gz" -H 'Content-Type: application/gzip'
expect_error 413 payload_too_large file "an archive unpacking past --max-unpacked-mb"
check "the refusal names the limit" grep -q 'bytes' "$TMP/body"
check "nothing is left of refused archives" [ -z "$(ls -A "$DATA/datasets" 2>/dev/null)" ]
check "no upload is left in tmp" [ -z "$(ls -A "$DATA/tmp" 2>/dev/null)" ]
http GET /health; expect_status 200 "the server keeps serving"
serve_stop; check "the server stops cleanly" [ $? -eq 0 ]
finish
