#!/usr/bin/env python3
"""Training throughput, bnlab against PyTorch, on the same architecture, batch and data.

Runs one process per framework and times each whole process (start-up and data
loading included), as a user would see it, each after --settle seconds of idle:
    bnlab:   <build>/bnlab train --model NAME --epochs E --batch B --lr LR
    PyTorch: this script with --torch-only, which trains nn.Sequential built
             from the same architecture text with torch.optim.SGD.
With --precision bf16, bnlab trains with --precision bf16 and PyTorch runs the
forward and the loss under torch.autocast("cpu", dtype=torch.bfloat16) (its
Linear and Conv2d in bf16, float master weights and SGD), the two frameworks'
mixed precision. --limit N trains on the first N images only (short runs).

Usage (Debian's PyTorch: run with /usr/bin/python3; `scripts/setup.sh --peers`):
    /usr/bin/python3 bench/train_vs_pytorch.py --bnlab build/release/bnlab \
        --models mlp-bn,cnn-bn --epochs 1 [--threads 2] [--settle 5] [--json out.json]
        [--precision bf16] [--limit 10000]
"""
import argparse
import gzip
import json
import os
import re
import struct
import subprocess
import sys
import time

# The presets, in the PyTorch notation bnlab's --arch takes (src/nn/arch.cpp).
PRESETS = {
    "mlp": "Flatten(), Linear(784, 512), ReLU(), Linear(512, 256), ReLU(), Linear(256, 10)",
    "mlp-bn": "Flatten(), Linear(784, 512, bias=False), BatchNorm1d(512), ReLU(), "
              "Linear(512, 256, bias=False), BatchNorm1d(256), ReLU(), Linear(256, 10)",
    "cnn": "Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(32, 64, 3, padding=1), "
           "ReLU(), MaxPool2d(2), Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10)",
    "cnn-bn": "Conv2d(1, 32, 3, padding=1, bias=False), BatchNorm2d(32), ReLU(), MaxPool2d(2), "
              "Conv2d(32, 64, 3, padding=1, bias=False), BatchNorm2d(64), ReLU(), MaxPool2d(2), "
              "Flatten(), Linear(3136, 128, bias=False), BatchNorm1d(128), ReLU(), Linear(128, 10)",
}
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        if os.path.exists(os.path.join(data_dir, name)):
            return os.path.join(data_dir, name)
    sys.exit(f"missing {stem}[.gz] in {data_dir}")


def train_torch(arch, epochs, batch, lr, threads, data_dir, precision="fp32", limit=0):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dims, raw = read_idx(find(data_dir, "train-images-idx3-ubyte"))
    images = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(dims[0], 1, dims[1], dims[2])
                              .astype(np.float32) / 255.0)
    _, raw = read_idx(find(data_dir, "train-labels-idx1-ubyte"))
    labels = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).astype(np.int64))
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    # "Linear(784, 512, bias=False)" -> "nn.Linear(784, 512, bias=False)"
    model = eval("nn.Sequential(" + re.sub(r"\b([A-Z]\w*)\(", r"nn.\1(", arch) + ")", {"nn": nn})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0])
        for begin in range(0, images.shape[0] - batch + 1, batch):
            index = order[begin:begin + batch]
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = loss_fn(model(images[index]), labels[index])
            loss.backward()
            optimizer.step()
    return float(loss)


def timed(command, env, settle):
    # Each process starts on a rested machine: on the 2-core VM a process
    # started right after another one ran slower for several seconds (bnlab's
    # mlp-bn epoch 1.36 s right after a PyTorch epoch, 1.10 s five seconds
    # later, 0.92 s rested), whichever framework came first.
    time.sleep(settle)
    start = time.monotonic()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bnlab", default="build/release/bnlab", help="path to the bnlab executable")
    parser.add_argument("--models", default="mlp-bn,cnn-bn")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds of idle before each timed process (default 5)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: bnlab --precision bf16 against PyTorch's CPU autocast")
    parser.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    parser.add_argument("--torch-only", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.torch_only:
        train_torch(PRESETS[args.torch_only], args.epochs, args.batch, args.lr, args.threads, args.data,
                    args.precision, args.limit)
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results = []
    print(f"{'model':8} {'epochs':>6} {'bnlab s':>9} {'PyTorch s':>10} {'speed-up':>9}")
    for model in args.models.split(","):
        bnlab_s = timed([args.bnlab, "train", "--model", model, "--epochs", str(args.epochs),
                         "--batch", str(args.batch), "--lr", str(args.lr), "--data", args.data,
                         "--precision", args.precision, "--limit", str(args.limit)], env,
                        args.settle)
        torch_s = timed([sys.executable, os.path.abspath(__file__), "--torch-only", model,
                         "--epochs", str(args.epochs), "--batch", str(args.batch), "--lr", str(args.lr),
                         "--threads", str(args.threads), "--data", args.data,
                         "--precision", args.precision, "--limit", str(args.limit)], env, args.settle)
        results.append({"model": model, "epochs": args.epochs, "batch": args.batch,
                        "precision": args.precision, "limit": args.limit,
                        "bnlab_seconds": bnlab_s, "pytorch_seconds": torch_s,
                        "speedup": torch_s / bnlab_s})
        print(f"{model:8} {args.epochs:>6} {bnlab_s:>9.2f} {torch_s:>10.2f} {torch_s / bnlab_s:>8.1f}x")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"threads": args.threads, "settle_seconds": args.settle, "results": results},
                      f, indent=2)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
