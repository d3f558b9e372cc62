#!/usr/bin/env python3
"""The communication cost model of docs/distributed.md, as a table.

Per step of data-parallel training on K machines (one process each):
  gradient sum (ring allreduce, per bucket of g bytes):  2(K-1)/K * g / BW + 2(K-1) * alpha
  SyncBN (2 allgathers per BN layer of m bytes per rank, Bruck/recursive doubling):
                                                      ceil(log2 K) * alpha + (K-1) * m / BW
The gradient sum can hide behind the backward (all of it but the last bucket's); SyncBN's
collectives cannot (the forward and the backward wait for them).

Usage: python3 bench/dist_cost_model.py [--alpha-10g 30e-6] [--alpha-100g 3e-6]
The latencies are assumptions (typical TCP over 10 GbE, RDMA at 100 Gbit/s), not measurements.
"""
import argparse
import math

# Parameters (float32) and BatchNorm channels of each model.
MODELS = {
    # conv 288 + BN(32) 64 + conv 18432 + BN(64) 128 + linear 401408 + BN(128) 256 + linear 1290
    "cnn-bn": {"params": 421_866, "bn_channels": [32, 64, 128], "buckets": 2},
    # linear 401408 + BN(512) 1024 + linear 131072 + BN(256) 512 + linear 2570
    "mlp-bn": {"params": 536_586, "bn_channels": [512, 256], "buckets": 2},
    # torchvision's resnet50: 25,557,032 parameters, 53 BatchNorm2d layers, 26,560 channels
    "resnet-50": {"params": 25_557_032, "bn_layers": 53, "bn_channel_total": 26_560},
}


def gradient_sum(k, total_bytes, count, bandwidth, alpha):
    if k == 1:
        return 0.0
    return 2 * (k - 1) / k * total_bytes / bandwidth + count * 2 * (k - 1) * alpha


def sync_bn(k, model, bandwidth, alpha):
    if k == 1:
        return 0.0
    layers = model.get("bn_layers", len(model.get("bn_channels", [])))
    channels = model.get("bn_channel_total", sum(model.get("bn_channels", [])))
    # forward: (1 + 2c) doubles per rank, backward: 2c doubles per rank
    bytes_per_rank = 8 * (layers + 4 * channels)
    return 2 * layers * math.ceil(math.log2(k)) * alpha + (k - 1) * bytes_per_rank / bandwidth


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alpha-10g", type=float, default=30e-6)
    parser.add_argument("--alpha-100g", type=float, default=3e-6)
    parser.add_argument("--resnet-bucket-kb", type=float, default=25 * 1024)
    args = parser.parse_args()
    networks = [("10 Gbit/s", 10e9 / 8, args.alpha_10g), ("100 Gbit/s", 100e9 / 8, args.alpha_100g)]
    print("| model | network | K | gradient sum ms | of which latency ms | SyncBN ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name, model in MODELS.items():
        total = 4 * model["params"]
        # Buckets close at whole modules: the presets' counts are what train's --json reports.
        count = model.get("buckets") or math.ceil(total / (1024 * args.resnet_bucket_kb))
        for label, bandwidth, alpha in networks:
            for k in (8, 16, 32, 64):
                g = gradient_sum(k, total, count, bandwidth, alpha)
                latency = count * 2 * (k - 1) * alpha
                s = sync_bn(k, model, bandwidth, alpha)
                print(f"| {name} | {label} | {k} | {1e3 * g:.2f} | {1e3 * latency:.2f} | {1e3 * s:.2f} |")


if __name__ == "__main__":
    main()
