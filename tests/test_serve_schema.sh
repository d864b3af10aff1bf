#!/usr/bin/env bash
# test_serve_schema.sh — the store's schema version at start: `difftune serve` migrates a data
# directory on start (user_version = the latest), and refuses one written by a newer difftune
# (user_version above the latest): it exits non-zero with a message that says so, before it
# listens, and leaves the database file and its WAL exactly as they were.
source "$(dirname "$0")/server_util.sh"
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/serve_schema
rm -rf "$TMP" && mkdir -p "$TMP"
DATA="$TMP/data"
PY=${DIFFTUNE_PYTHON:-python3}
DB="$DATA/difftune.db"
user_version() { "$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version").fetchone()[0])' "$1"; }

serve_start "$DATA" --devices cpu --slots-per-device 0
http GET /health; expect_status 200 "a fresh data directory serves"
serve_stop; check "graceful stop" [ $? -eq 0 ]
LATEST=$(user_version "$DB")
check "the store was migrated on start (user_version $LATEST)" [ "$LATEST" -ge 5 ]

# A newer difftune's database: one version past the latest, with a committed row still in the
# WAL (no checkpoint on close), as a newer server killed mid-run leaves it.
"$PY" - "$DB" $((LATEST + 1)) <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("CREATE TABLE from_the_future (x INTEGER)")
db.execute("INSERT INTO from_the_future VALUES (7)")
db.execute("PRAGMA user_version = %d" % int(sys.argv[2]))
# leave the frames in the WAL: a plain close would checkpoint them into the file
import os; os._exit(0)
EOF
check "the WAL holds the newer schema's frames" [ -s "$DB-wal" ]
before=$(sha256sum "$DB" "$DB-wal" | cut -d' ' -f1 | tr '\n' ' ')

timeout 20 "$BIN" serve --port 0 --data-dir "$DATA" --devices cpu >"$TMP/out" 2>"$TMP/err"
rc=$?
check "serve refuses a newer schema with a non-zero exit (rc $rc)" [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]
check "the message names the versions and the fix: $(cat "$TMP/err")" \
  grep -q "schema version $((LATEST + 1)) but this difftune knows only $LATEST.*newer difftune; upgrade difftune" "$TMP/err"
check "it never listened" not grep -q "listening" "$TMP/out"
check "the database and its WAL are byte for byte as they were" \
  [ "$(sha256sum "$DB" "$DB-wal" | cut -d' ' -f1 | tr '\n' ' ')" = "$before" ]
expect_rc 1 "keys create refuses it too" -- keys create --data-dir "$DATA" --scope read
check "the newer database still reads back whole" \
  [ "$(user_version "$DB"):$("$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT x FROM from_the_future").fetchone()[0])' "$DB")" = "$((LATEST + 1)):7" ]
finish
