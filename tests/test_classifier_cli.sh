#!/usr/bin/env bash
# test_classifier_cli.sh — `difftune classifier train|eval`: events and the final status line,
# the file it writes, eval's JSON, determinism, exit codes and strict arguments.
# Needs DIFFTUNE (the built binary), DIFFTUNE_TEST_TMP and jq, as set up by ctest.
source "$(dirname "$0")/check_util.sh"
TMP="${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/classifier_cli"
T=$TMP D=$BIN
rm -rf "$T" && mkdir -p "$T"
jqt() { jq -e "$@" >/dev/null; } # jqt FILTER FILE: the filter holds

expect_rc 0 "synth" -- dataset synth --style solid --out "$T/solid" --classes 3 --per-class 24 --size 16 --seed 1
expect_rc 0 "synth another domain" -- dataset synth --style outline --out "$T/outline" --classes 3 --per-class 8 --size 16

# ---- train ----------------------------------------------------------------------------------
expect_rc 0 "train" -- classifier train --dataset "$T/solid" --out "$T/clf.safetensors" --image-size 16 \
    --epochs 3 --batch 8 --lr 0.003 --held-out 0.25 --seed 4
check "one JSON event per line" jqt -s 'length > 0 and all(.[]; .type and .time)' "$T/out"
check "starts running" test "$(head -1 "$T/out" | jq -r .status)" = running
check "a progress event per epoch" test "$(jq -s '[.[] | select(.type == "progress" and .phase == "training")] | length' "$T/out")" -eq 3
check "progress counts epochs" test "$(jq -s -c '[.[] | select(.type == "progress") | [.step, .total_steps]] | last' "$T/out")" = "[3,3]"
check "the metric event has both accuracies" jqt -s 'any(.[]; .type == "metric" and .name == "classifier" and (.train_accuracy | type) == "number" and .held_out_images == 18)' "$T/out"
last=$(tail -1 "$T/out")
check "the last line says succeeded, with the accuracies and the file" \
    test "$(jq -r '[.type, .status, (.train_accuracy | type), (.held_out_accuracy | type), .path] | join(",")' <<<"$last")" = "status,succeeded,number,number,$T/clf.safetensors"
check "the file is written" test -s "$T/clf.safetensors"
cp "$T/out" "$T/train1.out"

expect_rc 0 "train again with the same seed" -- classifier train --dataset "$T/solid" --out "$T/clf2.safetensors" \
    --image-size=16 --epochs=3 --batch=8 --lr=0.003 --held-out=0.25 --seed=4 --quiet
check "the same seed gives the same file" cmp -s "$T/clf.safetensors" "$T/clf2.safetensors"
check "--quiet leaves out log events" test "$(jq -s '[.[] | select(.type == "log")] | length' "$T/out")" -eq 0
check "the log event is there without --quiet" test "$(jq -s '[.[] | select(.type == "log")] | length' "$T/train1.out")" -eq 1

expect_rc 0 "train, text format" -- classifier train --dataset "$T/solid" --out "$T/clf3.safetensors" --image-size 16 \
    --channels 1 --epochs 1 --format text
check "text progress lines" grep -q '^training  *step 1/1' "$T/out"
check "text status line" grep -q '^status: status="succeeded"' "$T/out"

# ---- eval -----------------------------------------------------------------------------------
expect_rc 0 "eval" -- classifier eval --classifier "$T/clf.safetensors" --dataset "$T/solid"
check "eval JSON" jqt '.images == 72 and .classes == 3 and (.accuracy >= 0 and .accuracy <= 1) and (.per_class_accuracy | length) == 3' "$T/out"
check "eval names its inputs" test "$(jq -r '[.classifier, .dataset] | join(",")' "$T/out")" = "$T/clf.safetensors,$T/solid"
expect_rc 0 "eval on another domain" -- classifier eval --classifier="$T/clf.safetensors" --dataset="$T/outline"
check "eval counts the other domain" test "$(jq .images "$T/out")" -eq 24
expect_rc 0 "eval of a grey classifier loads the dataset in grey" -- classifier eval --classifier "$T/clf3.safetensors" --dataset "$T/solid"

# ---- help and bad usage ---------------------------------------------------------------------
expect_rc 0 "help" -- classifier --help
check "help lists train and eval" grep -q eval "$T/out"
expect_rc 0 "train help" -- classifier train --help
check "train help lists --held-out" grep -q -- --held-out "$T/out"
expect_rc 0 "eval help" -- classifier eval --help
check "eval help lists --classifier" grep -q -- --classifier "$T/out"
expect_rc 0 "the top-level help lists classifier" -- --help
check "listed" grep -q '^  classifier ' "$T/out"

expect_rc 2 "no subcommand" -- classifier
expect_rc 2 "unknown subcommand" -- classifier fit
expect_rc 2 "train without --dataset" -- classifier train --out "$T/x.safetensors"
expect_rc 2 "train without --out" -- classifier train --dataset "$T/solid"
expect_rc 2 "image size not a multiple of 8" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --image-size 12
check "names the bad value" grep -q "'12'" "$T/err"
expect_rc 2 "two channels" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --channels 2
expect_rc 2 "zero epochs" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --epochs 0
expect_rc 2 "trailing garbage in a number" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --batch 8x
expect_rc 2 "negative learning rate" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --lr -1
expect_rc 2 "held-out of 1" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --held-out 1
expect_rc 2 "negative seed" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --seed -1
expect_rc 2 "unknown format" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --format yaml
expect_rc 2 "unknown option" -- classifier train --dataset "$T/solid" --out "$T/x.safetensors" --momentum 0.9
expect_rc 2 "missing value" -- classifier train --dataset "$T/solid" --out
check "nothing written on bad usage" test ! -e "$T/x.safetensors"
expect_rc 2 "train on a missing dataset" -- classifier train --dataset "$T/nope" --out "$T/x.safetensors"
check "the load error is on stderr" grep -q "does not exist" "$T/err"
check "and the status event says failed" test "$(tail -1 "$T/out" | jq -r .status)" = failed
mkdir -p "$T/one/only" && cp "$T/solid/circle/00000.png" "$T/one/only/"
expect_rc 2 "train on one class" -- classifier train --dataset "$T/one" --out "$T/x.safetensors" --image-size 16
check "says why" grep -q "at least 2" "$T/err"

expect_rc 2 "eval without --classifier" -- classifier eval --dataset "$T/solid"
expect_rc 2 "eval without --dataset" -- classifier eval --classifier "$T/clf.safetensors"
expect_rc 2 "eval of a file that is not a classifier" -- classifier eval --classifier "$T/solid/circle/00000.png" --dataset "$T/solid"
expect_rc 2 "eval with a class count mismatch" -- classifier eval --classifier "$T/clf.safetensors" --dataset "$T/one"
check "names both counts" grep -q "1 classes but the classifier was trained on 3" "$T/err"
expect_rc 2 "eval of a missing dataset" -- classifier eval --classifier "$T/clf.safetensors" --dataset "$T/nope"
expect_rc 1 "train to an unwritable place" -- classifier train --dataset "$T/solid" --out "$T/no/such/dir/c.safetensors" \
    --image-size 16 --epochs 1

finish
