#!/usr/bin/env bash
# device-deps.sh — the libraries the engine needs, carried to a machine that cannot install
# packages (a lent GPU machine with CUDA but no package registry).
#
#   deploy/device-deps.sh fetch [DIR]          here, on Debian 12: download the .deb files into DIR
#                                              (default .device-debs, ignored by git)
#   deploy/device-deps.sh unpack [DIR] [PREFIX] there: dpkg -x every .deb into PREFIX (default
#                                              /tmp/difftune-deps) and print the environment to
#                                              eval: LD_LIBRARY_PATH and the CMake flags
#
# Only the engine build is covered (-DDIFFTUNE_SERVER=OFF: kernels, engine, GPU checks and
# benchmarks): jansson, OpenSSL's libcrypto, OpenBLAS (OpenMP build), LAPACKE, stb and the Fortran
# runtime OpenBLAS links against. The compiler, CMake and CUDA come from the machine.
set -euo pipefail

PACKAGES=(
  libjansson4 libjansson-dev
  libssl3 libssl-dev
  libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0
  liblapacke liblapacke-dev libtmglib3
  libstb0 libstb-dev
)

cmd=${1:-}
dir=${2:-.device-debs}
case "$cmd" in
  fetch)
    mkdir -p "$dir"
    # apt's sandbox user cannot write into most folders; download in a scratch folder it owns.
    tmp=$(mktemp -d)
    chmod 777 "$tmp"
    (cd "$tmp" && apt-get download "${PACKAGES[@]}")
    rm -f "$dir"/*.deb
    mv "$tmp"/*.deb "$dir"/
    rmdir "$tmp"
    echo "device-deps: $(ls "$dir"/*.deb | wc -l) packages, $(du -sh "$dir" | cut -f1) in $dir" >&2
    ;;
  unpack)
    prefix=${3:-/tmp/difftune-deps}
    mkdir -p "$prefix"
    for deb in "$dir"/*.deb; do dpkg -x "$deb" "$prefix"; done
    lib=$prefix/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
    # Debian reaches OpenBLAS's BLAS and LAPACK through alternatives links that dpkg -x does not
    # make; the real files sit in openblas-openmp/.
    echo "export LD_LIBRARY_PATH=$lib:$lib/openblas-openmp\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
    echo "export DIFFTUNE_CMAKE_DEPS=\"-DDIFFTUNE_SERVER=OFF -DDIFFTUNE_DEPS_PREFIX=$prefix\""
    ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
