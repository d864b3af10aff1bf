# check_util.sh — sourced by the shell tests: the difftune binary, jq, and the pass/fail tally.
#
#   BIN                    the binary under test ($DIFFTUNE, set by ctest)
#   check WHAT COMMAND...  passes when COMMAND succeeds, else prints "FAIL: WHAT"
#   ok / bad WHAT          count a pass / a failure by hand
#   finish                 prints "N passed, M failed" and exits 0 / 1
set -u
BIN=${DIFFTUNE:?DIFFTUNE must point at the difftune binary}
command -v jq >/dev/null || { echo "jq is required (deploy/install-deps.sh installs it)" >&2; exit 1; }
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit $?
}
