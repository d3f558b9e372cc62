#!/usr/bin/env python3
"""PyTorch's batch normalization, timed on the cases bnlab_bench gives it.

bnlab_bench runs this with Debian's interpreter (/usr/bin/python3, which has
python3-torch) and one argument, a JSON object:
    {"threads": 2, "warmup": 1, "fixed_reps": 0, "min_reps": 5, "max_reps": 200,
     "budget_s": 0.3,
     "cases": [{"id": "32x64x56x56/channels_last/backward", "dims": [32, 64, 56, 56],
                "layout": "channels_first" | "channels_last" | "nc",
                "op": "train_forward" | "train_forward_relu" | "inference_forward" | "backward"
                      | "forward_backward" | "group_norm_forward" | "group_norm_backward"
                      | "layer_norm_forward" | "layer_norm_backward"}]}
and reads one JSON object from stdout:
    {"torch_version": "1.13.0", "threads": 2,
     "results": [{"id": ..., "median_ms": ..., "min_ms": ..., "reps": ...}]}
or {"error": "..."} when torch cannot be imported (bnlab_bench then skips PyTorch).

What is timed, per op (fp32, torch.no_grad, the same timing policy as bnlab's):
    train_forward       F.batch_norm(x, running_mean, running_var, weight, bias, training=True)
    train_forward_relu  F.relu(F.batch_norm(... training=True), inplace=True): PyTorch has no fused op
    inference_forward   F.batch_norm(... training=False)
    backward            torch.ops.aten.native_batch_norm_backward with the saved mean and invstd
                        of a native_batch_norm on the same x (the kernel autograd calls)
    forward_backward    y = F.batch_norm(x, ... training=True) with x, weight and bias requiring
                        grad, then y.backward(dy): a training step's batch norm through autograd,
                        as a user's loss.backward() runs it (gradients reset to None each call)
    group_norm_forward  F.group_norm(x, 32, weight, bias)
    group_norm_backward torch.ops.aten.native_group_norm_backward with the mean and rstd of a
                        native_group_norm on the same x (the kernel autograd calls)
    layer_norm_forward  F.layer_norm(x, x.shape[-1:], weight, bias)
    layer_norm_backward torch.ops.aten.native_layer_norm_backward, likewise
    bf16_*              the op without the prefix on bf16 x and dy (weight, bias and the running
                        statistics float32, the saved ones as PyTorch's bf16 kernel returns them)
channels_last uses torch.channels_last (4-D) or torch.channels_last_3d (5-D);
channels_first and nc are contiguous tensors.

Run by hand: /usr/bin/python3 bench/peer_pytorch.py '{"threads": 2, "cases": [...]}'
"""
import json
import statistics
import sys
import time


def reps_for(policy, one_call_s):
    """The same rule as bnlab_bench's reps_for (bench/harness.cpp)."""
    if policy.get("fixed_reps", 0) > 0:
        return policy["fixed_reps"]
    max_reps = max(1, policy.get("max_reps", 200))
    min_reps = max(1, policy.get("min_reps", 5))
    fit = policy.get("budget_s", 0.3) / one_call_s if one_call_s > 0 else max_reps
    reps = max_reps if fit >= max_reps else int(fit)
    return min(max(reps, min_reps), max_reps)


def time_calls(fn, policy):
    one_call_s = 0.0
    for _ in range(policy.get("warmup", 1)):
        start = time.perf_counter()
        fn()
        one_call_s = time.perf_counter() - start
    ms = []
    if policy.get("warmup", 1) == 0 and policy.get("fixed_reps", 0) <= 0:
        start = time.perf_counter()
        fn()
        one_call_s = time.perf_counter() - start
        ms.append(one_call_s * 1e3)
    reps = reps_for(policy, one_call_s)
    while len(ms) < reps:
        start = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(ms), "min_ms": min(ms), "reps": reps}


def make_tensors(torch, dims, layout):
    """x and dy with the given layout, filled like bnlab_bench's (offset + noise)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(dims, generator=gen) * 4.0 - 1.5
    dy = torch.rand(dims, generator=gen) * 4.0 - 2.0
    if layout == "channels_last":
        fmt = torch.channels_last if len(dims) == 4 else torch.channels_last_3d
        x = x.contiguous(memory_format=fmt)
        dy = dy.contiguous(memory_format=fmt)
    return x, dy


def run_case(torch, case, tensors, policy):
    import torch.nn.functional as F

    dims, op = case["dims"], case["op"]
    x, dy = tensors
    if op.startswith("bf16_"):
        op = op[len("bf16_"):]
        x, dy = x.bfloat16(), dy.bfloat16()  # keeps the memory format
    c = dims[1]
    weight = 1.0 + 0.01 * (torch.arange(c) % 7).float()
    bias = 0.1 * (torch.arange(c) % 5).float()
    running_mean = torch.full((c,), 0.5)
    running_var = torch.full((c,), 1.3)
    eps = 1e-5

    if op == "train_forward":
        fn = lambda: F.batch_norm(x, running_mean, running_var, weight, bias, True, 0.1, eps)
    elif op == "train_forward_relu":
        fn = lambda: F.relu(F.batch_norm(x, running_mean, running_var, weight, bias, True, 0.1, eps),
                            inplace=True)
    elif op == "inference_forward":
        fn = lambda: F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.1, eps)
    elif op == "backward":
        _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, 0.1, eps)
        fn = lambda: torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, running_mean, running_var, save_mean, save_invstd, True, eps,
            [True, True, True])
    elif op == "forward_backward":
        leaves = [t.detach().requires_grad_(True) for t in (x, weight, bias)]

        def fn():
            for t in leaves:
                t.grad = None
            with torch.enable_grad():
                y = F.batch_norm(leaves[0], running_mean, running_var, leaves[1], leaves[2], True,
                                 0.1, eps)
                y.backward(dy)
    elif op in ("group_norm_forward", "group_norm_backward"):
        groups, n, hxw = 32, dims[0], x.numel() // (dims[0] * c)  # bench.hpp's kBenchGroups
        if op == "group_norm_forward":
            fn = lambda: F.group_norm(x, groups, weight, bias, eps)
        else:
            _, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, n, c, hxw, groups,
                                                             eps)
            fn = lambda: torch.ops.aten.native_group_norm_backward(
                dy, x, mean, rstd, weight, n, c, hxw, groups, [True, True, True])
    elif op in ("layer_norm_forward", "layer_norm_backward"):
        shape = list(dims[-1:])
        weight = 1.0 + 0.01 * (torch.arange(dims[-1]) % 7).float()
        bias = 0.1 * (torch.arange(dims[-1]) % 5).float()
        if op == "layer_norm_forward":
            fn = lambda: F.layer_norm(x, shape, weight, bias, eps)
        else:
            _, mean, rstd = torch.ops.aten.native_layer_norm(x, shape, weight, bias, eps)
            fn = lambda: torch.ops.aten.native_layer_norm_backward(
                dy, x, shape, mean, rstd, weight, bias, [True, True, True])
    else:
        raise ValueError(f"unknown op {op!r}")
    return time_calls(fn, policy)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: peer_pytorch.py '<JSON request>' (see the docstring)")
    request = json.loads(sys.argv[1])
    try:
        import torch
    except Exception as e:  # torch missing or broken: a note for the caller, not a failure
        print(json.dumps({"error": f"torch not importable by {sys.executable}: {e}"}))
        return
    threads = int(request.get("threads", 2))
    torch.set_num_threads(threads)
    results = []
    tensors, tensors_key = None, None
    with torch.no_grad():
        for case in request["cases"]:
            key = (tuple(case["dims"]), case["layout"])
            if key != tensors_key:
                tensors = None  # free the previous shape's memory first
                tensors, tensors_key = make_tensors(torch, case["dims"], case["layout"]), key
            try:
                result = run_case(torch, case, tensors, request)
            except Exception as e:
                result = {"error": f"{type(e).__name__}: {e}"}
            result["id"] = case["id"]
            results.append(result)
            print(f"  {case['id']:45s} PyTorch", file=sys.stderr, flush=True)
    print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(),
                      "results": results}))


if __name__ == "__main__":
    main()
