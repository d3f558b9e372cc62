#!/usr/bin/python3
"""Goldens for precise BN (tests/nn/precise_bn_test.cpp, PreciseBnGolden).

Run by hand with Debian's PyTorch:
    /usr/bin/python3 tests/golden/make_precise_bn_goldens.py
writes tests/golden/precise_bn/:
  pytorch_precise_bn.safetensors     the network after 3 SGD steps (state dict, metadata "arch")
  pytorch_precise_bn_io.safetensors  "batch0".."batch2" (3, 5 and 4 examples) and, per BN
                                     key prefix P, "expected.P.running_mean/var": the mean and
                                     unbiased variance (float64, stored as float32) of every value
                                     P's input held over the three batches, the network in train
                                     mode (forward pre-hooks read the inputs); and
                                     "update_bn.P.running_var", what
                                     torch.optim.swa_utils.update_bn stores (the mean of the
                                     batches' unbiased variances), which bnlab does not follow.
"""
import copy
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_state_dict_goldens as sd  # noqa: E402
from make_safetensors_goldens import save_safetensors  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "precise_bn")
ARCH = ("Conv2d(2, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(2), "
        "Conv2d(4, 3, 3, padding=1), BatchNorm2d(3, eps=0.001), Flatten(), "
        "Linear(27, 5, bias=False), BatchNorm1d(5), ReLU(), Linear(5, 4)")
INPUT = (2, 6, 6)
BATCH_SIZES = (3, 5, 4)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    model = sd.trained_model("precise_bn", ARCH, (16,) + INPUT)
    torch.manual_seed(7)
    batches = [torch.randn(n, *INPUT) * 2 + 0.5 for n in BATCH_SIZES]

    # A copy runs the batches, so the model's saved buffers stay as trained.
    probe = copy.deepcopy(model)
    names = {m: name for name, m in probe.named_modules()}
    inputs = {}

    def keep_input(module, args):
        inputs.setdefault(names[module], []).append(args[0].detach().double())

    hooks = [m.register_forward_pre_hook(keep_input) for m in probe.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    probe.train()
    with torch.no_grad():
        for x in batches:
            probe(x)
    for h in hooks:
        h.remove()

    io = {f"batch{i}": x for i, x in enumerate(batches)}
    for name, parts in inputs.items():
        x = torch.cat(parts).transpose(0, 1).reshape(parts[0].shape[1], -1)  # (C, values)
        io[f"expected.{name}.running_mean"] = x.mean(dim=1).float()
        io[f"expected.{name}.running_var"] = x.var(dim=1, unbiased=True).float()
    averaged = copy.deepcopy(model)
    torch.optim.swa_utils.update_bn(batches, averaged)
    for name, m in averaged.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            io[f"update_bn.{name}.running_var"] = m.running_var.clone()
    save_safetensors(os.path.join(OUT_DIR, "pytorch_precise_bn.safetensors"), model.state_dict(),
                     {"arch": ARCH, "format": "pt"})
    save_safetensors(os.path.join(OUT_DIR, "pytorch_precise_bn_io.safetensors"), io)
    print(f"wrote precise_bn goldens: layers {sorted(inputs)}")


if __name__ == "__main__":
    main()
