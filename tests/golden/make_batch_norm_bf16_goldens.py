#!/usr/bin/python3
"""Writes the PyTorch golden vectors for bnlab's bf16 batch-norm kernels.

Run BY HAND with Debian's PyTorch (never in CI; the outputs are committed):

    /usr/bin/python3 tests/golden/make_batch_norm_bf16_goldens.py

It writes tests/golden/batch_norm/bf16_<case>.txt in the format of
make_batch_norm_goldens.py (whose inputs it reuses), read by
tests/kernels/batch_norm_bf16_test.cpp. Here PyTorch runs its own bf16 kernel:
x and dy are bf16 tensors (their values are written, exact), weight, bias and
the running statistics float32, as bnlab's bf16 API takes them; y and dx are
PyTorch's bf16 results, save_*, running_*_out, dweight and dbias its float32
ones.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from make_batch_norm_goldens import make_inputs, write_case

# name, dims, training, affine (running statistics always tracked, momentum 0.1)
CASES = [
    ("bf16_train_2d_affine", (16, 5), True, True),
    ("bf16_train_4d_affine", (4, 3, 5, 6), True, True),
    ("bf16_train_4d_noaffine_c16", (3, 16, 4, 5), True, False),
    ("bf16_eval_4d_affine_c16", (2, 16, 3, 3), False, True),
]


def bf16_case(seed, dims, training, affine, momentum=0.1, eps=1e-5):
    inp = make_inputs(seed, dims)
    x = torch.tensor(inp["x"], dtype=torch.bfloat16, requires_grad=training)
    weight = torch.tensor(inp["weight"], dtype=torch.float32, requires_grad=training) if affine else None
    bias = torch.tensor(inp["bias"], dtype=torch.float32, requires_grad=training) if affine else None
    running_mean = torch.tensor(inp["running_mean_in"], dtype=torch.float32)
    running_var = torch.tensor(inp["running_var_in"], dtype=torch.float32)
    entries = {
        "dims": list(dims), "training": [int(training)], "affine": [int(affine)],
        "track_running_stats": [1], "momentum": [momentum], "unbiased": [1], "relu": [0],
        "eps": [eps], "x": x.detach().float().numpy(),
    }
    if affine:
        entries["weight"] = inp["weight"]
        entries["bias"] = inp["bias"]
    entries["running_mean_in"] = running_mean.numpy().copy()
    entries["running_var_in"] = running_var.numpy().copy()
    if training:
        # float32 weight and bias make PyTorch's kernel keep float32 statistics
        _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
            x.detach(), torch.ones(dims[1]), torch.zeros(dims[1]), None, None, True, momentum,
            eps)
        entries["save_mean"] = save_mean.float().numpy()
        entries["save_invstd"] = save_invstd.float().numpy()
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=training,
                     momentum=momentum, eps=eps)
    assert y.dtype == torch.bfloat16
    entries["y"] = y.detach().float().numpy()
    entries["running_mean_out"] = running_mean.numpy()
    entries["running_var_out"] = running_var.numpy()
    if training:
        dy = torch.tensor(inp["dy"], dtype=torch.bfloat16)
        y.backward(dy)
        entries["dy"] = dy.float().numpy()
        entries["dx"] = x.grad.float().numpy()
        if affine:
            entries["dweight"] = weight.grad.numpy()
            entries["dbias"] = bias.grad.numpy()
    return entries


def main():
    torch.set_grad_enabled(True)
    header = "made by tests/golden/make_batch_norm_bf16_goldens.py with torch %s, numpy %s" % (
        torch.__version__, np.__version__)
    total = 0
    for seed, (name, dims, training, affine) in enumerate(CASES, start=100):
        total += write_case(name, bf16_case(seed, dims, training, affine), header)
    print("wrote %d cases, %d bytes" % (len(CASES), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
