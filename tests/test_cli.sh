#!/usr/bin/env bash
# test_cli.sh — the difftune command line as a user drives it: help texts, bad input rejected
# with a message and a non-zero exit before any work starts, SIGTERM stopping at a step with a
# checkpoint, resuming, and sampling from the result.
set -u
BIN=${DIFFTUNE:?DIFFTUNE must point at the difftune binary}
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/cli
rm -rf "$TMP" && mkdir -p "$TMP"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

# expect CODE PATTERN -- command...: exit status CODE and stderr matching PATTERN
expect() {
  local code=$1 pattern=$2; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  if [ "$got" -ne "$code" ]; then bad "$* exited $got, expected $code: $(head -c 400 "$TMP/err")"; return; fi
  if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$TMP/err"; then
    bad "$*: stderr lacks /$pattern/: $(head -c 400 "$TMP/err")"; return
  fi
  ok
}

# --- help and usage
expect 0 "" -- "$BIN" --help
grep -q "train" "$TMP/out" && grep -q "sample" "$TMP/out" && grep -q "dataset" "$TMP/out" && ok || bad "--help lists the commands"
for c in train sample dataset; do
  expect 0 "" -- "$BIN" $c --help
  grep -q "usage: difftune $c" "$TMP/out" && ok || bad "$c --help shows its usage"
done
expect 2 "unknown command" -- "$BIN" frobnicate
expect 2 "required" -- "$BIN" train
expect 2 "unknown option" -- "$BIN" train --spec x --out y --bogus 1
expect 2 "positive integer" -- "$BIN" train --spec x --out y --log-every 12abc

# --- data and a spec
"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
"$BIN" dataset synth --style outline --classes 4 --per-class 4 --size 8 --out "$TMP/outline4" >/dev/null || bad "synth"
spec() { # spec FILE STEPS EXTRA_JSON
  cat >"$1" <<JSON
{"method": "pretrain", "dataset": "$TMP/solid",
 "model": {"arch": "custom", "depth": 1, "hidden_size": 16, "num_heads": 2, "patch_size": 2, "image_size": 8},
 "hyperparameters": {"steps": $2, "batch_size": 4, "learning_rate": 1e-3}, "eval": {"sample_every": 0},
 "checkpoint": {"every": 1000}, "device": "cpu"$3}
JSON
}

# --- bad input: a message naming the problem, exit 2, and nothing written
expect 2 "cannot read spec" -- "$BIN" train --spec "$TMP/missing.json" --out "$TMP/o1"
echo '{"dataset": "x", "hyperparameters": {"learning_rate": -1}}' >"$TMP/badlr.json"
expect 2 "hyperparameters.learning_rate" -- "$BIN" train --spec "$TMP/badlr.json" --out "$TMP/o1"
echo '{"dataset": "x", "hyperparameters": {"stepz": 3}}' >"$TMP/unknown.json"
expect 2 "hyperparameters.stepz" -- "$BIN" train --spec "$TMP/unknown.json" --out "$TMP/o1"
echo '{"dataset": ' >"$TMP/broken.json"
expect 2 "invalid_json" -- "$BIN" train --spec "$TMP/broken.json" --out "$TMP/o1"
mkdir -p "$TMP/empty"
spec "$TMP/empty.json" 4 ""
sed -i "s|$TMP/solid|$TMP/empty|" "$TMP/empty.json"
expect 2 "$TMP/empty" -- "$BIN" train --spec "$TMP/empty.json" --out "$TMP/o1"
spec "$TMP/nodata.json" 4 ""
sed -i "s|$TMP/solid|$TMP/does-not-exist|" "$TMP/nodata.json"
expect 2 "does-not-exist" -- "$BIN" train --spec "$TMP/nodata.json" --out "$TMP/o1"
[ ! -e "$TMP/o1/checkpoints" ] && ok || bad "rejected jobs write no output"

# a base model with 3 classes, then fine-tuning data with 4 classes
spec "$TMP/base.json" 2 ""
"$BIN" train --spec "$TMP/base.json" --out "$TMP/base" --quiet >/dev/null 2>&1 || bad "base model"
BASE="$TMP/base/checkpoints/step_0000002.safetensors"
[ -f "$BASE" ] && ok || bad "base checkpoint written"
cat >"$TMP/toomany.json" <<JSON
{"method": "full", "base_model": "$BASE", "dataset": "$TMP/outline4",
 "hyperparameters": {"steps": 2, "batch_size": 4}, "device": "cpu"}
JSON
expect 2 "4 classes.*only 3" -- "$BIN" train --spec "$TMP/toomany.json" --out "$TMP/o2"
head -c 100 "$BASE" >"$TMP/corrupt.safetensors"
sed "s|$BASE|$TMP/corrupt.safetensors|; s|outline4|solid|" "$TMP/toomany.json" >"$TMP/corrupt.json"
expect 2 "corrupt.safetensors" -- "$BIN" train --spec "$TMP/corrupt.json" --out "$TMP/o2"
sed "s|$BASE|$TMP/nope.safetensors|; s|outline4|solid|" "$TMP/toomany.json" >"$TMP/nobase.json"
expect 2 "nope.safetensors" -- "$BIN" train --spec "$TMP/nobase.json" --out "$TMP/o2"
[ ! -e "$TMP/o2/checkpoints" ] && ok || bad "rejected fine-tuning jobs write no output"
expect 2 "device" -- "$BIN" train --spec "$TMP/base.json" --out "$TMP/o3" --device tpu:0

# --- SIGTERM stops at a step boundary with a checkpoint; running again resumes
spec "$TMP/long.json" 100000 ""
"$BIN" train --spec "$TMP/long.json" --out "$TMP/long" --log-every 1 >"$TMP/long.log" 2>"$TMP/long.err" &
pid=$!
for _ in $(seq 1 600); do grep -q '"phase":"training","step":3,' "$TMP/long.log" 2>/dev/null && break; sleep 0.1; done
kill -TERM $pid
wait $pid
code=$?
[ $code -eq 3 ] && ok || bad "SIGTERM exit status $code, expected 3: $(tail -c 300 "$TMP/long.err")"
grep -q '"status":"stopped"' "$TMP/long.log" && ok || bad "a stopped status event"
stopped_at=$(ls "$TMP/long/checkpoints" | sed -n 's/^step_0*\([0-9][0-9]*\)\.safetensors$/\1/p' | sort -n | tail -1)
[ -n "$stopped_at" ] && [ "$stopped_at" -ge 3 ] && ok || bad "checkpoint written on stop (got '$stopped_at')"
target=$((stopped_at + 2))
sed "s/\"steps\": 100000/\"steps\": $target/" "$TMP/long.json" >"$TMP/resume.json"
"$BIN" train --spec "$TMP/resume.json" --out "$TMP/long" --log-every 1 >"$TMP/resume.log" 2>&1
[ $? -eq 0 ] && ok || bad "resumed run succeeds"
grep -q "resuming from checkpoint step $stopped_at" "$TMP/resume.log" && ok || bad "resumed from step $stopped_at"
first=$(grep -o '"phase":"training","step":[0-9]*' "$TMP/resume.log" | head -1 | grep -o '[0-9]*$')
[ "$first" = "$((stopped_at + 1))" ] && ok || bad "first resumed step $first, expected $((stopped_at + 1))"

# --- sampling
FINAL="$TMP/long/checkpoints/$(printf 'step_%07d.safetensors' $target)"
expect 0 "" -- "$BIN" sample --checkpoint "$FINAL" --n 4 --sampler ddim --steps 5 --out "$TMP/grid.png"
[ "$(head -c 8 "$TMP/grid.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && ok || bad "sample writes a PNG"
expect 0 "" -- "$BIN" sample --checkpoint "$FINAL" --n 2 --steps 3 --class 3 --out "$TMP/uncond.png"
expect 2 "classes 0..2" -- "$BIN" sample --checkpoint "$FINAL" --n 2 --class 4 --out "$TMP/x.png"
expect 2 "corrupt.safetensors" -- "$BIN" sample --checkpoint "$TMP/corrupt.safetensors" --n 2 --out "$TMP/x.png"
expect 2 "bad value for --n" -- "$BIN" sample --checkpoint "$FINAL" --n 0 --out "$TMP/x.png"
expect 2 "bad value for --seed" -- "$BIN" sample --checkpoint "$FINAL" --n 1 --seed " -1" --out "$TMP/x.png"
expect 2 "bad value for --n" -- "$BIN" sample --checkpoint "$FINAL" --n " 2" --out "$TMP/x.png"

echo "test_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
