#!/usr/bin/env bash
# Installs the reference frameworks of bench/compare.sh (NumPy, JAX, TensorFlow, Keras 3) into
# bench/.venv from PyPI, at the versions pinned in bench/reference/requirements.txt.
#
# Idempotent: the virtual environment is created only if missing, and pip runs only when
# requirements.txt changed since the last successful install (a stamp in the venv records its
# hash) or when --force is given. Prints what it did and the installed versions.
#
#   bench/reference/setup.sh [--force]
#
# Environment: PYTHON (default python3; 3.11 is what the pins were resolved for),
#              BENCH_VENV (default bench/.venv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(dirname "$here")"
venv="${BENCH_VENV:-$bench/.venv}"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

if [[ -x "$venv/bin/python" ]]; then
    echo "setup: virtual environment $venv exists ($("$venv/bin/python" --version))"
else
    echo "setup: creating virtual environment $venv with $python ($("$python" --version))"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ $force == 0 && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup: requirements.txt unchanged since the last install, nothing to install"
else
    echo "setup: installing $requirements (downloads about 400 MB the first time)"
    log="$(mktemp)"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -r "$requirements" > "$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup: pip install failed" >&2
        exit 1
    fi
    grep -E '^(Successfully installed|WARNING|ERROR)' "$log" || echo "setup: every pinned package was already installed"
    rm -f "$log"
    "$venv/bin/python" -m pip check
    echo "$want" > "$stamp"
fi

echo "setup: installed versions:"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ["numpy", "threadpoolctl", "jax", "jaxlib", "tensorflow-cpu", "keras", "ml_dtypes"]:
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} not installed")
PY
echo "setup: done; run bench/compare.sh"
