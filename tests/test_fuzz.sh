#!/usr/bin/env bash
# test_fuzz.sh — a short bounded run of every libFuzzer target (fuzz/README.md): the job-spec
# validator, POST /jobs request parsing, the HTTP router and header parsers, the IDX reader,
# the safetensors reader and model check, and dataset archive ingestion.
#
# Builds the fuzz targets (and only them, with the libraries they link) in a clang build of
# their own under DIFFTUNE_TEST_TMP, kept between runs so that a rerun rebuilds only what
# changed; then runs each for FUZZ_SECONDS (default 8) on a fresh copy of its seed corpus. Any
# crash, sanitizer report, leak, broken property, timeout or out-of-memory fails the test, and
# the input that caused it is left in $DIFFTUNE_TEST_TMP/fuzz/NAME/artifacts/ (replay it with
# build/fuzz/fuzz_NAME FILE). clang with libFuzzer is installed by deploy/install-deps.sh.
source "$(dirname "$0")/check_util.sh"
source "$(dirname "$0")/../fuzz/fuzz_run.sh"
TMP="${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-8}
mkdir -p "$TMP"

t0=$SECONDS
if ! fuzz_build "$TMP/build" "$TMP/build.log"; then
  bad "the fuzz targets build (log: $TMP/build.log)"
  finish
fi
echo "build: $((SECONDS - t0)) s"

for name in $FUZZ_TARGETS; do
  rm -rf "${TMP:?}/$name"
  if fuzz_run "$name" "$SECONDS_EACH" "$TMP/$name"; then
    ok
  else
    bad "fuzz_$name found a problem (rc or findings above; log $TMP/$name/log):"
    grep -a -m1 -E "ERROR:|property violated|runtime error|SUMMARY" "$TMP/$name/log" >&2
    ls "$TMP/$name/artifacts" >&2
  fi
  # Every seed must have been read: a corpus that no longer loads is a broken test.
  check "fuzz_$name read its $(ls "$FUZZ_SRC/fuzz/corpus/$name" | wc -l) seeds" \
    grep -a -q "INFO: seed corpus: files: $(ls "$FUZZ_SRC/fuzz/corpus/$name" | wc -l) " "$TMP/$name/log"
done
echo "total: $((SECONDS - t0)) s"
finish
