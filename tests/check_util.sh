# check_util.sh — sourced by the shell tests: the difftune binary, jq, and the pass/fail tally.
#
#   BIN                    the binary under test ($DIFFTUNE, set by ctest)
#   check WHAT COMMAND...  passes when COMMAND succeeds, else prints "FAIL: WHAT"
#   not COMMAND...         succeeds when COMMAND fails (check WHAT not grep -q SECRET FILE)
#   ok / bad WHAT          count a pass / a failure by hand
#   expect_rc RC WHAT -- ARGS...  runs $BIN ARGS (stdout to $TMP/out, stderr to $TMP/err) and
#                          passes when it exits with RC
#   finish                 prints "N passed, M failed" and exits 0 / 1
set -u
BIN=${DIFFTUNE:?DIFFTUNE must point at the difftune binary}
command -v jq >/dev/null || { echo "jq is required (deploy/install-deps.sh installs it)" >&2; exit 1; }
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
not() { ! "$@"; }
expect_rc() {
  local want=$1 what=$2
  shift 3
  "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  check "$what (rc $rc, want $want; stderr: $(head -c 300 "$TMP/err"))" test "$rc" -eq "$want"
}
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit $?
}
