#!/usr/bin/env bash
# test_keys_cli.sh — `difftune keys create|list|revoke`: the secret alone on stdout, never in a
# listing or the database, revocation, the default data directory, exit codes and messages.
# Needs DIFFTUNE (the built binary) and DIFFTUNE_TEST_TMP, as set by ctest.
source "$(dirname "$0")/check_util.sh"
TMP="${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/keys_cli"
T=$TMP
rm -rf "$T" && mkdir -p "$T"
D="$T/data/sub" # missing: create makes it
unset DIFFTUNE_DATA_DIR
jqt() { jq -e "$@" >/dev/null; } # jqt FILTER FILE: the filter holds

# one key per scope; stdout is exactly the secret and a newline, stderr one line about it
declare -A SECRET ID
for scope in read submit admin; do
  expect_rc 0 "create $scope" -- keys create --scope "$scope" --name "ci $scope" --data-dir "$D"
  check "create $scope: stdout is one line" test "$(wc -l <"$T/out")" -eq 1
  check "create $scope: stdout is a secret ($(head -c 100 "$T/out"))" grep -qxE 'dtk_[0-9a-f]{64}' "$T/out"
  SECRET[$scope]=$(cat "$T/out")
  check "create $scope: stderr is one line" test "$(wc -l <"$T/err")" -eq 1
  check "create $scope: stderr names id and scope ($(cat "$T/err"))" \
    grep -qxE "created key key_[0-9a-f]{24} \(scope $scope\): store the secret now, it is not shown again" "$T/err"
  ID[$scope]=$(grep -oE 'key_[0-9a-f]{24}' "$T/err")
done
check "the data directory was made" test -f "$D/difftune.db"
check "three distinct secrets" test "$(printf '%s\n' "${SECRET[@]}" | sort -u | wc -l)" -eq 3
KEY=$("$BIN" keys create --scope=read --data-dir="$D" 2>/dev/null)
check "KEY=\$(difftune keys create) captures the secret" grep -qxE 'dtk_[0-9a-f]{64}' <<<"$KEY"

# the listing: every key, no secret, no hash
expect_rc 0 "list" -- keys list --data-dir "$D"
check "list has a header" grep -qE '^ID +SCOPE +NAME +CREATED +REVOKED$' "$T/out"
check "list has 4 keys" test "$(grep -c '^key_' "$T/out")" -eq 4
for scope in read submit admin; do
  check "list shows the $scope key" grep -qE "^${ID[$scope]} +$scope +ci $scope +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +-$" "$T/out"
done
cp "$T/out" "$T/list.txt"
expect_rc 0 "list --json" -- keys list --json --data-dir "$D"
check "list --json is the store's object" \
  jqt '(.data | length) == 4 and all(.data[]; .object == "api_key" and (.id | startswith("key_"))
         and (.scope | IN("read", "submit", "admin")) and (.created_at | type) == "number"
         and .revoked_at == null and (keys | length) == 6)' "$T/out"
check "list --json has the read key" jqt --arg id "${ID[read]}" \
  '.data[] | select(.id == $id) | .scope == "read" and .name == "ci read"' "$T/out"
cp "$T/out" "$T/list.json"
# the store keeps the hash (so these greps can find something), never the secret
HASH=$(printf '%s' "${SECRET[admin]}" | sha256sum | cut -d' ' -f1)
check "the store holds the secret's SHA-256" grep -qF "$HASH" "$D"/difftune.db*
for scope in read submit admin; do
  s=${SECRET[$scope]}
  check "no $scope secret in the listings" test "$(cat "$T/list.txt" "$T/list.json" | grep -cF "$s")" -eq 0
  check "no $scope secret in difftune.db" test "$(grep -c "$s" "$D/difftune.db")" -eq 0
  check "no $scope secret in any store file" test "$(cat "$D"/difftune.db* | grep -acF "$s")" -eq 0
  h=$(printf '%s' "$s" | sha256sum | cut -d' ' -f1)
  check "no $scope hash in the listings" test "$(cat "$T/list.txt" "$T/list.json" | grep -cF "$h")" -eq 0
done

# revocation
expect_rc 0 "revoke" -- keys revoke "${ID[submit]}" --data-dir "$D"
check "revoke says so" grep -qx "revoked ${ID[submit]}" "$T/out"
expect_rc 0 "revoke twice" -- keys revoke --data-dir "$D" "${ID[submit]}"
check "revoke twice says it already was" grep -q "^revoked ${ID[submit]} (it was already revoked)$" "$T/out"
expect_rc 0 "list after revoke" -- keys list --json --data-dir "$D"
check "the revoked key has revoked_at" jqt --arg id "${ID[submit]}" \
  '[.data[] | select(.revoked_at != null) | .id] == [$id] and
   (.data[] | select(.id == $id) | .revoked_at >= .created_at)' "$T/out"
expect_rc 0 "table after revoke" -- keys list --data-dir "$D"
check "the table shows when" grep -qE "^${ID[submit]} +submit +ci submit +[0-9T:Z-]{20} +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$" "$T/out"
check "the others stay active" test "$(grep -cE ' -$' "$T/out")" -eq 3

# DIFFTUNE_DATA_DIR, else ./difftune-data, as serve
mkdir -p "$T/cwd"
(cd "$T/cwd" && DIFFTUNE_DATA_DIR="$T/env" "$BIN" keys create --scope admin >"$T/out" 2>"$T/err")
check "create under \$DIFFTUNE_DATA_DIR" test -f "$T/env/difftune.db" -a ! -e "$T/cwd/difftune-data"
(cd "$T/cwd" && DIFFTUNE_DATA_DIR="$T/env" "$BIN" keys list >"$T/out" 2>"$T/err")
check "list under \$DIFFTUNE_DATA_DIR" test "$(grep -c '^key_.* admin ' "$T/out")" -eq 1
(cd "$T/cwd" && DIFFTUNE_DATA_DIR= "$BIN" keys create --scope read >"$T/out" 2>"$T/err")
check "an empty \$DIFFTUNE_DATA_DIR means ./difftune-data" test -f "$T/cwd/difftune-data/difftune.db"
(cd "$T/cwd" && "$BIN" keys list >"$T/out" 2>"$T/err")
check "list in ./difftune-data" test "$(grep -c '^key_.* read ' "$T/out")" -eq 1
(cd "$T/cwd" && DIFFTUNE_DATA_DIR="$T/env" "$BIN" keys list --data-dir "$D" >"$T/out" 2>"$T/err")
check "--data-dir beats the environment" test "$(grep -c '^key_' "$T/out")" -eq 4

# help
expect_rc 0 "help" -- keys --help
check "help lists the commands" grep -q revoke "$T/out"
for sub in create list revoke; do
  expect_rc 0 "$sub --help" -- keys "$sub" --help
  check "$sub --help is its usage" grep -q "usage: difftune keys $sub" "$T/out"
done
expect_rc 0 "top-level help lists keys" -- --help
check "difftune --help names keys" grep -qE '^  keys ' "$T/out"

# errors: bad usage exits 2 with the usage, failed work 1 with one line
expect_rc 2 "no subcommand" -- keys
check "no subcommand: usage on stderr" grep -q "usage: difftune keys" "$T/err"
expect_rc 2 "unknown subcommand" -- keys rotate
expect_rc 2 "create without --scope" -- keys create --data-dir "$T/never"
check "missing --scope: says so" grep -q -- "--scope is required" "$T/err"
check "missing --scope: usage on stderr" grep -q "usage: difftune keys create" "$T/err"
expect_rc 2 "unknown scope" -- keys create --scope write --data-dir "$T/never"
check "unknown scope: one line naming the valid ones" \
  grep -qx "difftune keys create: unknown scope 'write': read, submit or admin" "$T/err"
check "unknown scope: nothing on stdout" test ! -s "$T/out"
expect_rc 2 "missing --scope value" -- keys create --scope
expect_rc 2 "unknown option" -- keys create --scope read --colour red --data-dir "$T/never"
expect_rc 2 "stray argument" -- keys create --scope read extra --data-dir "$T/never"
check "nothing written on bad usage" test ! -e "$T/never"
expect_rc 2 "bad name" -- keys create --scope read --name "$(printf 'a\tb')" --data-dir "$D"
check "bad name: says why" grep -q "control characters" "$T/err"
check "bad name: nothing on stdout" test ! -s "$T/out"
expect_rc 2 "revoke without ID" -- keys revoke --data-dir "$D"
check "revoke without ID: usage on stderr" grep -q "usage: difftune keys revoke" "$T/err"
expect_rc 2 "revoke two IDs" -- keys revoke "${ID[read]}" "${ID[admin]}" --data-dir "$D"
expect_rc 1 "revoke an unknown id" -- keys revoke key_000000000000000000000000 --data-dir "$D"
check "unknown id: one line naming it" grep -qx "difftune keys revoke: no key key_000000000000000000000000" "$T/err"
expect_rc 2 "unknown list option" -- keys list --jsonx --data-dir "$D"
expect_rc 1 "list without a store" -- keys list --data-dir "$T/nowhere"
check "no store: says where it looked" grep -q "no store at $T/nowhere/difftune.db" "$T/err"
check "list does not make a data directory" test ! -e "$T/nowhere"
expect_rc 1 "revoke without a store" -- keys revoke "${ID[read]}" --data-dir "$T/nowhere"
printf 'x' >"$T/file"
expect_rc 1 "create under a file" -- keys create --scope read --data-dir "$T/file/sub"
check "create under a file: nothing on stdout" test ! -s "$T/out"

# still exactly the keys made above, the unrevoked ones working
expect_rc 0 "final list" -- keys list --json --data-dir "$D"
check "final: 4 keys, 3 active" jqt '(.data | length) == 4 and ([.data[] | select(.revoked_at == null)] | length) == 3' "$T/out"

finish
