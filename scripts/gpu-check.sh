#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (issue "backend-cuda"). That machine has no Rust
# toolchain and no network: build here with scripts/gpu-bundle.sh and carry target/gpu-bundle.
#
#   run (device tool), carry ["target/gpu-bundle"], timeout 480:
#     bash scripts/gpu-check.sh
#
# It runs, each step time-boxed (45 + 75 + 75 + 80 + 70 s at most) so the whole fits in 6 minutes:
#   1. `keras-cli backend` on cuda (the device, the libraries found);
#   2. the conformance suite with its gradient checks on cuda, once with cuDNN convolution
#      (KERAS_CUDA_CONV=cudnn) and once with the backend's own kernels (KERAS_CUDA_CONV=own);
#   3. timings on cuda (matmul 4096³ and 8192³, conv2d forward/backward at the benchmark shape
#      and a larger one, the MLP and CNN training steps) and the same in PyTorch on the same GPU;
#   4. one table of times and ratios (printed last).
# Everything it prints is also under $OUT (or target/gpu-check when OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-$PWD/target/gpu-check}"
mkdir -p "$out"
log="$out/gpu-check.log"
exec > >(tee -a "$log") 2>&1

bundle="${GPU_BUNDLE:-$PWD/target/gpu-bundle}"
cli="$bundle/keras-cli"
if [ ! -x "$cli" ] || [ ! -e "$bundle/libkeras_backend_cuda.so" ]; then
    echo "gpu-check: $bundle lacks keras-cli or libkeras_backend_cuda.so; build it with scripts/gpu-bundle.sh" >&2
    exit 2
fi

# CUDA libraries: the driver's libcuda is on the loader path already; NVRTC, cuBLAS and cuDNN
# come from the CUDA toolkit when it is installed, else from the nvidia-* wheels that PyTorch
# ships with (their lib folders are added to the loader path).
lib_dirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/nvidia/lib64; do
    [ -d "$d" ] && lib_dirs+=("$d")
done
wheel_root="$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)"
if [ -n "$wheel_root" ] && [ -d "$wheel_root" ]; then
    while IFS= read -r d; do lib_dirs+=("$d"); done < <(find "$wheel_root" -maxdepth 3 -type d -name lib | sort)
fi
joined="$(IFS=:; echo "${lib_dirs[*]}")"
export LD_LIBRARY_PATH="$joined${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KERAS_HOME="$out/keras-home"
export KERAS_BACKEND=cuda
mkdir -p "$KERAS_HOME"
echo "== loader path: $LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 | head -3

step() { # name, seconds, command...
    local name="$1" seconds="$2"
    shift 2
    echo
    echo "== $name (limit ${seconds}s)"
    local start=$SECONDS
    timeout "$seconds" "$@"
    local rc=$?
    echo "== $name: exit $rc in $((SECONDS - start))s"
    return $rc
}

step "backend" 45 "$cli" backend || { echo "gpu-check: the cuda backend does not start; nothing else can run"; exit 1; }

cases=tests/conformance/keras1
KERAS_CUDA_CONV=cudnn step "conformance (cuDNN convolution)" 75 \
    "$cli" conformance --backend cuda --cases "$cases" --json > "$out/conformance-cudnn.jsonl"
KERAS_CUDA_CONV=own step "conformance (own convolution kernels)" 75 \
    "$cli" conformance --backend cuda --cases "$cases" --json > "$out/conformance-own.jsonl"
# The closing line of each run, then its failures (names and first mismatches).
for path in cudnn own; do
    python3 - "$out/conformance-$path.jsonl" "$path" <<'PY' || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
summary = next((r["summary"] for r in rows if "summary" in r), None)
print(f"conformance on cuda ({sys.argv[2]} convolution): " + (summary["line"] if summary else "no summary (the run stopped early)"))
for r in [r for r in rows if r.get("status") == "fail"][:60]:
    print("   FAIL", r["name"], (r.get("reason") or "")[:160], json.dumps(r.get("mismatches"))[:200])
PY
done

workloads=matmul-4096,matmul-8192,conv2d-fwd,conv2d-bwd,conv2d-fwd-large,conv2d-bwd-large,mlp-train-step,cnn-train-step
step "bench cuda" 80 "$cli" bench --backend cuda --json --workload "$workloads" > "$out/bench-cuda.jsonl"
step "bench torch" 70 python3 bench/reference/bench.py --framework torch --json --workload "$workloads" \
    > "$out/bench-torch.jsonl"

echo
echo "== cuda vs PyTorch (same GPU; ratio = PyTorch time / cuda time, above 1 means cuda is faster)"
python3 bench/reference/table.py ratio "$out/bench-cuda.jsonl" "$out/bench-torch.jsonl" | tee "$out/table.txt"
