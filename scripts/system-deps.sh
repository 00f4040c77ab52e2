#!/usr/bin/env bash
# The one system library the build links: OpenBLAS, for the blas backend (crates/backend-blas;
# README "Backends: blas"). openblas-src cannot build its own copy offline, so the system's is
# used. When it is missing, root on Debian/Ubuntu gets libopenblas-dev installed; anyone else is
# told what to install, and the script fails.
set -euo pipefail

have_openblas() {
    [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] && return 0
    pkg-config --exists openblas 2>/dev/null && return 0
    # The unversioned libopenblas.so is the -dev link the linker needs. The cache can outlive a
    # removed package, so the file it names must exist too. Read the whole cache before
    # matching: `ldconfig -p | grep -q` fails under pipefail when grep stops reading early.
    local cache path
    cache="$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)"
    while read -r path; do
        [ -e "$path" ] && return 0
    done < <(awk '$1 == "libopenblas.so" { print $NF }' <<<"$cache")
    # Homebrew's openblas is keg-only; openblas-src finds it through brew itself.
    if command -v brew >/dev/null 2>&1; then
        [ -d "$(brew --prefix openblas 2>/dev/null)/lib" ] && return 0
    fi
    return 1
}

have_openblas && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "OpenBLAS is missing (the blas backend links it): installing libopenblas-dev" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q libopenblas-dev
    exit 0
fi

cat >&2 <<'MSG'
OpenBLAS is missing: the blas backend (crates/backend-blas) links the system library.
Install it (README "Backends: blas"), then run again:
  Debian/Ubuntu: sudo apt-get install libopenblas-dev
  Fedora:        sudo dnf install openblas-devel
  Arch:          sudo pacman -S openblas
  macOS:         brew install openblas libomp pkg-config (and see README "Backends: blas")
MSG
exit 1
