"""What every reference framework shares: the workloads' shapes and work, the timing policy,
the thread pinning and the JSON row, copied from `keras-cli bench`
(crates/keras-cli/src/bench/workloads.rs, measure.rs and bench_cmd.rs).

This module imports nothing but the standard library, so that `set_thread_env` runs before any
framework is imported.
"""

import gc
import json
import os
import statistics
import sys
import time

# Convolution: batch, rows, cols, in and out channels, kernel size (workloads.rs CONV), and the
# GPU-sized shape of the conv2d-*-large workloads (workloads.rs CONV_LARGE).
CONV = (32, 64, 64, 64, 64, 3)
CONV_LARGE = (64, 128, 128, 128, 128, 3)
ELEMENTWISE_LEN = 1 << 24
DISPATCH_OPS = 1000
TRAIN_BATCH = 128
LEARNING_RATE = 0.01

# workloads.rs WORKLOADS, kept in step by hand: same names, same order (but `train-memory`,
# which is ours only). tests/tests/bench.rs checks that both sides list the same cases.
WORKLOADS = [
    "matmul-1024",
    "matmul-2048",
    "matmul-4096",
    "matmul-8192",
    "conv2d-fwd",
    "conv2d-bwd",
    "conv2d-fwd-large",
    "conv2d-bwd-large",
    "mlp-train-step",
    "cnn-train-step",
    "exp-16m",
    "fma-16m",
    "dispatch",
]

# workloads.rs GPU_ONLY: sized for a big GPU, run only when --workload names them.
GPU_ONLY = ["matmul-4096", "matmul-8192", "conv2d-fwd-large", "conv2d-bwd-large"]

# Timing policy of measure.rs: 2 untimed calls, then at least 5 timed calls, more until one
# second is spent timing, never more than 200.
DEFAULT_WARMUP = 2
MIN_REPEATS = 5
TIME_BUDGET_S = 1.0
MAX_REPEATS = 200


def all_cases():
    """(workload, ordering) in run order: convolutions once per ordering, tf first (GPU_ONLY
    workloads included: see runs_by_default)."""
    cases = []
    for workload in WORKLOADS:
        if workload.startswith("conv2d-"):
            cases += [(workload, "tf"), (workload, "th")]
        elif workload == "cnn-train-step":
            cases.append((workload, "tf"))
        else:
            cases.append((workload, None))
    return cases


def runs_by_default(workload):
    """Whether `workload` runs when --workload is not given (all but GPU_ONLY)."""
    return workload not in GPU_ONLY


def conv_shape(workload):
    """The shape of a conv2d workload: CONV_LARGE for conv2d-*-large, else CONV."""
    return CONV_LARGE if workload.endswith("-large") else CONV


def conv_backward(workload):
    """Whether a conv2d workload is the backward pass (conv2d-bwd, conv2d-bwd-large)."""
    return workload.startswith("conv2d-bwd")


def work_of(workload):
    """(work per call, rate unit) as workloads.rs counts them."""
    if workload.startswith("matmul-"):
        n = int(workload.split("-")[1])
        return 2.0 * n**3, "GFLOP/s"
    if workload.startswith("conv2d-"):
        batch, rows, cols, cin, cout, k = conv_shape(workload)
        forward = 2.0 * batch * rows * cols * cout * cin * k * k
        return (2.0 * forward if conv_backward(workload) else forward), "GFLOP/s"
    if workload.endswith("-train-step"):
        return 1.0, "steps/s"
    if workload == "exp-16m":
        return 8.0 * ELEMENTWISE_LEN, "GB/s"
    if workload == "fma-16m":
        return 16.0 * ELEMENTWISE_LEN, "GB/s"
    if workload == "dispatch":
        return float(DISPATCH_OPS), "ns/op"
    raise ValueError(f"unknown workload {workload}")


def rate(unit, work, seconds):
    if unit in ("GFLOP/s", "GB/s"):
        return work / seconds / 1e9
    if unit == "steps/s":
        return work / seconds
    return seconds / work * 1e9  # ns/op


def set_thread_env(threads, framework):
    """Sets the thread variables every library reads when it loads; call before importing it.

    Each library is also told N directly once imported (TensorFlow's intra-op pool, the BLAS
    through threadpoolctl); compare.sh additionally pins the process to N cores with taskset.
    """
    if threads is None:
        return
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    if framework in ("jax", "keras-jax"):
        multi = "false" if threads == 1 else "true"
        flags = f"--xla_cpu_multi_thread_eigen={multi} intra_op_parallelism_threads={threads}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()


def uniform(rng, shape, limit):
    """float32 uniform in [-limit, limit) (the operand policy of workloads.rs; not its values)."""
    import numpy as np

    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def glorot_limit(fan_in, fan_out):
    return (6.0 / (fan_in + fan_out)) ** 0.5


def matmul_operands(rng, workload):
    """The two (n, n) operands of `matmul-n` as host arrays (workloads.rs `matmul`)."""
    n = int(workload.split("-")[1])
    return uniform(rng, (n, n), 1.0), uniform(rng, (n, n), 1.0)


def conv_operands(rng, ordering, workload="conv2d-fwd"):
    """The input and Glorot-uniform kernel of conv2d workload `workload` as host arrays:
    NHWC/HWIO for `tf`, NCHW/OIHW for `th` (workloads.rs `conv2d`)."""
    batch, rows, cols, cin, cout, k = conv_shape(workload)
    if ordering == "tf":
        x_shape, k_shape = (batch, rows, cols, cin), (k, k, cin, cout)
    else:
        x_shape, k_shape = (batch, cin, rows, cols), (cout, cin, k, k)
    x = uniform(rng, x_shape, 1.0)
    kernel = uniform(rng, k_shape, glorot_limit(cin * k * k, cout * k * k))
    return x, kernel


def train_batch(rng, shape, classes=10):
    """A batch of inputs in [0, 1) and one-hot targets, as host (NumPy) arrays."""
    import numpy as np

    x = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    y = np.zeros((TRAIN_BATCH, classes), np.float32)
    y[np.arange(TRAIN_BATCH), np.arange(TRAIN_BATCH) % classes] = 1.0
    return x, y


def reset_peak_rss():
    """Resets the process's VmHWM (Linux >= 4.0) so that each case reports its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_calls(call, warmup, repeats):
    """measure.rs's time_calls: `warmup` untimed calls, then `repeats` timed ones (None: at least
    MIN_REPEATS, more until TIME_BUDGET_S is spent, at most MAX_REPEATS). `call` must return
    only once the work is done (block_until_ready for JAX, torch.cuda.synchronize for PyTorch on
    CUDA, a host float for train steps)."""
    for _ in range(warmup):
        call()
    times = []
    started = time.perf_counter()
    while True:
        if repeats is not None:
            done = len(times) >= repeats
        else:
            done = len(times) >= MAX_REPEATS or (
                len(times) >= MIN_REPEATS and time.perf_counter() - started >= TIME_BUDGET_S
            )
        if done:
            break
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times


def summary(times):
    """Median (mean of the middle two for an even count), min and max, as measure.rs."""
    if not times:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(times), min(times), max(times)


def note(message):
    print(message, file=sys.stderr, flush=True)


def run(framework, module, cases, threads, warmup, repeats, as_json, tag=None):
    """Runs every case `module.prepare` supports and prints one row (JSON or text) each.
    Returns the number of cases that failed."""
    info = module.info(threads)
    failed = 0
    for workload, ordering in cases:
        reset_peak_rss()
        try:
            call = module.prepare(workload, ordering)
        except Exception as error:  # noqa: BLE001 - a failing case is reported, not fatal
            failed += 1
            note(f"{framework} {workload}:{ordering}: prepare failed: {type(error).__name__}: {error}")
            continue
        if call is None:
            continue  # the framework has no such workload: no row
        try:
            times = time_calls(call, warmup, repeats)
        except Exception as error:  # noqa: BLE001
            failed += 1
            note(f"{framework} {workload}:{ordering}: run failed: {type(error).__name__}: {error}")
            continue
        finally:
            del call
        median_s, min_s, max_s = summary(times)
        work, unit = work_of(workload)
        row = {
            "workload": workload,
            "ordering": ordering,
            "backend": info["backend"],
            "library": info["library"],
            "device": info["device"],
            "threads": info["threads"],
            "warmup": warmup,
            "repeats": len(times),
            "median_s": median_s,
            "min_s": min_s,
            "max_s": max_s,
            "rate": rate(unit, work, median_s),
            "rate_unit": unit,
            "work_per_call": work,
            "peak_rss_bytes": peak_rss_bytes(),
        }
        notes = getattr(module, "NOTES", {})
        keys = (workload, f"{workload}:{ordering}", f"{workload.split('-')[0]}-{ordering}")
        found = [info.get("notes")] + [notes.get(k) for k in keys]
        if any(found):
            row["notes"] = "; ".join(dict.fromkeys(n for n in found if n))
        for key in ("architecture",):
            if key in info:
                row[key] = info[key]
        if tag is not None:
            row["tag"] = tag
        if as_json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{row['backend']:<12} {workload:<15} {ordering or '-':<3} {row['threads'] or '-':>2}  "
                f"median {median_s * 1e3:10.4f} ms  min {min_s * 1e3:10.4f} ms  "
                f"{row['rate']:10.2f} {unit:<8} n={len(times)}",
                flush=True,
            )
        gc.collect()
    return failed
