"""PyTorch, eager, on CUDA when `torch.cuda.is_available()`, else on the CPU: the reference for
keras-rs's `cuda` backend.

Operands are created on the device before timing; every timed call ends with
`torch.cuda.synchronize()` on CUDA (PyTorch queues its kernels asynchronously, as our cuda
backend does; ours waits through its fence download, see workloads.rs), so a call is timed
until its kernels are done. Results are fresh tensors of the caching allocator, as ours are
fresh buffers.

FP32 is compared with FP32: TF32 is turned off for cuBLAS matmuls and cuDNN convolutions
(PyTorch allows TF32 in cuDNN convolutions by default, and the H200's tensor cores would run
those about 8x faster at a 10-bit mantissa). `cudnn.benchmark` stays at PyTorch's default
(off: cuDNN's heuristics pick the algorithm, no autotuning).

* matmul-*: `torch.matmul(a, b)` into a new tensor.
* conv2d-*: `F.conv2d`, `same` padding, stride 1. `th`: NCHW data and OIHW kernel
  (contiguous, PyTorch's native layout). `tf`: the NHWC data and HWIO kernel in the
  `channels_last` memory format (NHWC and OHWI in memory; the kernel's reorder is done before
  timing). Backward: `aten.convolution_backward` with a ones output gradient made in each call
  (as ours fills its `ones` seed), data and weight gradients only, no forward pass (as ours
  and as XLA's `jax.grad` of the sum).
* mlp-train-step / cnn-train-step: `nn.Sequential` of the same architectures (the CNN in
  `channels_last`), Glorot-uniform weights and zero biases, `F.cross_entropy` against the
  one-hot targets (log-softmax, the fused form), `torch.optim.SGD(lr=0.01)`; each call
  uploads the host batch, steps and reads the loss back with `.item()`.
* exp-16m: `torch.exp(x)`. fma-16m: `a * b + c`, eager: two kernels, 24 bytes/element moved
  (as ours; `torch.addcmul` would fuse it into one pass of 16).
* dispatch: eager, op by op (1000 `y + x` / `-y` on a (1,) tensor, then the synchronize): the
  per-op launch cost of PyTorch's dispatcher.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common

NOTES = {
    "conv2d-tf": "channels_last memory format (NHWC data, OHWI kernel)",
    "conv2d-th": "NCHW contiguous",
    "fma-16m": "eager a * b + c: two kernels",
    "dispatch": "eager op-by-op dispatch",
}

_state = {}


def _fp32_only():
    """Turns TF32 off for matmuls and convolutions; returns what is now in effect, for the row.

    PyTorch 2.9 introduced `fp32_precision` settings and deprecated `allow_tf32` (setting the
    old flags warns there, and reading one kind after setting the other raises), so the new
    settings are used where they exist, the old flags elsewhere."""
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None and hasattr(conv, "fp32_precision"):
        try:
            matmul.fp32_precision = "ieee"
            conv.fp32_precision = "ieee"
            return f"matmul fp32_precision={matmul.fp32_precision}, conv fp32_precision={conv.fp32_precision}"
        except (AttributeError, RuntimeError, ValueError, TypeError):
            pass  # the old flags below
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return (f"matmul allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
            f"cudnn allow_tf32={torch.backends.cudnn.allow_tf32}")


def setup(framework, threads):
    if threads is not None:
        torch.set_num_threads(threads)
    _state["precision"] = _fp32_only()
    _state["device"] = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)


def _cuda():
    return _state["device"].type == "cuda"


def info(threads):
    library = f"torch {torch.__version__}"
    if _cuda():
        library += f" (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
        props = torch.cuda.get_device_properties(0)
        device = (f"cuda:0 {props.name}, {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}; "
                  f"TF32 off ({_state['precision']}); cudnn.benchmark={torch.backends.cudnn.benchmark}")
    else:
        device = f"cpu (torch.cuda.is_available() is False; {torch.get_num_threads()} threads)"
    return {"backend": "torch", "library": library, "device": device, "threads": torch.get_num_threads()}


def _done():
    """What ends every timed call: on CUDA, the wait for every queued kernel."""
    if _cuda():
        torch.cuda.synchronize()


def _tensor(array):
    return torch.from_numpy(np.ascontiguousarray(array)).to(_state["device"])


def _timed(f):
    def call():
        f()
        _done()

    return call


def _conv_operands(rng, workload, ordering):
    """Input (logical NCHW) and kernel (logical OIHW) on the device: channels_last for `tf`
    (a permuted view of the NHWC / HWIO arrays, made contiguous in that format), contiguous
    NCHW / OIHW for `th`."""
    x, kernel = common.conv_operands(rng, ordering, workload)
    x, kernel = _tensor(x), _tensor(kernel)
    if ordering == "tf":
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        kernel = kernel.permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)
    return x, kernel


def _conv(rng, workload, ordering):
    x, kernel = _conv_operands(rng, workload, ordering)
    k = kernel.shape[-1]
    pad = [k // 2, k // 2]  # `same` for an odd kernel, stride 1
    if not common.conv_backward(workload):
        return _timed(lambda: F.conv2d(x, kernel, padding=pad))
    out_shape = (x.shape[0], kernel.shape[0], x.shape[2], x.shape[3])
    fmt = torch.channels_last if ordering == "tf" else torch.contiguous_format

    def backward():
        seed = torch.empty(out_shape, device=x.device, memory_format=fmt).fill_(1.0)  # torch.ones has no format
        torch.ops.aten.convolution_backward(seed, x, kernel, None, [1, 1], pad, [1, 1], False, [0, 0], 1,
                                            [True, True, False])

    return _timed(backward)


def _glorot_linear(rng, fan_in, units):
    layer = nn.Linear(fan_in, units)
    with torch.no_grad():
        # common.uniform gives (in, out) as Keras; nn.Linear's weight is (out, in).
        layer.weight.copy_(torch.from_numpy(common.uniform(rng, (fan_in, units),
                                                           common.glorot_limit(fan_in, units)).T.copy()))
        layer.bias.zero_()
    return layer


def _glorot_conv(rng, channels, filters):
    layer = nn.Conv2d(channels, filters, 3)  # `valid`, stride 1
    with torch.no_grad():
        hwio = common.uniform(rng, (3, 3, channels, filters), common.glorot_limit(channels * 9, filters * 9))
        layer.weight.copy_(torch.from_numpy(hwio.transpose(3, 2, 0, 1).copy()))
        layer.bias.zero_()
    return layer


def _train(model, x, y, to_input):
    """One SGD step per call: upload the host batch, forward, backward, update, loss to host."""
    model = model.to(_state["device"])
    optimizer = torch.optim.SGD(model.parameters(), lr=common.LEARNING_RATE)
    x, y = torch.from_numpy(x), torch.from_numpy(y)  # host tensors, uploaded in each call
    device = _state["device"]

    def step():
        inputs, target = to_input(x.to(device)), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), target)  # probabilities as targets: one-hot CE
        loss.backward()
        optimizer.step()
        value = loss.item()  # the loss back on the host: waits for the step
        _done()
        return value

    return step


def prepare(workload, ordering):
    rng = np.random.default_rng(0)
    if workload.startswith("matmul-"):
        a, b = (_tensor(v) for v in common.matmul_operands(rng, workload))
        return _timed(lambda: torch.matmul(a, b))
    if workload.startswith("conv2d-"):
        return _conv(rng, workload, ordering)  # no operand requires grad: no autograd graph
    if workload == "mlp-train-step":
        model = nn.Sequential(
            _glorot_linear(rng, 784, 512), nn.ReLU(),
            _glorot_linear(rng, 512, 512), nn.ReLU(),
            _glorot_linear(rng, 512, 10),
        )
        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 784))
        return _train(model, x, y, lambda x: x)
    if workload == "cnn-train-step":
        model = nn.Sequential(
            _glorot_conv(rng, 1, 32), nn.ReLU(), nn.MaxPool2d(2),
            _glorot_conv(rng, 32, 64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            _glorot_linear(rng, 5 * 5 * 64, 10),
        ).to(memory_format=torch.channels_last)
        x, y = common.train_batch(rng, (common.TRAIN_BATCH, 28, 28, 1))
        # The NHWC batch as a logical NCHW view, channels_last in memory (`tf` ordering).
        return _train(model, x, y, lambda x: x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last))
    if workload == "exp-16m":
        x = _tensor(common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0))
        return _timed(lambda: torch.exp(x))
    if workload == "fma-16m":
        a, b, c = (_tensor(common.uniform(rng, (common.ELEMENTWISE_LEN,), 1.0)) for _ in range(3))
        return _timed(lambda: a * b + c)
    if workload == "dispatch":
        x = _tensor(common.uniform(rng, (1,), 1.0))
        pairs = range(common.DISPATCH_OPS // 2)

        def dispatch():
            y = x
            for _ in pairs:
                y = y + x
                y = -y

        return _timed(dispatch)
    return None
