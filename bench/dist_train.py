#!/usr/bin/env python3
"""Data-parallel training speed: steps per second and where a step's time goes.

For each model, runs `bnlab train --json` as
    1 process  x 2 threads                    (the baseline, no MPI)
    K processes x 1 thread, without and with --sync-bn, overlapped gradient sums
    K processes x 1 thread, --sync-bn, --no-overlap (gradient sums after the backward)
for each K of --processes, and prints one table row per run from the
`distributed.per_step_seconds` breakdown train writes (rank 0's clock):
steps per second over the whole training time, and per step: forward, backward
(with SyncBN's backward collective), SyncBN's collectives,
the gradient sum's exposed wait, and the overlap: 1 - exposed wait / the wait
with --no-overlap (the whole sum). Every process runs on this machine, so
K x 1 thread shares the cores the baseline has (set --processes to at most
the core count for a fair row).

Usage:
    python3 bench/dist_train.py --bnlab build/release/bnlab [--models mlp-bn,cnn-bn]
        [--processes 2,3] [--batch 64] [--limit 12000] [--json out.json]
`--batch` is the global batch: each of K processes takes batch/K.
"""
import argparse
import json
import os
import subprocess
import sys


def run(command, env):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bnlab", default="build/release/bnlab")
    parser.add_argument("--models", default="mlp-bn,cnn-bn")
    parser.add_argument("--processes", default="2")
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--limit", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--json", help="write every run's results here")
    args = parser.parse_args()

    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    common = ["train", "--epochs", str(args.epochs), "--limit", str(args.limit), "--json"]
    rows = []
    for model in args.models.split(","):
        # Steps per second over the whole training time (batches gathered included).
        steps = args.epochs * ((args.limit + args.batch - 1) // args.batch)
        base = run([args.bnlab] + common + ["--model", model, "--batch", str(args.batch),
                                            "--threads", "2"], env)
        rows.append({"model": model, "run": "1 x 2 threads", "steps_per_second": steps / base["seconds"],
                     "t": None})
        for k in [int(p) for p in args.processes.split(",")]:
            if args.batch % k:
                sys.exit(f"--batch {args.batch} is not a multiple of {k} processes")
            mpirun = ["mpirun", "--oversubscribe", "-np", str(k), "-x", "OMP_NUM_THREADS=1"]
            wait_whole = None
            for label, extra in [(f"{k} x 1, no sync-bn", []),
                                 (f"{k} x 1, sync-bn, no overlap", ["--sync-bn", "--no-overlap"]),
                                 (f"{k} x 1, sync-bn", ["--sync-bn"])]:
                r = run(mpirun + [args.bnlab] + common +
                        ["--model", model, "--batch", str(args.batch // k), "--threads", "1"] + extra,
                        env)
                t = r["distributed"]["per_step_seconds"]
                if "no overlap" in label:
                    wait_whole = t["gradient_wait"]
                overlap = None
                if wait_whole and "no overlap" not in label and "no sync" not in label:
                    overlap = 1.0 - t["gradient_wait"] / wait_whole
                rows.append({"model": model, "run": label, "steps_per_second": steps / r["seconds"],
                             "t": t, "overlap": overlap, "epoch_seconds": r["seconds"]})

    print("| model | run | steps/s | forward ms | backward ms | SyncBN collectives ms (count) "
          "| gradient sum: start ms | exposed wait ms | overlap |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        t = row["t"]
        if t is None:
            print(f"| {row['model']} | {row['run']} | {row['steps_per_second']:.1f} | | | | | | |")
            continue
        overlap = "" if row.get("overlap") is None else f"{100 * row['overlap']:.0f}%"
        print(f"| {row['model']} | {row['run']} | {row['steps_per_second']:.1f} "
              f"| {1e3 * t['forward']:.2f} | {1e3 * t['backward']:.2f} "
              f"| {1e3 * t['sync_bn']:.2f} ({t['sync_bn_collectives']:.0f}) "
              f"| {1e3 * t['gradient_start']:.2f} | {1e3 * t['gradient_wait']:.2f} | {overlap} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
