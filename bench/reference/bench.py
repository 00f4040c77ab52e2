#!/usr/bin/env python3
"""Runs the workloads of `keras-cli bench` in a reference framework and prints the same rows.

    bench/.venv/bin/python bench/reference/bench.py --framework numpy|jax|tensorflow|keras-jax|keras-tf|torch
        [--workload NAME[,NAME...]] [--threads N] [--warmup N] [--repeats N] [--json] [--tag TAG]
    bench/reference/bench.py --list [--workload NAME[,NAME...]]

Without --workload every workload runs but the GPU-sized ones (common.GPU_ONLY: matmul-4096,
matmul-8192, conv2d-fwd-large, conv2d-bwd-large), which run only when named, as in
`keras-cli bench`. --list prints the cases that would run (`workload` or `workload:ordering`,
one a line) and exits, importing no framework.

One process runs every case of one framework (peak RSS is reset before each case through
/proc/self/clear_refs, so peak_rss_bytes is that case's peak). Workloads a framework has no
native form of print no row. Exit status: 0, 1 when a case failed, 3 when the framework is not
installed (a note on stderr says so).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402 - standard library only

FRAMEWORKS = {
    "numpy": "fw_numpy",
    "jax": "fw_jax",
    "tensorflow": "fw_tensorflow",
    "keras-jax": "fw_keras",
    "keras-tf": "fw_keras",
    "torch": "fw_torch",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), help="required but with --list")
    parser.add_argument("--workload", action="append", default=[],
                        help="workload name(s), comma-separated or repeated; default all but the "
                             "GPU-sized ones (" + ", ".join(common.GPU_ONLY) + ")")
    parser.add_argument("--list", action="store_true",
                        help="print the cases that would run and exit (no framework is imported)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the framework's pools (default: its own choice)")
    parser.add_argument("--warmup", type=int, default=common.DEFAULT_WARMUP)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls (default: >= 5, more until 1 s, <= 200)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--tag", default=None,
                        help="adds a `tag` field to every row (compare.sh names its columns by it)")
    args = parser.parse_args()

    wanted = [w for arg in args.workload for w in arg.split(",") if w]
    for w in wanted:
        if w not in common.WORKLOADS:
            parser.error(f"unknown workload {w} (one of {', '.join(common.WORKLOADS)})")
    cases = [c for c in common.all_cases() if (c[0] in wanted if wanted else common.runs_by_default(c[0]))]
    if args.list:
        for workload, ordering in cases:
            print(workload if ordering is None else f"{workload}:{ordering}")
        return 0
    if args.framework is None:
        parser.error("the following arguments are required: --framework")

    # Before any framework is imported: thread variables, the Keras backend, quiet TF logs.
    common.set_thread_env(args.threads, args.framework)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keras 3 (imported by TensorFlow too) must not read ~/.keras/keras.json, which is keras-rs's
    # ("backend": "cpu"): give it a home of its own and name its backend.
    os.environ["KERAS_HOME"] = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                            ".venv", "keras-home")
    os.environ["KERAS_BACKEND"] = "jax" if args.framework == "keras-jax" else "tensorflow"

    try:
        module = __import__(FRAMEWORKS[args.framework])
        module.setup(args.framework, args.threads)
    except ImportError as error:
        how = ("install PyTorch into the environment (it is not in requirements.txt)" if args.framework == "torch"
               else "run bench/reference/setup.sh")
        common.note(f"{args.framework}: not installed ({error}); {how}")
        return 3
    failed = common.run(args.framework, module, cases, args.threads, args.warmup, args.repeats, args.json,
                        args.tag)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
