#!/usr/bin/env bash
# test_dataset_cli.sh — `difftune dataset synth|info`: output JSON, exit codes, strict arguments.
# Needs DIFFTUNE (the built binary) and DIFFTUNE_TEST_TMP, as set by ctest.
source "$(dirname "$0")/check_util.sh"
TMP="${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/dataset_cli"
T=$TMP D=$BIN
rm -rf "$T" && mkdir -p "$T"

expect_rc 0 "synth solid" -- dataset synth --style solid --out "$T/solid" --classes 3 --per-class 4 --size 16 --seed 5
check "synth JSON" grep -qx "{\"path\":\"$T/solid\",\"style\":\"solid\",\"classes\":3,\"images\":12}" "$T/out"
check "synth files" test "$(find "$T/solid" -name '*.png' | wc -l)" -eq 12
check "synth class folders" test -f "$T/solid/circle/00003.png" -a -f "$T/solid/triangle/00000.png"

expect_rc 0 "synth is deterministic" -- dataset synth --style solid --out "$T/solid2" --classes 3 --per-class 4 --size 16 --seed 5
check "same seed, same bytes" cmp -s "$T/solid/square/00002.png" "$T/solid2/square/00002.png"
expect_rc 0 "synth outline, defaults" -- dataset synth --style=outline --out="$T/outline" --per-class 2
check "outline JSON" grep -q '"style":"outline","classes":4,"images":8' "$T/out"

expect_rc 0 "info" -- dataset info "$T/solid" --size 8 --channels 1
check "info JSON" grep -qx '{"images":12,"classes":3,"class_names":\["circle","square","triangle"\],"per_class":\[4,4,4\]}' "$T/out"

expect_rc 0 "help" -- dataset --help
check "help lists synth" grep -q synth "$T/out"
expect_rc 0 "synth help" -- dataset synth --help
check "synth help lists --per-class" grep -q -- --per-class "$T/out"
expect_rc 0 "info help" -- dataset info --help
check "info help lists --channels" grep -q -- --channels "$T/out"

expect_rc 2 "no subcommand" -- dataset
expect_rc 2 "unknown subcommand" -- dataset frobnicate
expect_rc 2 "trailing garbage in a number" -- dataset synth --style solid --out "$T/x" --classes 12abc
check "names the bad value" grep -q 12abc "$T/err"
expect_rc 2 "too many classes" -- dataset synth --style solid --out "$T/x" --classes 9
expect_rc 2 "size too big" -- dataset synth --style solid --out "$T/x" --size 257
expect_rc 2 "negative seed" -- dataset synth --style solid --out "$T/x" --seed -3
expect_rc 2 "unknown style" -- dataset synth --style sketch --out "$T/x"
expect_rc 2 "missing --out" -- dataset synth --style solid
expect_rc 2 "missing value" -- dataset synth --style
expect_rc 2 "unknown option" -- dataset synth --style solid --out "$T/x" --colour red
check "nothing written on bad usage" test ! -e "$T/x"
expect_rc 2 "info without path" -- dataset info
expect_rc 2 "info bad channels" -- dataset info "$T/solid" --channels 2
expect_rc 1 "info on a missing path" -- dataset info "$T/nope"
check "load error on stderr" grep -q "does not exist" "$T/err"
mkdir -p "$T/bad/cls" && printf 'not a png' >"$T/bad/cls/a.png"
expect_rc 1 "info on a corrupt image" -- dataset info "$T/bad"
check "names the corrupt file" grep -q "cls/a.png" "$T/err"
printf 'x' >"$T/file"
expect_rc 1 "synth into a path under a file" -- dataset synth --style solid --out "$T/file/sub"

finish
