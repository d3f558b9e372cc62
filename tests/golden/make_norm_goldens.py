#!/usr/bin/python3
"""Writes the PyTorch golden vectors for bnlab's GroupNorm and LayerNorm kernels.

Run BY HAND with Debian's PyTorch (never in CI; the outputs are committed):

    /usr/bin/python3 tests/golden/make_norm_goldens.py

It writes one file per case to tests/golden/norms/<case>.txt, read by
tests/kernels/group_norm_test.cpp (group_norm_*, instance_norm_*) and
tests/kernels/layer_norm_test.cpp (layer_norm_*). The format is that of
make_batch_norm_goldens.py: one "<key> <count> <v0> ... " line per entry.

GroupNorm keys:
    dims                 the tensor's shape, channels-first: N C [L | H W | D H W]
    groups, affine, eps
    x, weight, bias, dy  the inputs (float32 values, printed exactly)
    y, save_mean, save_invstd (N*groups, as torch.native_group_norm returns them),
    dx, dweight, dbias   computed in float64 from the float32 inputs
The instance_norm_* cases come from F.instance_norm (groups = C), so they
check that InstanceNorm is GroupNorm with one channel per group.

LayerNorm keys:
    dims, normalized_ndim (F.layer_norm's normalized_shape = dims[-normalized_ndim:]),
    affine, eps, x, weight, bias, dy, y, save_mean, save_invstd (one per row),
    dx, dweight, dbias
Arrays are in memory order of the contiguous (channels-first) tensor; the
tests permute to their layouts. dweight/dbias appear only when affine.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "norms")

# name, dims, groups, affine (groups = None: F.instance_norm)
GROUP_CASES = [
    ("group_norm_4d_g2_affine", (3, 6, 4, 5), 2, True),
    ("group_norm_3d_g1_noaffine", (2, 4, 7), 1, False),
    ("group_norm_4d_c32_g8_affine", (2, 32, 3, 3), 8, True),
    ("instance_norm_4d_affine", (2, 16, 3, 4), None, True),
    ("group_norm_2d_g4_affine", (5, 8), 4, True),
    ("group_norm_5d_g3_affine", (2, 6, 2, 3, 2), 3, True),
]
# name, dims, normalized_ndim, affine
LAYER_CASES = [
    ("layer_norm_2d_affine", (6, 10), 1, True),
    ("layer_norm_3d_last_noaffine", (2, 3, 17), 1, False),
    ("layer_norm_4d_last2_affine", (2, 3, 4, 5), 2, True),
]


def float32_values(rng, shape, loc=0.0, scale=1.0):
    """Random float32 values, returned as float64 (exactly the same numbers)."""
    return rng.normal(loc, scale, size=shape).astype(np.float32).astype(np.float64)


def inputs(seed, dims, params):
    rng = np.random.RandomState(seed)
    shift = np.arange(dims[1], dtype=np.float64).reshape([1, dims[1]] + [1] * (len(dims) - 2))
    x = (rng.normal(0.0, 1.5, size=dims) + 0.5 * shift - 1.0).astype(np.float32).astype(np.float64)
    return {"x": x, "weight": float32_values(rng, params, 1.0, 0.5),
            "bias": float32_values(rng, params, 0.0, 0.5), "dy": float32_values(rng, dims)}


def group_case(seed, dims, groups, affine, eps=1e-5):
    c = dims[1]
    inp = inputs(seed, dims, (c,))
    x = torch.tensor(inp["x"], requires_grad=True)
    weight = torch.tensor(inp["weight"], requires_grad=True) if affine else None
    bias = torch.tensor(inp["bias"], requires_grad=True) if affine else None
    if groups is None:
        groups = c
        y = F.instance_norm(x, weight=weight, bias=bias, use_input_stats=True, eps=eps)
    else:
        y = F.group_norm(x, groups, weight, bias, eps)
    n = dims[0]
    hxw = int(np.prod(dims[2:])) if len(dims) > 2 else 1
    _, save_mean, save_invstd = torch.native_group_norm(x.detach(), None, None, n, c, hxw,
                                                        groups, eps)
    y.backward(torch.tensor(inp["dy"]))
    entries = {"dims": list(dims), "groups": [groups], "affine": [int(affine)], "eps": [eps],
               "x": inp["x"], "dy": inp["dy"], "y": y.detach().numpy(),
               "save_mean": save_mean.numpy(), "save_invstd": save_invstd.numpy(),
               "dx": x.grad.numpy()}
    if affine:
        entries.update(weight=inp["weight"], bias=inp["bias"], dweight=weight.grad.numpy(),
                       dbias=bias.grad.numpy())
    return entries


def layer_case(seed, dims, normalized_ndim, affine, eps=1e-5):
    shape = dims[-normalized_ndim:]
    inp = inputs(seed, dims, shape)
    x = torch.tensor(inp["x"], requires_grad=True)
    weight = torch.tensor(inp["weight"], requires_grad=True) if affine else None
    bias = torch.tensor(inp["bias"], requires_grad=True) if affine else None
    y = F.layer_norm(x, shape, weight, bias, eps)
    _, save_mean, save_invstd = torch.native_layer_norm(x.detach(), shape, None, None, eps)
    y.backward(torch.tensor(inp["dy"]))
    entries = {"dims": list(dims), "normalized_ndim": [normalized_ndim],
               "affine": [int(affine)], "eps": [eps], "x": inp["x"], "dy": inp["dy"],
               "y": y.detach().numpy(), "save_mean": save_mean.numpy(),
               "save_invstd": save_invstd.numpy(), "dx": x.grad.numpy()}
    if affine:
        entries.update(weight=inp["weight"], bias=inp["bias"], dweight=weight.grad.numpy(),
                       dbias=bias.grad.numpy())
    return entries


def write(name, entries):
    path = os.path.join(OUT_DIR, name + ".txt")
    with open(path, "w") as f:
        f.write(f"# {name}: made by tests/golden/make_norm_goldens.py with PyTorch "
                f"{torch.__version__}, float64 on float32 inputs\n")
        for key, values in entries.items():
            flat = np.asarray(values, dtype=np.float64).ravel()
            f.write(f"{key} {flat.size} " + " ".join(f"{v:.17g}" for v in flat) + "\n")
    print("wrote", path)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for seed, (name, dims, groups, affine) in enumerate(GROUP_CASES):
        write(name, group_case(100 + seed, dims, groups, affine))
    for seed, (name, dims, ndim, affine) in enumerate(LAYER_CASES):
        write(name, layer_case(200 + seed, dims, ndim, affine))


if __name__ == "__main__":
    main()
