#!/usr/bin/python3
"""Writes the PyTorch goldens for bnlab's split (synchronized) batch-norm kernels.

Run BY HAND with Debian's PyTorch (never in CI; the outputs are committed):

    /usr/bin/python3 tests/golden/make_batch_norm_split_goldens.py

Each case is F.batch_norm (training) and autograd on the concatenated batch, in
float64 on float32 inputs, in the format of make_batch_norm_goldens.py, plus
    parts    the sample counts of the parts bnlab splits the batch into (some 0)
tests/kernels/batch_norm_split_test.cpp runs stats per part, merge,
forward_with_stats per part, backward_reduce per part, the sums added, and
backward_with_sums per part, and compares the concatenated results with these.
"""
import os
import sys

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ beside the goldens
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_batch_norm_goldens import batch_norm_case, write_case  # noqa: E402

# name, dims, affine, momentum, relu, parts (sample counts, summing to dims[0])
CASES = [
    ("split_4d_affine_c3", (10, 3, 8, 8), True, 0.1, False, [4, 0, 1, 3, 0, 2]),
    ("split_3d_noaffine_c5", (9, 5, 7), False, 0.3, False, [2, 3, 0, 4]),
    ("split_2d_affine_c6", (11, 6), True, 0.1, False, [1, 1, 0, 5, 4]),
    ("split_4d_affine_relu_c16", (7, 16, 3, 3), True, 0.1, True, [0, 3, 2, 2]),
]
FIRST_SEED = 100  # apart from make_batch_norm_goldens.py's seeds


def main():
    torch.set_grad_enabled(True)
    header = "made by tests/golden/make_batch_norm_split_goldens.py with torch %s, numpy %s" % (
        torch.__version__, np.__version__)
    total = 0
    for seed, (name, dims, affine, momentum, relu, parts) in enumerate(CASES, start=FIRST_SEED):
        assert sum(parts) == dims[0], name
        entries = batch_norm_case(seed, dims, True, affine, True, momentum, relu)
        entries["parts"] = parts
        total += write_case(name, entries, header)
    print("wrote %d cases, %d bytes" % (len(CASES), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
