#!/usr/bin/env bash
# test_web_ui.sh — the web UI end to end: a real `difftune serve` on loopback, driven by Debian's
# chromium through playwright-core (tests/e2e/web_ui.mjs). Before the browser starts, curl checks
# how the UI's files are served (content types, ETag revalidation, the JSON index for API
# clients, unknown and escaping paths). Screenshots of every page at a desktop and a phone width
# are left in $DIFFTUNE_TEST_TMP/web_ui/screenshots.
source "$(dirname "$0")/server_util.sh"
SRC=${DIFFTUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
TMP=${DIFFTUNE_TEST_TMP:-/tmp/difftune-test}/web_ui
rm -rf "$TMP" && mkdir -p "$TMP/screenshots"

# What the browser test needs is installed by deploy/install-deps.sh; its absence is a failure.
CHROMIUM=${DIFFTUNE_CHROMIUM:-$(command -v chromium || true)}
command -v node >/dev/null || { echo "node is missing: run deploy/install-deps.sh" >&2; exit 1; }
[ -x "$CHROMIUM" ] || { echo "chromium is missing: run deploy/install-deps.sh" >&2; exit 1; }
[ -f "$SRC/node_modules/playwright-core/package.json" ] ||
  { echo "node_modules/playwright-core is missing: run deploy/install-deps.sh" >&2; exit 1; }

serve_start "$TMP/data" --devices cpu --slots-per-device 2 --cancel-grace 5

# ---- how the files are served -------------------------------------------------------------
http GET / -H 'Accept: text/html,application/xhtml+xml'; expect_status 200 "the page for a browser"
check "the page is HTML" grep -qi '^content-type: text/html; charset=utf-8' "$TMP/headers"
check "the page loads the app module" grep -q 'src="/ui/js/app.js"' "$TMP/body"
check "the root varies by Accept" grep -qi '^vary: accept' "$TMP/headers"
check "the page forbids inline scripts and framing" \
  grep -qi "^content-security-policy: .*script-src 'self'.*frame-ancestors 'none'" "$TMP/headers"
http GET /; expect_status 200 "the index for an API client"
check "an API client still gets the JSON index" [ "$(jb '.ui + " " + .openapi')" = "/ /openapi.json" ]
http GET /ui/js/app.js; expect_status 200 "a module"
check "modules are JavaScript" grep -qi '^content-type: text/javascript; charset=utf-8' "$TMP/headers"
check "files are revalidated on every use" grep -qi '^cache-control: no-cache' "$TMP/headers"
check "files are not sniffed" grep -qi '^x-content-type-options: nosniff' "$TMP/headers"
ETAG=$(sed -n 's/^[Ee][Tt][Aa][Gg]: \(.*\)\r$/\1/p' "$TMP/headers")
check "the ETag is the file's sha256" [ "$ETAG" = "\"$(sha256sum "$SRC/web/js/app.js" | cut -d' ' -f1)\"" ]
http GET /ui/js/app.js -H "If-None-Match: $ETAG"; expect_status 304 "an unchanged module"
http GET /ui/style.css; check "styles are CSS" grep -qi '^content-type: text/css; charset=utf-8' "$TMP/headers"
http GET /ui/vendor/uPlot.esm.js; expect_status 200 "the chart library is served"
CODE=$(curl -sS -I -o /dev/null -w '%{http_code}' "$URL/ui/js/app.js")
check "HEAD of a module ($CODE)" [ "$CODE" = 200 ]
http GET /ui/nope.js; expect_error 404 not_found - "an unknown file"
CODE=$(curl -sS -o /dev/null -w '%{http_code}' --path-as-is "$URL/ui/../../etc/passwd")
check "a path escaping /ui/ is not served ($CODE)" [ "$CODE" = 404 ]
CODE=$(curl -sS -o /dev/null -w '%{http_code}' --path-as-is "$URL/ui/js/../../api/http.h")
check "no file outside web/ is reachable ($CODE)" [ "$CODE" = 404 ]

# ---- the browser -------------------------------------------------------------------------
"$BIN" dataset synth --style solid --classes 3 --per-class 8 --size 8 --out "$TMP/solid" >/dev/null || bad "synth"
tar -C "$TMP" -cf "$TMP/solid.tar" solid
printf 'this is not an archive\n' >"$TMP/broken.tar"

URL="$URL" TMP="$TMP" CHROMIUM="$CHROMIUM" SRC="$SRC" BIN="$BIN" DATA="$TMP/data" node "$SRC/tests/e2e/web_ui.mjs"
check "the browser scenarios pass" [ $? -eq 0 ]

serve_stop; check "the server stops cleanly" [ $? -eq 0 ]
finish
