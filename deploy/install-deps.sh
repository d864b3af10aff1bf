#!/usr/bin/env bash
# install-deps.sh — installs every Debian 12 package difftune's build and tests need.
# Idempotent: packages already present are left alone, and apt is not touched when nothing is
# missing. Run as root (or through sudo).
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
  python3 python3-numpy              # independent reference implementations used by tests
  curl jq                            # HTTP client and JSON tool of the API tests and the walkthrough
  wrk                                # HTTP load generator of the server benchmark
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi
