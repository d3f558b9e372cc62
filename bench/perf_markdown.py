#!/usr/bin/env python3
"""Turns bnlab_bench JSON reports into the Markdown of docs/performance.md.

Usage: python3 bench/perf_markdown.py REPORT.json [REPORT.json ...] [--stat median|min] > table.md

With several reports (runs of the same cases on the same CPU), each figure is
the median over the runs: a case's ms, and its share of the copy bandwidth and
its ratios to the peers, each computed within its own run first (a run's
bandwidth is the ceiling of that run). The goals are checked on those medians,
as issue 16 asks ("in the median of three runs").

--stat min builds the table from each case's fastest call instead of the median
(for a run on a busy machine, where the median measures the other processes);
GB/s, shares and ratios are then recomputed from those times.

Prints the machine line, the bandwidth, the table (bnlab / oneDNN / PyTorch ms,
ratios, % of the copy bandwidth), the kernel goals checked one by one:
  - tensors larger than the LLC: at least 85% of the copy bandwidth at the
    minimal pass count (train forward 3, inference 2, backward 5);
  - PyTorch: at least 4x on channels-first train forward and backward, never slower;
  - oneDNN: faster on every case;
  - tensors larger than the LLC: channels-last within 15% of channels-first on
    the same tensor and op (issue 16);
and, where the reports have them, the walk rooflines with each kernel row's time
against its walk's.
Standard library only.
"""
import argparse
import json
import statistics
import sys

GOAL_SHARE = 0.85
GOAL_PYTORCH_CF = 4.0
GOAL_LAST_OVER_FIRST = 1.15


def fmt_ms(ms):
    return "-" if ms is None else f"{ms:.3f}"


def fmt_ratio(ratio):
    return "-" if ratio is None else f"{ratio:.2f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_figures(rep, key_ms, best):
    """Per case id: ms of each implementation, share of this run's copy bandwidth, ratios."""
    bw = rep["bandwidth"]
    copy_gbs = bw["copy_gbs_best"] if best else bw["copy_gbs"]
    cases = {}
    for r in rep["results"]:
        ms = r["bnlab"][key_ms]
        gbs = r["passes"] * r["tensor_bytes"] / (ms * 1e-3) / 1e9 if ms > 0 else 0.0
        peer_ms = {k: r[k].get(key_ms) for k in ("onednn", "pytorch")}
        cases[r["id"]] = {
            "ms": ms, "gbs": gbs, "share": gbs / copy_gbs if copy_gbs > 0 else 0.0,
            "peer_ms": peer_ms,
            "ratio": {k: (v / ms if v is not None and ms > 0 else None) for k, v in peer_ms.items()},
        }
    return copy_gbs, cases


# The kernel rows that walk a tensor as each roofline does (bench/rooflines.cpp).
WALK_ROWS = {
    "forward/output_only": ["channels_first/inference_forward", "channels_last/inference_forward",
                            "blocked16/inference_forward"],
    "forward/tensor": ["channels_last/train_forward"],
    "forward/sample_team": ["channels_last/group_norm_forward"],
    "forward/group": ["channels_first/group_norm_forward", "channels_first/train_forward"],
    "backward/tensor": ["channels_last/backward"],
    "backward/sample_team": ["channels_last/group_norm_backward"],
    "backward/group": ["channels_first/group_norm_backward", "channels_first/backward"],
    "bf16_forward/output_only": ["channels_first/bf16_inference_forward",
                                 "channels_last/bf16_inference_forward",
                                 "blocked16/bf16_inference_forward"],
    "bf16_forward/tensor": ["channels_last/bf16_train_forward"],
    "bf16_forward/group": ["channels_first/bf16_train_forward"],
    "bf16_backward/tensor": ["channels_last/bf16_backward"],
    "bf16_backward/group": ["channels_first/bf16_backward"],
}


def roofline_table(reps, runs):
    """The walk rooflines (medians over the runs that have them) and each kernel row's
    time against its walk's: roofline ms / kernel ms within each run, then the median."""
    with_walks = [(rep, cases) for rep, (_, cases) in zip(reps, runs) if rep.get("rooflines")]
    if not with_walks:
        return []
    first = with_walks[0][0]["rooflines"]
    dims = "x".join(str(d) for d in first[0]["dims"])
    out = ["", f"Walk rooflines on {dims} (fp32, and 2-byte elements in the bf16_ walks; GB/s "
           "counts 2 passes forward, 3 backward): the passes each walk forces and nothing more, "
           "and each kernel row's time against its walk's (roofline ms / row ms: 100% is the "
           "walk's speed).", "",
           "| walk | ms | GB/s | % copy | rows at their walk's speed |", "|---|---:|---:|---:|---|"]
    for walk in first:
        name = walk["walk"]
        per_run = []
        for rep, cases in with_walks:
            for w in rep["rooflines"]:
                if w["walk"] == name:
                    per_run.append((w, cases))
        ms = median([w["timing"]["median_ms"] for w, _ in per_run])
        gbs = median([w["timing"]["effective_gbs"] for w, _ in per_run])
        share = median([w["timing"]["share_of_copy_bandwidth"] for w, _ in per_run])
        rows = []
        for row in WALK_ROWS.get(name, []):
            row_id = f"{dims}/{row}"
            at = median([w["timing"]["median_ms"] / cases[row_id]["ms"] for w, cases in per_run
                         if row_id in cases and cases[row_id]["ms"] > 0])
            if at is not None:
                rows.append(f"{row} {100 * at:.0f}%")
        out.append(f"| {name} | {ms:.3f} | {gbs:.1f} | {100 * share:.0f}% | {', '.join(rows) or '-'} |")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reports", nargs="+", metavar="REPORT.json")
    ap.add_argument("--stat", choices=("median", "min"), default="median")
    args = ap.parse_args()
    key_ms = f"{args.stat}_ms"
    reps = []
    for path in args.reports:
        try:
            with open(path) as f:
                reps.append(json.load(f))
            reps[-1]["results"], reps[-1]["machine"]["cpu_model"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.exit(f"perf_markdown.py: {path} is not a bnlab_bench --json report ({e}); "
                     "write one with: build/release/bench/bnlab_bench --json FILE")
    rep = reps[0]
    for path, other in zip(args.reports[1:], reps[1:]):
        if other["machine"]["cpu_model"] != rep["machine"]["cpu_model"]:
            sys.exit(f"perf_markdown.py: {path} was run on '{other['machine']['cpu_model']}', "
                     f"{args.reports[0]} on '{rep['machine']['cpu_model']}': "
                     "combine only runs from one CPU")
    llc = rep["machine"]["llc_bytes"]
    bw = rep["bandwidth"]
    out = []
    out.append(f"Machine: {rep['machine']['cpu_model']}, {rep['machine']['cores_online']} cores, "
               f"LLC {llc / 2**20:.0f} MiB; {rep['threads']} threads; bnlab kernels "
               f"{rep['bnlab_kernel_variant']}.")
    peers = rep["peers"]
    for key, name in (("onednn", "oneDNN"), ("pytorch", "PyTorch")):
        p = peers[key]
        out.append(f"{name}: {p['version'] if p['ran'] else 'skipped (' + p.get('note', '') + ')'}.")
    for k, one in enumerate(reps):
        load = one.get("load_average")
        if load:
            which = f"run {k + 1}: " if len(reps) > 1 else ""
            out.append(f"Load average (1 min) {which}at the start {load['start']:.2f}, at the end {load['end']:.2f}.")
    out.append("")
    # With --stat min the bandwidth is the fastest run's too, so shares compare like with like.
    best = args.stat == "min" and "copy_gbs_best" in bw
    runs = [run_figures(one, key_ms, best) for one in reps]
    if len(reps) == 1:
        copy_gbs = runs[0][0]
        read_gbs = bw["read_gbs_best"] if best else bw["read_gbs"]
        out.append(f"Copy bandwidth: **{copy_gbs:.1f} GB/s** ({'streaming-store copy' if 'memcpy_gbs' in bw else 'memcpy'} of {bw['buffer_bytes'] / 2**20:.0f} MiB, "
                   f"read + write counted, {'fastest' if best else 'median'} of {bw['reps']}"
                   + (f"; the better of {bw['copy_gbs_start']:.1f} at the start and {bw['copy_gbs_end']:.1f} "
                      "at the end (medians)" if "copy_gbs_start" in bw else "") + "); "
                   + (f"glibc memcpy: {bw['memcpy_gbs']:.1f} GB/s; " if "memcpy_gbs" in bw else "")
                   + f"read-only (sum): {read_gbs:.1f} GB/s.")
    else:
        out.append(f"{len(reps)} runs; copy bandwidth of each run: "
                   + ", ".join(f"{c:.1f}" for c, _ in runs)
                   + " GB/s. Every figure below is the median over the runs, each share and ratio "
                   "computed within its run first.")
    out.append("")
    out.append(f"ms: {args.stat} of the timed calls; GB/s: passes x tensor bytes / time; % copy: of the copy bandwidth; "
               "x: peer ms / bnlab ms (above 1: bnlab faster); * tensor larger than the LLC.")
    out.append("")
    out.append("| shape | layout | op | MiB | bnlab ms | GB/s | % copy | oneDNN ms | x | PyTorch ms | x |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    misses = []
    for r in rep["results"]:
        per_run = [cases[r["id"]] for _, cases in runs if r["id"] in cases]
        ms = median([c["ms"] for c in per_run])
        gbs = median([c["gbs"] for c in per_run])
        share = median([c["share"] for c in per_run])
        peer_ms = {k: median([c["peer_ms"][k] for c in per_run]) for k in ("onednn", "pytorch")}
        ratio = {k: median([c["ratio"][k] for c in per_run]) for k in ("onednn", "pytorch")}
        mib = r["tensor_bytes"] / 2**20
        big = llc > 0 and r["tensor_bytes"] > llc
        dims = "x".join(str(d) for d in r["dims"])
        if r["id"].endswith("/align16"):
            dims += "@16"  # buffers 16 bytes past a 64-byte boundary, as the bench's table says
        out.append(f"| {dims} | {r['layout']} | {r['op']} | {mib:.1f}{' *' if big else ''} | "
                   f"{ms:.3f} | {gbs:.1f} | {100 * share:.0f}% | "
                   f"{fmt_ms(peer_ms['onednn'])} | {fmt_ratio(ratio['onednn'])} | "
                   f"{fmt_ms(peer_ms['pytorch'])} | {fmt_ratio(ratio['pytorch'])} |")
        why = []
        if big and share < GOAL_SHARE:
            why.append(f"{100 * share:.0f}% of copy bandwidth (goal {100 * GOAL_SHARE:.0f}%)")
        for key, name in (("onednn", "oneDNN"), ("pytorch", "PyTorch")):
            if ratio[key] is not None and ratio[key] < 1.0:
                why.append(f"slower than {name} ({ratio[key]:.2f}x)")
        pt = ratio["pytorch"]
        if (pt is not None and r["layout"] == "channels_first"
                and r["op"] in ("train_forward", "backward", "forward_backward")
                and pt < GOAL_PYTORCH_CF):
            why.append(f"{pt:.2f}x PyTorch (goal {GOAL_PYTORCH_CF:.0f}x on channels-first)")
        # channels-last over channels-first, within each run (the machine's state moves
        # between runs), then the median.
        first_id = r["id"].replace("/channels_last/", "/channels_first/")
        last_over_first = median([cases[r["id"]]["ms"] / cases[first_id]["ms"]
                                  for _, cases in runs
                                  if r["id"] in cases and first_id in cases
                                  and cases[first_id]["ms"] > 0])
        if (big and r["layout"] == "channels_last" and last_over_first is not None
                and last_over_first > GOAL_LAST_OVER_FIRST):
            why.append(f"{last_over_first:.2f}x channels-first's time "
                       f"(goal {GOAL_LAST_OVER_FIRST:.2f}x)")
        if why:
            misses.append(f"- {r['id']}: " + "; ".join(why))
    out.append("")
    out.append("Cases that miss a goal:")
    out.extend(misses if misses else ["- none"])
    out.extend(roofline_table(reps, runs))
    print("\n".join(out))


if __name__ == "__main__":
    main()
