#!/usr/bin/python3
"""PyTorch training goldens for bnlab's layers, loss and optimizers (issue 3, item 6).

Run BY HAND with Debian's PyTorch (torch 1.13), never in CI:

    /usr/bin/python3 tests/golden/make_training_goldens.py

For each case it builds a small nn.Sequential, seeds it, and trains it for K = 5
steps on fixed random batches (one new batch per step) with CrossEntropyLoss and
either SGD (lr 0.1, momentum 0.9, weight_decay 1e-4) or Adam (lr 0.01,
weight_decay 1e-4). tests/nn/training_golden_test.cpp builds the same network in
bnlab, loads the initial weights, runs the same steps and compares.

Output: tests/golden/training/<case>.json, one JSON object per case:
  "case":        the case name ("mlp_sgd", "mlp_adam", "cnn_sgd", "cnn_adam",
                 "variants_sgd", "variants_adam")
  "arch":        the architecture in PyTorch's notation (for people; the test
                 builds the modules itself)
  "repr":        str(model), PyTorch's multi-line repr
  "optimizer":   {"name": "sgd"|"adam", "lr", "momentum", "weight_decay", "betas", "eps"}
  "input_shape": the shape of one batch, e.g. [8, 1, 4, 5]
  "num_classes": K of the logits
  "initial":     the state dict before training, {name: {"shape": [...], "values": [...]}}
                 (values flat, row-major; num_batches_tracked as a one-value list)
  "batches":     [{"inputs": [...flat floats...], "labels": [...ints...]}] one per step
  "losses":      per step, the training loss of that step's forward (before its update)
  "eval_loss":   after the last step, the loss in eval() mode on batch 0
  "final":       the state dict after the last step, same form as "initial"
Floats are written with Python's repr of the float32 value (exact round trip).
"""
import json
import os

import torch
from torch import nn

STEPS = 5
HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "training")


def mlp():
    # The tutorial's shape in small: Linear without bias before BN; the second
    # BN uses the cumulative average (momentum=None).
    arch = ("Flatten(), Linear(20, 16, bias=False), BatchNorm1d(16), ReLU(), "
            "Linear(16, 12, bias=False), BatchNorm1d(12, momentum=None), ReLU(), Linear(12, 5)")
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(20, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 12, bias=False), nn.BatchNorm1d(12, momentum=None), nn.ReLU(),
        nn.Linear(12, 5))
    return arch, model, [8, 1, 4, 5], 5


def mlp_variants():
    # The other activations and BN flags: LeakyReLU, Tanh, Sigmoid, BatchNorm1d
    # without affine, and without running statistics (eval then uses the batch).
    arch = ("Flatten(), Linear(20, 16), LeakyReLU(negative_slope=0.1), "
            "BatchNorm1d(16, affine=False), Linear(16, 12), Tanh(), "
            "BatchNorm1d(12, eps=0.001, track_running_stats=False), Linear(12, 8), Sigmoid(), "
            "Linear(8, 5)")
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(20, 16), nn.LeakyReLU(negative_slope=0.1),
        nn.BatchNorm1d(16, affine=False), nn.Linear(16, 12), nn.Tanh(),
        nn.BatchNorm1d(12, eps=0.001, track_running_stats=False), nn.Linear(12, 8), nn.Sigmoid(),
        nn.Linear(8, 5))
    return arch, model, [8, 1, 4, 5], 5


def cnn():
    # A conv bias directly before BN has a zero gradient in exact arithmetic, so
    # Adam would turn rounding noise into full-size steps and no two
    # implementations could agree; the conv with bias feeds a ReLU, and the
    # second BN (momentum 0.3) follows that ReLU.
    arch = ("Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(2), "
            "Conv2d(4, 6, 3, stride=2, padding=1), ReLU(), BatchNorm2d(6, momentum=0.3), "
            "Flatten(), Linear(24, 5)")
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(6, momentum=0.3),
        nn.Flatten(), nn.Linear(24, 5))
    return arch, model, [6, 1, 8, 8], 5


def floats(tensor):
    return [float(v) for v in tensor.detach().reshape(-1).tolist()]


def state(model):
    out = {}
    for name, value in model.state_dict().items():
        if value.dtype == torch.int64:
            out[name] = {"shape": list(value.shape), "values": [int(value.item())]}
        else:
            out[name] = {"shape": list(value.shape), "values": floats(value)}
    return out


def make_case(name, builder, optimizer_name, seed):
    torch.manual_seed(seed)
    arch, model, input_shape, num_classes = builder()
    initial = state(model)
    generator = torch.Generator().manual_seed(seed + 1000)
    batches = []
    for _ in range(STEPS):
        inputs = torch.randn(input_shape, generator=generator)
        labels = torch.randint(0, num_classes, (input_shape[0],), generator=generator)
        batches.append((inputs, labels))
    if optimizer_name == "sgd":
        settings = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    else:
        settings = {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                    "weight_decay": 1e-4}
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    model.train()
    for inputs, labels in batches:
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.item()))
    model.eval()
    with torch.no_grad():
        eval_loss = float(loss_fn(model(batches[0][0]), batches[0][1]).item())
    return {
        "case": name,
        "arch": arch,
        "repr": str(model),
        "optimizer": settings,
        "input_shape": input_shape,
        "num_classes": num_classes,
        "initial": initial,
        "batches": [{"inputs": floats(x), "labels": [int(v) for v in y.tolist()]}
                    for x, y in batches],
        "losses": losses,
        "eval_loss": eval_loss,
        "final": state(model),
    }


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    cases = [("mlp_sgd", mlp, "sgd", 1), ("mlp_adam", mlp, "adam", 2),
             ("cnn_sgd", cnn, "sgd", 3), ("cnn_adam", cnn, "adam", 4),
             ("variants_sgd", mlp_variants, "sgd", 5), ("variants_adam", mlp_variants, "adam", 6)]
    for name, builder, optimizer_name, seed in cases:
        case = make_case(name, builder, optimizer_name, seed)
        path = os.path.join(OUT_DIR, name + ".json")
        with open(path, "w") as f:
            json.dump(case, f)
            f.write("\n")
        print(f"{path}: losses {['%.6f' % v for v in case['losses']]}")


if __name__ == "__main__":
    main()
