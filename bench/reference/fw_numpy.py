"""NumPy: matmul into a preallocated output (OpenBLAS sgemm), exp and fma as ufuncs into
preallocated outputs, dispatch as 1000 ufunc calls on shape (1,) arrays. No convolution or
training step: those print no row."""

import os

import numpy as np
import threadpoolctl

import common

_state = {}


def setup(framework, threads):
    if threads is not None:
        # OPENBLAS_NUM_THREADS was set before the import; this makes sure.
        _state["limits"] = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def _blas():
    for pool in threadpoolctl.threadpool_info():
        if pool.get("user_api") == "blas":
            return pool
    return {}


def info(threads):
    blas = _blas()
    arch = blas.get("architecture", "?")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    device = f"cpu, {blas.get('internal_api', 'blas')} {blas.get('version', '?')} {arch}"
    device += f" (OPENBLAS_CORETYPE={coretype})" if coretype else " (OPENBLAS_CORETYPE unset)"
    return {
        "backend": "numpy",
        "library": f"numpy {np.__version__}",
        "device": device,
        "threads": blas.get("num_threads", threads),
        "architecture": arch,
    }


def prepare(workload, ordering):
    rng = np.random.default_rng(0)
    if workload.startswith("matmul-"):
        a, b = common.matmul_operands(rng, workload)
        c = np.empty_like(a)
        return lambda: np.matmul(a, b, out=c)
    if workload == "exp-16m":
        x = common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0)
        y = np.empty_like(x)
        return lambda: np.exp(x, out=y)
    if workload == "fma-16m":
        a, b, c = (common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0) for _ in range(3))
        t = np.empty_like(a)

        def fma():
            np.multiply(a, b, out=t)
            np.add(t, c, out=t)

        return fma
    if workload == "dispatch":
        x = common.uniform(rng, (1,), 1.0)
        y = x.copy()  # y <- -(y + x) twice is y again: the values stay bounded
        add, negative = np.add, np.negative
        pairs = range(common.DISPATCH_OPS // 2)

        def dispatch():
            for _ in pairs:
                add(y, x, out=y)
                negative(y, out=y)

        return dispatch
    return None
