#!/usr/bin/python3
"""Goldens for the normalization layers of issue 14 (tests/nn/norm_layers_test.cpp).

Run by hand with Debian's PyTorch (/usr/bin/python3), like
make_state_dict_goldens.py, whose helpers it uses:

1. PyTorch -> bnlab:
       /usr/bin/python3 tests/golden/make_norm_layer_goldens.py
   For each case in CASES: the nn.Sequential of the architecture text after 3
   SGD steps (running statistics move), written to tests/golden/norm_layers/
   as pytorch_<case>.safetensors (state dict, metadata "arch") and
   pytorch_<case>_io.safetensors ("input", eval "output").

2. bnlab -> PyTorch:
       BNLAB_WRITE_NORM_LAYER_GOLDENS=tests/golden/norm_layers \\
           build/<dir>/tests/nn/bnlab_nn_tests --gtest_filter='NormLayerGoldens.Bnlab*'
       /usr/bin/python3 tests/golden/make_norm_layer_goldens.py --from-bnlab
   The first writes bnlab_<case>.safetensors and bnlab_<case>_io.safetensors;
   the second loads each with load_state_dict(strict=True) (keys and shapes
   must be PyTorch's), checks PyTorch's eval output against bnlab's (1e-4,
   exit 1 otherwise) and writes pytorch_from_bnlab_<case>.safetensors.

FrozenBatchNorm2d is torchvision's class (torchvision.ops.misc), copied
below since Debian's PyTorch comes without torchvision; its buffers start
random here (bnlab's test does the same before writing its checkpoint).
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_state_dict_goldens as sd  # noqa: E402
from make_safetensors_goldens import save_safetensors  # noqa: E402


class FrozenBatchNorm2d(torch.nn.Module):
    """torchvision.ops.misc.FrozenBatchNorm2d (0.14), without its API-usage logging."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        num_batches_tracked_key = prefix + "num_batches_tracked"
        if num_batches_tracked_key in state_dict:
            del state_dict[num_batches_tracked_key]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x):
        w = self.weight.reshape(1, -1, 1, 1)
        b = self.bias.reshape(1, -1, 1, 1)
        rv = self.running_var.reshape(1, -1, 1, 1)
        rm = self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + self.eps).rsqrt()
        bias = b - rm * scale
        return x * scale + bias

    def __repr__(self):
        return f"{self.__class__.__name__}({self.weight.shape[0]}, eps={self.eps})"


def build(arch):
    """nn.Sequential from the text, FrozenBatchNorm2d's buffers made random
    (as a pretrained network's are) so that a mix-up of them shows."""
    model = eval("nn.Sequential(" + arch + ")",
                 {"nn": nn, "FrozenBatchNorm2d": FrozenBatchNorm2d, **vars(nn)})
    for m in model:
        if isinstance(m, FrozenBatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "norm_layers")

# GroupNorm (on 4-D and 2-D input, affine or not), LayerNorm over one and two
# trailing dims, InstanceNorm1d/2d with and without running statistics.
CASES = {
    "norms_2d": ("Conv2d(2, 4, 3, padding=1), GroupNorm(2, 4), ReLU(), "
                 "InstanceNorm2d(4, affine=True, track_running_stats=True), LayerNorm((6, 6)), "
                 "Conv2d(4, 4, 3, padding=1, bias=False), InstanceNorm2d(4), Flatten(), "
                 "Linear(144, 8), LayerNorm(8, eps=0.001), Linear(8, 3)",
                 (4, 2, 6, 6)),
    "norms_1d": ("InstanceNorm1d(3, affine=True, track_running_stats=True, momentum=0.3), "
                 "LayerNorm(8, elementwise_affine=False), GroupNorm(3, 3), Flatten(), "
                 "Linear(24, 6), GroupNorm(2, 6, affine=False), Tanh(), Linear(6, 5)",
                 (4, 3, 8)),
    "frozen_bn": ("Conv2d(2, 4, 3, padding=1, bias=False), FrozenBatchNorm2d(4), ReLU(), "
                  "Conv2d(4, 4, 3), FrozenBatchNorm2d(4, eps=0.001), Flatten(), Linear(64, 3)",
                  (4, 2, 6, 6)),
}


def main():
    sd.build = build
    sd.OUT_DIR = OUT_DIR
    sd.CASES = CASES
    if len(sys.argv) == 2 and sys.argv[1] == "--from-bnlab":
        sd.write_from_bnlab_goldens()
    elif len(sys.argv) == 1:
        sd.write_pytorch_goldens()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
