"""JAX (XLA:CPU): every workload a `jax.jit`-compiled function of device arrays whose result stays
on the device (the timed call ends with `block_until_ready`); the training steps take the host
batch as NumPy arrays, donate the parameters and return the loss to the host (`float`).
`dispatch` runs eagerly, op by op (1000 dispatched `jnp` ops on a (1,) array): under `jax.jit`
XLA would fuse the chain into one kernel and nothing of the per-op cost would remain."""

import os

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax

import common

NOTES = {"dispatch": "eager op-by-op dispatch (jit would fuse the chain)"}

CONV_DIMS = {"tf": ("NHWC", "HWIO", "NHWC"), "th": ("NCHW", "OIHW", "NCHW")}


def setup(framework, threads):
    jax.config.update("jax_platforms", "cpu")


def info(threads):
    dev = jax.devices()[0]
    return {
        "backend": "jax",
        "library": f"jax {jax.__version__} jaxlib {jaxlib.__version__}",
        "device": f"cpu ({dev.platform}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')})",
        "threads": threads,
    }


def glorot(rng, shape, fan_in, fan_out):
    return jnp.asarray(common.uniform(rng, shape, common.glorot_limit(fan_in, fan_out)))


def cross_entropy(logits, y):
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))


def train_step(loss_fn):
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        params = jax.tree_util.tree_map(lambda p, g: p - common.LEARNING_RATE * g, params, grads)
        return params, loss

    return jax.jit(step, donate_argnums=0)


def run_steps(step, params, x, y):
    state = {"params": params}

    def call():
        state["params"], loss = step(state["params"], x, y)
        return float(loss)  # the loss back on the host: waits for the step

    return call


def prepare(workload, ordering):
    rng = np.random.default_rng(0)
    if workload.startswith("matmul-"):
        a, b = (jnp.asarray(v) for v in common.matmul_operands(rng, workload))
        f = jax.jit(jnp.matmul)
        return lambda: f(a, b).block_until_ready()
    if workload.startswith("conv2d-"):
        x, kernel = (jnp.asarray(v) for v in common.conv_operands(rng, ordering, workload))

        def conv(x, kernel):
            return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=CONV_DIMS[ordering])

        if not common.conv_backward(workload):
            f = jax.jit(conv)
        else:
            f = jax.jit(jax.grad(lambda x, kernel: jnp.sum(conv(x, kernel)), argnums=(0, 1)))
        return lambda: jax.block_until_ready(f(x, kernel))
    if workload == "mlp-train-step":
        sizes = [(784, 512), (512, 512), (512, 10)]
        params = [(glorot(rng, s, *s), jnp.zeros(s[1], jnp.float32)) for s in sizes]

        def loss_fn(params, x, y):
            h = x
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = jax.nn.relu(h)
            return cross_entropy(h, y)

        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 784))
        return run_steps(train_step(loss_fn), params, x, y)
    if workload == "cnn-train-step":
        params = [
            (glorot(rng, (3, 3, 1, 32), 9, 32 * 9), jnp.zeros(32, jnp.float32)),
            (glorot(rng, (3, 3, 32, 64), 32 * 9, 64 * 9), jnp.zeros(64, jnp.float32)),
            (glorot(rng, (1600, 10), 1600, 10), jnp.zeros(10, jnp.float32)),
        ]

        def loss_fn(params, x, y):
            h = x
            for w, b in params[:2]:
                h = lax.conv_general_dilated(h, w, (1, 1), "VALID", dimension_numbers=CONV_DIMS["tf"]) + b
                h = jax.nn.relu(h)
                h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            w, b = params[2]
            return cross_entropy(h.reshape(h.shape[0], -1) @ w + b, y)

        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 28, 28, 1))
        return run_steps(train_step(loss_fn), params, x, y)
    if workload == "exp-16m":
        x = jnp.asarray(common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0))
        f = jax.jit(jnp.exp)
        return lambda: f(x).block_until_ready()
    if workload == "fma-16m":
        a, b, c = (jnp.asarray(common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0)) for _ in range(3))
        f = jax.jit(lambda a, b, c: a * b + c)
        return lambda: f(a, b, c).block_until_ready()
    if workload == "dispatch":
        x = jnp.asarray(common.uniform(rng, (1,), 1.0))
        pairs = range(common.DISPATCH_OPS // 2)

        def dispatch():
            y = x
            for _ in pairs:
                y = y + x
                y = -y
            y.block_until_ready()

        return dispatch
    return None
