#!/usr/bin/env bash
# Runs `keras-cli bench` (every backend found: cpu, blas) and the reference frameworks (NumPy
# twice, JAX, TensorFlow, Keras 3 on JAX and on TensorFlow) on the same workloads, pinned to the
# same cores, and prints a Markdown table of the medians and of ours-vs-best-reference ratios.
#
#   bench/compare.sh [--threads "1 2"] [--rounds N] [--quick] [--workload NAME[,NAME...]]
#                    [--frameworks "LIST"]
#
#   --threads LIST     thread counts to run, each on cores 0..N-1 (taskset). Default "1 2".
#   --rounds N         run everything N times, one side after another each round, and show each
#                      side's best median of the N (default 1). On a shared machine the load
#                      drifts within minutes; rounds keep one side's quiet minute from deciding
#                      a ratio.
#   --quick            1 warm-up call and 3 timed calls per workload instead of the default policy
#                      (2 warm-ups, >= 5 timed calls, more until 1 s, <= 200).
#   --workload NAMES   only these workloads (comma-separated). Default: all.
#   --frameworks LIST  references to run, of: numpy jax tensorflow keras-jax keras-tf.
#                      Default: all of them.
#
# Environment: KERAS_CLI  a keras-cli binary to use instead of building target/release/keras-cli
#                         (the blas plugin is looked for in the binary's folder);
#              BENCH_VENV the references' virtual environment (default bench/.venv, made by
#                         bench/reference/setup.sh); a framework it lacks gets "-" columns.
#
# Writes bench/results/compare-<UTC date-time>.jsonl (every row, ours and the references, each
# with `tag` (its column) and `pinned_threads`) and bench/results/compare-<date-time>.md (the
# table as printed).
#
# NumPy runs twice: with OPENBLAS_CORETYPE as the environment has it (Haswell when unset), and
# with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE both unset, in that one command only, so OpenBLAS
# picks its kernels for the CPU (SkylakeX, AVX-512, on the development machines). The kernel that
# ran is in each NumPy row (`architecture`, from threadpoolctl).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
threads_list="1 2"
rounds=1
quick=0
workload=""
frameworks="numpy jax tensorflow keras-jax keras-tf"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --threads) threads_list="$2"; shift 2 ;;
        --threads=*) threads_list="${1#*=}"; shift ;;
        --rounds) rounds="$2"; shift 2 ;;
        --rounds=*) rounds="${1#*=}"; shift ;;
        --quick) quick=1; shift ;;
        --workload) workload="$2"; shift 2 ;;
        --workload=*) workload="${1#*=}"; shift ;;
        --frameworks) frameworks="$2"; shift 2 ;;
        --frameworks=*) frameworks="${1#*=}"; shift ;;
        -h|--help) sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "compare.sh: --rounds takes a whole number >= 1, got '$rounds'" >&2
    exit 2
fi

cd "$root"
mkdir -p bench/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
jsonl="bench/results/compare-$stamp.jsonl"
md="bench/results/compare-$stamp.md"
notes="$(mktemp)"
errlog="$(mktemp)"
trap 'rm -f "$notes" "$errlog"' EXIT
: > "$jsonl"

note() {
    echo "compare: $*" >&2
    echo "$*" >> "$notes"
}
annotate() { python3 bench/reference/table.py annotate "$@"; }

if [[ $quick == 1 ]]; then
    ours_timing=(--warmup 1 --repeats 3)
    ref_timing=(--warmup 1 --repeats 3)
else
    ours_timing=()
    ref_timing=()
fi
ours_workload=()
ref_workload=()
if [[ -n $workload ]]; then
    ours_workload=(--workload "$workload")
    ref_workload=(--workload "$workload")
fi

# The environment's OpenBLAS kernel choice applies to every run but the "unset" NumPy one. Where
# it is not set, Haswell (AVX2) is set, so that the two NumPy columns are the two kernels.
if [[ -z ${OPENBLAS_CORETYPE:-} ]]; then
    export OPENBLAS_CORETYPE=Haswell
    note "OPENBLAS_CORETYPE was not set in the environment; set to Haswell for every run but the NumPy 'unset' one"
fi

# Ours.
cli="${KERAS_CLI:-}"
if [[ -z $cli ]]; then
    echo "compare: building keras-cli and the blas plugin in release (log: bench/results/.build.log)" >&2
    if cargo build --release -p keras-cli -p backend-blas > bench/results/.build.log 2>&1; then
        cli="$root/target/release/keras-cli"
    else
        tail -5 bench/results/.build.log >&2
        note "cargo build --release failed (bench/results/.build.log): ours not run"
    fi
fi
if [[ -n $cli && ! -x $cli ]]; then
    note "KERAS_CLI=$cli is not an executable: ours not run"
    cli=""
fi

venv="${BENCH_VENV:-$root/bench/.venv}"
py="$venv/bin/python"
if [[ ! -x $py ]]; then
    note "no reference environment at $venv (run bench/reference/setup.sh): reference columns are '-'"
    py=""
fi

ncores="$(nproc)"
read -r load1 _ < /proc/loadavg
echo "compare: load average $load1 on $ncores cores before the runs" >&2

started=$SECONDS
loads=()
for round in $(seq 1 "$rounds"); do
    round_label=""
    (( rounds > 1 )) && round_label=" (round $round)"
    for n in $threads_list; do
        if (( n > ncores )); then
            note "threads $n: more than the $ncores cores here; not run"
            continue
        fi
        cores="$(seq -s, 0 $((n - 1)))"
        pin=(taskset -c "$cores")

        if [[ -n $cli ]]; then
            read -r load1 _ < /proc/loadavg
            echo "compare: [threads $n, cores $cores] keras-cli bench --backend all (load average $load1)" >&2
            loads+=("ours/$n${round_label}: $load1")
            "${pin[@]}" "$cli" bench --backend all --threads "$n" --json "${ours_timing[@]}" "${ours_workload[@]}" \
                2> "$errlog" | annotate "pinned_threads=$n" "round=$round" >> "$jsonl"
            status=${PIPESTATUS[0]}
            while IFS= read -r line; do [[ -n $line ]] && note "ours, threads $n: $line"; done < "$errlog"
            (( status != 0 )) && note "ours, threads $n: keras-cli bench exited with $status"
        fi

        [[ -z $py ]] && continue
        for fw in $frameworks; do
            runs=("$fw")
            [[ $fw == numpy ]] && runs=(numpy-env numpy-unset)
            for run in "${runs[@]}"; do
                framework="$fw"
                tag="$run"
                envcmd=(env)
                case "$run" in
                    numpy-unset) envcmd=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) ;;
                    keras-jax) tag=keras3-jax ;;
                    keras-tf) tag=keras3-tf ;;
                esac
                read -r load1 _ < /proc/loadavg
                echo "compare: [threads $n, cores $cores] $run (load average $load1)" >&2
                loads+=("$run/$n${round_label}: $load1")
                t0=$SECONDS
                "${envcmd[@]}" "${pin[@]}" "$py" bench/reference/bench.py --framework "$framework" --threads "$n" \
                    --json --tag "$tag" "${ref_timing[@]}" "${ref_workload[@]}" 2> "$errlog" \
                    | annotate "pinned_threads=$n" "round=$round" >> "$jsonl"
                status=${PIPESTATUS[0]}
                case $status in
                    0) ;;
                    3) note "$run: not installed in $venv (run bench/reference/setup.sh): its column is '-'
$(grep -m1 'not installed' "$errlog")" ;;
                    *) note "$run, threads $n: exited with $status; its last messages:"
                       grep -v -E '^(WARNING: All log|I0000|W0000|E0000)' "$errlog" | tail -3 | while IFS= read -r line; do note "  $line"; done ;;
                esac
                grep -E ': (prepare|run) failed' "$errlog" | while IFS= read -r line; do note "$line"; done
                echo "compare:   $((SECONDS - t0)) s" >&2
            done
        done
    done
done
echo "compare: all runs took $((SECONDS - started)) s" >&2
if (( ${#loads[@]} > 0 )); then
    joined="$(printf '%s, ' "${loads[@]}")"
    note "1-minute load average when each run started (on $ncores cores; above ~0.5 other work competed): ${joined%, }"
fi

title="keras-cli bench vs references, $(date -u +'%Y-%m-%d %H:%M UTC'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $ncores cores"
[[ $quick == 1 ]] && title="$title (--quick)"
(( rounds > 1 )) && title="$title, best of $rounds rounds"
python3 bench/reference/table.py render "$jsonl" --notes "$notes" --md "$md" --title "$title"
echo "compare: rows in $jsonl, table in $md" >&2
