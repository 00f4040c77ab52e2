#!/usr/bin/env bash
# NVRTC and ptxas for the CUDA kernel check (crates/backend-cuda/tests/kernel_sources.rs), which
# compiles every kernel source for sm_80 and sm_90 on a machine without a GPU. Both come from
# PyPI wheels (nvidia-cuda-nvrtc, nvidia-cuda-nvcc) pinned to CUDA 13.0, the version of the GPU
# machine's driver, so the PTX checked here is the PTX that machine can load.
#
# Installs them once into target/cuda-tools (a virtual environment), then prints the two
# exports the check needs; use it as `eval "$(scripts/cuda-tools.sh)"`. Prints nothing and
# fails when Python's venv or PyPI is not available.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${KERAS_CUDA_TOOLS:-$PWD/target/cuda-tools}"
venv="$tools/venv"
marker="$tools/installed-13.0"

if [ ! -e "$marker" ]; then
    rm -rf "$venv"
    mkdir -p "$tools"
    python3 -m venv "$venv" >&2
    # --no-deps: the wheels' dependencies (the CUDA runtime, NVVM) are not needed to compile
    # CUDA C to PTX or to assemble PTX.
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-nvcc==13.0.*" >&2
    touch "$marker"
fi

cuda="$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cu13 | head -n 1)"
[ -e "$cuda/lib/libnvrtc.so.13" ] && [ -x "$cuda/bin/ptxas" ] || {
    echo "cuda-tools: $cuda lacks libnvrtc.so.13 or ptxas" >&2
    exit 1
}
echo "export LD_LIBRARY_PATH=\"$cuda/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export KERAS_PTXAS=\"$cuda/bin/ptxas\""
