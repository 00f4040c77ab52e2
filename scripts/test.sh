#!/usr/bin/env bash
# The test command of keras-rs (README "Run the tests"; CI calls it through .ci/run).
#
# Builds every crate once, the plugin libraries and the example plugin included (the loader
# tests load them from target/debug), then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# The blas backend links the system OpenBLAS: install it (as root) or say what to install.
./scripts/system-deps.sh

# NVRTC and ptxas (PyPI wheels, no GPU needed) for the CUDA kernel-source check. Where they
# cannot be installed that check says why it skips; under CI (CI=true) it fails instead.
if cuda_tools="$(./scripts/cuda-tools.sh)"; then
    eval "$cuda_tools"
else
    echo "warning: NVRTC/ptxas could not be installed (scripts/cuda-tools.sh); the CUDA kernel check will skip" >&2
fi

cargo build --workspace --all-targets --examples
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --examples -- -D warnings
# Every public item of the API crates is documented (`missing_docs` in clippy above); here no
# intra-doc link is broken or points at a private item.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p keras-backend-api -p keras -p backend-cpu
cargo test --workspace --no-fail-fast
