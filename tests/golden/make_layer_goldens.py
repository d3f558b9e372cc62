#!/usr/bin/python3
"""Goldens for the layers of issue 13 (tests/nn/pytorch_layers_test.cpp).

Run by hand with Debian's PyTorch: /usr/bin/python3 tests/golden/make_layer_goldens.py
It writes into tests/golden/layers/:

  <case>.safetensors   one layer, built from its text as PyTorch reads it, in
                       training mode: "input", "output", a random
                       "grad_output", PyTorch's "grad_input" and, for PReLU,
                       the (random) "weight" and its "grad_weight";
                       metadata "layer" (the text)
  nan.safetensors      each elementwise activation at x = [nan, -1, 2, -0, 7,
                       -4, 3, -3] with dy = 1: "<name>_output", "<name>_grad"
  dropout2d.safetensors  Dropout2d(p=0.5) in training mode: "input", "output"
                       (the test checks that each plane is zeroed or doubled)
  pytorch_network.safetensors, pytorch_network_io.safetensors
                       a small network of these layers after 3 SGD steps,
                       state dict and eval-mode output, as
                       make_state_dict_goldens.py writes them
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_state_dict_goldens as sd  # noqa: E402
from make_safetensors_goldens import save_safetensors  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers")

# name: (layer text, input shape, input scale)
LAYERS = {
    "gelu": ("GELU()", (3, 5), 2.0),
    "gelu_tanh": ("GELU(approximate='tanh')", (3, 5), 2.0),
    "elu": ("ELU(0.7)", (3, 5), 2.0),
    "silu": ("SiLU()", (3, 5), 3.0),
    "relu6": ("ReLU6(inplace=True)", (4, 5), 4.0),
    "hardswish": ("Hardswish()", (4, 5), 3.0),
    "prelu_shared": ("PReLU()", (2, 3, 4, 4), 1.0),
    "prelu_channels": ("PReLU(3, init=0.1)", (2, 3, 4, 4), 1.0),
    "avg_pool": ("AvgPool2d(2)", (2, 3, 6, 6), 1.0),
    "avg_pool_padded": ("AvgPool2d(3, stride=2, padding=1)", (2, 2, 7, 7), 1.0),
    "avg_pool_rect": ("AvgPool2d((2, 3), stride=(2, 1), padding=(1, 1), ceil_mode=True, "
                      "count_include_pad=False)", (2, 2, 7, 8), 1.0),
    "avg_pool_divisor": ("AvgPool2d(3, 2, 1, True, True, 5)", (2, 2, 6, 6), 1.0),
    "avg_pool_ceil": ("AvgPool2d(2, ceil_mode=True)", (1, 2, 5, 5), 1.0),
    "adaptive_1": ("AdaptiveAvgPool2d(1)", (2, 3, 5, 5), 1.0),
    "adaptive_uneven": ("AdaptiveAvgPool2d((3, 4))", (2, 2, 7, 10), 1.0),
    "adaptive_none": ("AdaptiveAvgPool2d((None, 3))", (1, 2, 5, 7), 1.0),
    "adaptive_larger": ("AdaptiveAvgPool2d(5)", (1, 1, 3, 3), 1.0),
    "softmax": ("Softmax(dim=1)", (4, 7), 2.0),
    "softmax_last": ("Softmax(dim=-1)", (2, 3, 5), 2.0),
    "softmax_implicit": ("Softmax()", (2, 3, 2, 2), 2.0),
    "log_softmax": ("LogSoftmax(dim=1)", (4, 7), 2.0),
    "log_softmax_channels": ("LogSoftmax(1)", (2, 3, 2, 2), 2.0),
}

ELEMENTWISE = {
    "gelu": "GELU()",
    "gelu_tanh": "GELU(approximate='tanh')",
    "elu": "ELU()",
    "silu": "SiLU()",
    "relu6": "ReLU6()",
    "hardswish": "Hardswish()",
    "relu": "ReLU()",
    "leaky_relu": "LeakyReLU(0.1)",
    "prelu": "PReLU()",
}

NETWORK = ("Conv2d(2, 4, 3, padding=1), PReLU(4), AvgPool2d(2), Conv2d(4, 6, 3), GELU(), "
           "Dropout2d(0.2), AdaptiveAvgPool2d((2, 2)), Flatten(), Linear(24, 8), ELU(), "
           "Identity(), Linear(8, 5), LogSoftmax(dim=1)")


def build_layer(text):
    return eval("nn." + text, {"nn": nn})


def write_layer_goldens():
    for name, (text, shape, scale) in LAYERS.items():
        torch.manual_seed(sum(map(ord, name)))
        layer = build_layer(text)
        x = (torch.randn(*shape) * scale).requires_grad_()
        tensors = {}
        if isinstance(layer, nn.PReLU):
            with torch.no_grad():
                layer.weight.uniform_(-0.5, 0.5)
            tensors["weight"] = layer.weight.detach().clone()
        y = layer(x.clone() if "inplace=True" in text else x)
        dy = torch.randn_like(y)
        y.backward(dy)
        tensors.update({"input": x.detach(), "output": y.detach(), "grad_output": dy,
                        "grad_input": x.grad})
        if isinstance(layer, nn.PReLU):
            tensors["grad_weight"] = layer.weight.grad
        save_safetensors(os.path.join(OUT_DIR, name + ".safetensors"), tensors, {"layer": text})
        print(f"wrote {name}: {text}, output {tuple(y.shape)}")


def write_nan_goldens():
    nan = float("nan")
    tensors = {}
    for name, text in ELEMENTWISE.items():
        x = torch.tensor([[nan, -1.0, 2.0, -0.0, 7.0, -4.0, 3.0, -3.0]], requires_grad=True)
        y = build_layer(text)(x)
        y.backward(torch.ones_like(y))
        tensors[name + "_output"] = y.detach()
        tensors[name + "_grad"] = x.grad
    save_safetensors(os.path.join(OUT_DIR, "nan.safetensors"), tensors)
    print(f"wrote nan: {list(ELEMENTWISE)}")


def write_dropout2d_golden():
    torch.manual_seed(7)
    x = torch.rand(4, 6, 3, 3) + 0.5  # no zero inputs, so a kept plane is never all zero
    y = nn.Dropout2d(0.5).train()(x)
    save_safetensors(os.path.join(OUT_DIR, "dropout2d.safetensors"), {"input": x, "output": y},
                     {"layer": "Dropout2d(0.5)"})


def write_network_golden():
    sd.OUT_DIR = OUT_DIR
    sd.CASES = {"network": (NETWORK, (4, 2, 10, 10))}
    sd.write_pytorch_goldens()


def main():
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    os.makedirs(OUT_DIR, exist_ok=True)
    write_layer_goldens()
    write_nan_goldens()
    write_dropout2d_golden()
    write_network_golden()


if __name__ == "__main__":
    main()
