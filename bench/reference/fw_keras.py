"""Keras 3 on its JAX or TensorFlow backend (KERAS_BACKEND is set before the import).

The training steps are `keras.Sequential` models compiled with `SGD(0.01)` and
`categorical_crossentropy` (softmax output layer, as keras-rs's workload), one
`model.train_on_batch(x, y)` per call with the batch as host NumPy arrays; it returns the loss
to the host. `jit_compile` is Keras's default ("auto": XLA on the JAX backend; on TensorFlow,
no XLA on a CPU-only machine, a `tf.function` graph); the row's `notes` says which ran.

`conv2d` is `keras.ops.conv` (kernel always HWIO in Keras 3, so the `th` OIHW kernel is
transposed inside the function; `th` data is `channels_first`) compiled by the backend
(`jax.jit` / `tf.function`); its backward pass uses the backend's autodiff (`jax.grad` /
`tf.GradientTape`). The other kernel workloads are the plain JAX / TensorFlow rows: no row."""

import os

import numpy as np

import keras

import common

NOTES = {}
_backend = keras.backend.backend()


def setup(framework, threads):
    want = {"keras-jax": "jax", "keras-tf": "tensorflow"}[framework]
    if _backend != want:
        raise ImportError(f"keras imported with backend {_backend}, not {want}")
    if _backend == "tensorflow" and threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def info(threads):
    if _backend == "jax":
        import jax

        backend, library = "keras3-jax", f"keras {keras.__version__} jax {jax.__version__}"
        device = f"cpu (XLA_FLAGS={os.environ.get('XLA_FLAGS', '')})"
    else:
        import tensorflow as tf

        backend, library = "keras3-tf", f"keras {keras.__version__} tensorflow {tf.__version__}"
        device = f"cpu (TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')})"
    return {"backend": backend, "library": library, "device": device, "threads": threads}


def compiled(f):
    if _backend == "jax":
        import jax

        jitted = jax.jit(f)
        return lambda *args: jax.block_until_ready(jitted(*args))
    import tensorflow as tf

    return tf.function(f, jit_compile=False)


def conv_call(workload, ordering, rng):
    batch, rows, cols, cin, cout, k = common.conv_shape(workload)
    if ordering == "tf":
        x_shape, k_shape, fmt = (batch, rows, cols, cin), (k, k, cin, cout), "channels_last"
    else:
        x_shape, k_shape, fmt = (batch, cin, rows, cols), (cout, cin, k, k), "channels_first"
    x = keras.ops.convert_to_tensor(common.uniform(rng, x_shape, 1.0))
    kernel = keras.ops.convert_to_tensor(
        common.uniform(rng, k_shape, common.glorot_limit(cin * k * k, cout * k * k))
    )

    def conv(x, kernel):
        if ordering == "th":
            kernel = keras.ops.transpose(kernel, (2, 3, 1, 0))
        return keras.ops.conv(x, kernel, strides=1, padding="same", data_format=fmt)

    if not common.conv_backward(workload):
        f = compiled(conv)
    elif _backend == "jax":
        import jax

        f = compiled(jax.grad(lambda x, kernel: keras.ops.sum(conv(x, kernel)), argnums=(0, 1)))
    else:
        import tensorflow as tf

        def grads(x, kernel):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                s = keras.ops.sum(conv(x, kernel))
            return tape.gradient(s, [x, kernel])

        f = compiled(grads)
    return lambda: f(x, kernel)


def model_call(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=common.LEARNING_RATE),
                  loss="categorical_crossentropy")

    def call():
        return float(model.train_on_batch(x, y))

    call()  # builds the train function, so that jit_compile is resolved for the notes
    NOTES[model.name] = f"train_on_batch, jit_compile={model.jit_compile}"
    return call


def prepare(workload, ordering):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    layers = keras.layers
    if workload.startswith("conv2d-"):
        return conv_call(workload, ordering, rng)
    if workload == "mlp-train-step":
        model = keras.Sequential(
            [
                keras.Input((784,), batch_size=common.TRAIN_BATCH),
                layers.Dense(512, activation="relu"),
                layers.Dense(512, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ],
            name="mlp-train-step",
        )
        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 784))
        return model_call(model, x, y)
    if workload == "cnn-train-step":
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1), batch_size=common.TRAIN_BATCH),
                layers.Conv2D(32, 3, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, activation="relu"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dense(10, activation="softmax"),
            ],
            name="cnn-train-step",
        )
        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 28, 28, 1))
        return model_call(model, x, y)
    return None
