#!/usr/bin/python3
"""Writes the PyTorch golden vectors for bnlab's batch-norm kernels.

Run BY HAND with Debian's PyTorch (never in CI; the outputs are committed):

    /usr/bin/python3 tests/golden/make_batch_norm_goldens.py

It writes one file per case to tests/golden/batch_norm/<case>.txt, read by
tests/kernels/batch_norm_golden_test.cpp.

Format (plain text, one entry per line; '#' starts a comment line):

    <key> <count> <v0> <v1> ... <v(count-1)>

Every entry is a list of numbers, scalars have count 1. Keys:
    dims                 the tensor's shape, channels-first: N C [L | H W | D H W]
    training             1: F.batch_norm(training=True), 0: eval mode
    affine               1: weight and bias given
    track_running_stats  1: running_mean/var given (always 1 in eval mode)
    momentum             PyTorch's momentum (weight of the new batch)
    unbiased             1: running_var takes the Bessel-corrected variance (PyTorch),
                         0: the biased one (the ONNX convention)
    relu                 1: y = relu(batch_norm(x)), and dx goes through the ReLU
    eps
    x, weight, bias, running_mean_in, running_var_in, dy     the inputs (float32 values)
    y, save_mean, save_invstd, running_mean_out, running_var_out, dx, dweight, dbias
                         the outputs, computed in float64 from the float32 inputs
Arrays are in the memory order of the channels-first tensor; the test permutes
them to channels-last itself. save_* and the gradients appear in training cases
only; dweight/dbias only when affine.

Inputs are float32 values (printed with 9 significant digits, exact); PyTorch
computes in float64 on them so the goldens carry no float32 rounding, and the
test compares bnlab's float32 results with |a - r| <= 1e-5 * (1 + |r|).

The ONNX case (onnx_*): onnx 1.12 on Debian has no onnx.reference, so its
running statistics follow the operator's specification (BatchNormalization-15,
training_mode=1), written out below in float64 numpy:
    running_mean = input_mean * momentum_onnx + current_mean * (1 - momentum_onnx)
    running_var  = input_var  * momentum_onnx + current_var  * (1 - momentum_onnx)
with current_var biased; its y and gradients are PyTorch's (the same math).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "batch_norm")

# name, dims, training, affine, track_running_stats, momentum, relu
CASES = [
    ("train_2d_affine_m0.1", (8, 5), True, True, True, 0.1, False),
    ("train_3d_noaffine_m0.3", (4, 3, 7), True, False, True, 0.3, False),
    ("train_4d_affine_m0.1", (4, 3, 5, 6), True, True, True, 0.1, False),
    ("train_4d_affine_m0.3_c17", (2, 17, 3, 3), True, True, True, 0.3, False),
    ("train_4d_affine_m0.1_s81", (2, 3, 9, 9), True, True, True, 0.1, False),
    ("train_4d_noaffine_n1", (1, 4, 3, 5), True, False, True, 0.1, False),
    ("train_5d_affine_m0.1", (2, 3, 2, 3, 4), True, True, True, 0.1, False),
    ("train_3d_affine_no_running_stats", (3, 4, 9), True, True, False, 0.1, False),
    ("train_4d_affine_relu", (3, 4, 4, 5), True, True, True, 0.1, True),
    ("eval_4d_affine", (3, 4, 5, 5), False, True, True, 0.1, False),
    ("eval_2d_noaffine", (6, 7), False, False, True, 0.1, False),
    ("eval_5d_affine", (2, 3, 2, 2, 3), False, True, True, 0.1, False),
    # channels a multiple of 16: the tests run these in the blocked16 layout too
    ("train_4d_affine_relu_c32", (3, 32, 4, 5), True, True, True, 0.1, True),
    ("eval_4d_affine_c16", (2, 16, 3, 3), False, True, True, 0.1, False),
]
# The ONNX cases' seeds start here (the count of CASES when they were
# written), so that adding a case above leaves their files as they were.
ONNX_FIRST_SEED = 12
ONNX_CASES = [
    # name, dims, onnx momentum (weight of the OLD running value)
    ("onnx_4d_train_momentum0.9", (3, 4, 3, 3), 0.9),
    ("onnx_3d_train_momentum0.7", (5, 2, 6), 0.7),
]


def float32_values(rng, shape, loc=0.0, scale=1.0):
    """Random float32 values, returned as float64 (exactly the same numbers)."""
    return rng.normal(loc, scale, size=shape).astype(np.float32).astype(np.float64)


def make_inputs(seed, dims):
    rng = np.random.RandomState(seed)
    c = dims[1]
    channel_shift = np.arange(c, dtype=np.float64).reshape([1, c] + [1] * (len(dims) - 2))
    x = (rng.normal(0.0, 1.5, size=dims) + 0.5 * channel_shift - 1.0)
    x = x.astype(np.float32).astype(np.float64)  # float32 values, so the file holds them exactly
    return {
        "x": x,
        "weight": float32_values(rng, (c,), 1.0, 0.5),
        "bias": float32_values(rng, (c,), 0.0, 0.5),
        "running_mean_in": float32_values(rng, (c,), 0.0, 0.5),
        "running_var_in": np.abs(float32_values(rng, (c,), 1.0, 0.3)) + 0.1,
        "dy": float32_values(rng, dims),
    }


def batch_norm_case(seed, dims, training, affine, track, momentum, relu, eps=1e-5):
    """Runs F.batch_norm (and autograd) in float64; returns the entries to write."""
    inp = make_inputs(seed, dims)
    x = torch.tensor(inp["x"], requires_grad=training)
    weight = torch.tensor(inp["weight"], requires_grad=training) if affine else None
    bias = torch.tensor(inp["bias"], requires_grad=training) if affine else None
    running_mean = torch.tensor(inp["running_mean_in"]) if track else None
    running_var = torch.tensor(inp["running_var_in"]) if track else None
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=training,
                     momentum=momentum, eps=eps)
    if relu:
        y = F.relu(y)
    entries = {
        "dims": list(dims), "training": [int(training)], "affine": [int(affine)],
        "track_running_stats": [int(track)], "momentum": [momentum], "unbiased": [1],
        "relu": [int(relu)], "eps": [eps], "x": inp["x"],
    }
    if affine:
        entries["weight"] = inp["weight"]
        entries["bias"] = inp["bias"]
    if track:
        entries["running_mean_in"] = inp["running_mean_in"]
        entries["running_var_in"] = inp["running_var_in"]
    entries["y"] = y.detach().numpy()
    if track:
        entries["running_mean_out"] = running_mean.numpy()
        entries["running_var_out"] = running_var.numpy()
    if training:
        # save_mean / save_invstd as PyTorch's native kernel returns them.
        _, save_mean, save_invstd = torch.native_batch_norm(
            x.detach(), None, None, None, None, True, momentum, eps)
        entries["save_mean"] = save_mean.numpy()
        entries["save_invstd"] = save_invstd.numpy()
        dy = torch.tensor(inp["dy"])
        y.backward(dy)
        entries["dy"] = inp["dy"]
        entries["dx"] = x.grad.numpy()
        if affine:
            entries["dweight"] = weight.grad.numpy()
            entries["dbias"] = bias.grad.numpy()
    return entries


def onnx_case(seed, dims, onnx_momentum, eps=1e-5):
    """ONNX BatchNormalization-15 with training_mode=1, per its specification."""
    entries = batch_norm_case(seed, dims, True, True, False, 0.1, False, eps)
    inp = make_inputs(seed, dims)
    axes = tuple(a for a in range(len(dims)) if a != 1)
    x = inp["x"]
    current_mean = x.mean(axis=axes)
    current_var = x.var(axis=axes)  # ddof=0: biased, as the spec's ReduceMean((X - mean)^2)
    entries["momentum"] = [1.0 - onnx_momentum]  # bnlab's m: the weight of the new batch
    entries["unbiased"] = [0]
    entries["track_running_stats"] = [1]
    entries["running_mean_in"] = inp["running_mean_in"]
    entries["running_var_in"] = inp["running_var_in"]
    entries["running_mean_out"] = (inp["running_mean_in"] * onnx_momentum +
                                   current_mean * (1 - onnx_momentum))
    entries["running_var_out"] = (inp["running_var_in"] * onnx_momentum +
                                  current_var * (1 - onnx_momentum))
    entries["onnx_momentum"] = [onnx_momentum]
    return entries


INPUT_KEYS = {"x", "weight", "bias", "running_mean_in", "running_var_in", "dy"}


def format_value(key, v):
    if key in INPUT_KEYS:
        return "%.9g" % v  # float32 values: 9 digits are exact
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "%.12g" % v


def write_case(name, entries, header):
    path = os.path.join(OUT_DIR, name + ".txt")
    with open(path, "w") as f:
        f.write("# %s\n# %s\n" % (name, header))
        for key, value in entries.items():
            flat = np.asarray(value).reshape(-1).tolist()
            f.write("%s %d %s\n" % (key, len(flat), " ".join(format_value(key, v) for v in flat)))
    return os.path.getsize(path)


def main():
    torch.set_grad_enabled(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    header = "made by tests/golden/make_batch_norm_goldens.py with torch %s, numpy %s" % (
        torch.__version__, np.__version__)
    total = 0
    for seed, (name, dims, training, affine, track, momentum, relu) in enumerate(CASES):
        total += write_case(name, batch_norm_case(seed, dims, training, affine, track, momentum,
                                                  relu), header)
    for seed, (name, dims, onnx_momentum) in enumerate(ONNX_CASES, start=ONNX_FIRST_SEED):
        total += write_case(name, onnx_case(seed, dims, onnx_momentum), header)
    print("wrote %d cases, %d bytes, to %s" % (len(CASES) + len(ONNX_CASES), total, OUT_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
