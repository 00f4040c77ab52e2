#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on the GPU machine, which has no Rust toolchain:
# release keras-cli and the cuda plugin, copied into target/gpu-bundle (carry that folder with
# the device call). The PTX is compiled there, at first use, by that machine's NVRTC.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p keras-cli -p backend-cuda-plugin
bundle=target/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle"
cp target/release/keras-cli target/release/libkeras_backend_cuda.so "$bundle/"
# Without their line tables the two fit the device call's 64 MiB carry limit (about 16 MiB
# instead of 150).
strip "$bundle/keras-cli" "$bundle/libkeras_backend_cuda.so"
du -sh "$bundle"
