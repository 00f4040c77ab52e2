"""TensorFlow 2: every workload a `tf.function(jit_compile=False)` (graph mode, Grappler, the oneDNN
kernels TensorFlow uses by default on x86) called on tensors already on the device; the result
is returned as a tensor and not copied to the host. The training steps take the host batch as
NumPy arrays, apply SGD to `tf.Variable`s and return the loss to the host (`.numpy()`).
`conv2d` `th` runs TensorFlow's NCHW data format if this build's CPU kernels take it, else
(as Keras 1's TensorFlow backend did) transposes to NHWC and back inside the function; the
OIHW kernel is transposed to HWIO inside the function either way."""

import os

import numpy as np
import tensorflow as tf

import common

NOTES = {}


def setup(framework, threads):
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def info(threads):
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    return {
        "backend": "tensorflow",
        "library": f"tensorflow {tf.__version__}",
        "device": f"cpu (TF_ENABLE_ONEDNN_OPTS={onednn})",
        "threads": tf.config.threading.get_intra_op_parallelism_threads() or threads,
    }


def function(f, **kwargs):
    return tf.function(f, jit_compile=False, **kwargs)


def nchw_native():
    """Whether this build runs a NCHW conv2d on the CPU (the oneDNN kernels do)."""
    x = tf.random.uniform((1, 2, 5, 5))
    k = tf.random.uniform((3, 3, 2, 2))
    try:
        y = function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME", data_format="NCHW"))(x, k)
        ref = tf.transpose(tf.nn.conv2d(tf.transpose(x, (0, 2, 3, 1)), k, 1, "SAME"), (0, 3, 1, 2))
        return bool(np.allclose(y.numpy(), ref.numpy(), atol=1e-5))
    except (tf.errors.OpError, ValueError):
        return False


def conv_fn(ordering):
    if ordering == "tf":
        return lambda x, k: tf.nn.conv2d(x, k, 1, "SAME", data_format="NHWC")
    if nchw_native():
        NOTES["conv2d-th"] = "NCHW native"
        return lambda x, k: tf.nn.conv2d(x, tf.transpose(k, (2, 3, 1, 0)), 1, "SAME", data_format="NCHW")
    NOTES["conv2d-th"] = "NCHW via transposes to NHWC"

    def conv(x, k):
        y = tf.nn.conv2d(tf.transpose(x, (0, 2, 3, 1)), tf.transpose(k, (2, 3, 1, 0)), 1, "SAME")
        return tf.transpose(y, (0, 3, 1, 2))

    return conv


def glorot(rng, shape, fan_in, fan_out):
    return tf.Variable(common.uniform(rng, shape, common.glorot_limit(fan_in, fan_out)))


def train_call(forward, params, x, y):
    @function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = forward(x)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, params)
        for p, g in zip(params, grads):
            p.assign_sub(common.LEARNING_RATE * g)
        return loss

    return lambda: float(step(x, y).numpy())  # x, y: host NumPy arrays, fed each call


def prepare(workload, ordering):
    rng = np.random.default_rng(0)
    if workload.startswith("matmul-"):
        a, b = (tf.constant(v) for v in common.matmul_operands(rng, workload))
        f = function(tf.linalg.matmul)
        return lambda: f(a, b)
    if workload.startswith("conv2d-"):
        x, kernel = (tf.constant(v) for v in common.conv_operands(rng, ordering, workload))
        conv = conv_fn(ordering)
        if not common.conv_backward(workload):
            f = function(conv)
        else:

            @function
            def f(x, kernel):
                with tf.GradientTape() as tape:
                    tape.watch([x, kernel])
                    s = tf.reduce_sum(conv(x, kernel))
                return tape.gradient(s, [x, kernel])

        return lambda: f(x, kernel)
    if workload == "mlp-train-step":
        sizes = [(784, 512), (512, 512), (512, 10)]
        layers = [(glorot(rng, s, *s), tf.Variable(tf.zeros(s[1]))) for s in sizes]
        params = [v for layer in layers for v in layer]

        def forward(x):
            h = x
            for i, (w, b) in enumerate(layers):
                h = tf.matmul(h, w) + b
                if i < len(layers) - 1:
                    h = tf.nn.relu(h)
            return h

        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 784))
        return train_call(forward, params, x, y)
    if workload == "cnn-train-step":
        layers = [
            (glorot(rng, (3, 3, 1, 32), 9, 32 * 9), tf.Variable(tf.zeros(32))),
            (glorot(rng, (3, 3, 32, 64), 32 * 9, 64 * 9), tf.Variable(tf.zeros(64))),
            (glorot(rng, (1600, 10), 1600, 10), tf.Variable(tf.zeros(10))),
        ]
        params = [v for layer in layers for v in layer]

        def forward(x):
            h = x
            for w, b in layers[:2]:
                h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(h, w, 1, "VALID"), b))
                h = tf.nn.max_pool2d(h, 2, 2, "VALID")
            w, b = layers[2]
            return tf.matmul(tf.reshape(h, (h.shape[0], -1)), w) + b

        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 28, 28, 1))
        return train_call(forward, params, x, y)
    if workload == "exp-16m":
        x = tf.constant(common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0))
        f = function(tf.exp)
        return lambda: f(x)
    if workload == "fma-16m":
        a, b, c = (tf.constant(common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0)) for _ in range(3))
        f = function(lambda a, b, c: a * b + c)
        return lambda: f(a, b, c)
    if workload == "dispatch":
        x = tf.constant(common.uniform(rng, (1,), 1.0))

        @function
        def f(x):
            y = x
            for _ in range(common.DISPATCH_OPS // 2):
                y = y + x
                y = -y
            return y

        return lambda: f(x)
    return None
