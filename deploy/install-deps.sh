#!/usr/bin/env bash
# install-deps.sh — installs every Debian 12 package difftune's build and tests need, then the
# two npm packages of the web UI (package.json: uplot, the chart library the server serves, and
# playwright-core, which drives Debian's chromium in the end-to-end UI test).
# Idempotent: packages already present are left alone, apt is not touched when nothing is
# missing, and npm runs only when package-lock.json changed. Run as root (or through sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config   # toolchain
  libopenblas-openmp-dev liblapacke-dev  # CPU backend: sgemm (OpenMP build) and LAPACK for FID
  libjansson-dev                     # JSON: job specs, events, safetensors headers
  libstb-dev                         # image decoding, resizing and PNG writing
  libssl-dev                         # SHA-256 (knowledge-bank keys, checkpoint digests)
  libsqlite3-dev                     # the job server's store (WAL, STRICT tables: 3.37 or newer)
  libmicrohttpd-dev                  # the HTTP server (API, SSE streams, downloads)
  libuv1-dev                         # scheduler, worker supervisor, timers, signals
  libarchive-dev                     # dataset uploads: tar and zip archives
  libcurl4-openssl-dev               # job webhooks: the server's HTTP client (POSTs to receivers)
  clang libclang-rt-dev libomp-dev   # fuzz targets (fuzz/, tests/test_fuzz.sh): libFuzzer and the sanitizers, OpenMP for clang
  python3 python3-numpy              # independent reference implementations used by tests
  curl jq                            # HTTP client and JSON tool of the API tests and the walkthrough
  wrk                                # HTTP load generator of the server benchmark
  nodejs                             # runs npm and the end-to-end UI test
  chromium fonts-dejavu-core         # the headless browser of the UI test, and a font for its screenshots
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm ships inside some nodejs builds (NodeSource); Debian packages it apart.
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi

# The web UI's npm packages, pinned by package-lock.json, into node_modules/ (not committed).
cd "$(dirname "$0")/.."
if ! cmp -s package-lock.json node_modules/.difftune-lock 2>/dev/null; then
  echo "install-deps: npm ci (uplot, playwright-core)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.difftune-lock
else
  echo "install-deps: npm packages present"
fi
