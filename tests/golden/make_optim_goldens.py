#!/usr/bin/python3
"""PyTorch goldens for bnlab's optimizers, gradient clipping, label smoothing and
learning-rate schedules (issue 13).

Run BY HAND with Debian's PyTorch (torch 1.13), never in CI:

    /usr/bin/python3 tests/golden/make_optim_goldens.py

tests/optim/optim_golden_test.cpp reads the outputs and runs the same steps in bnlab.

Output (floats are Python's repr of the float32 or float64 value: exact round trip):

tests/golden/optim/optimizers.json: {case name: case}, each case
  "optimizer":  {"name": "sgd"|"adam"|"adamw", "lr", and the case's settings:
                 "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps"}
  "clip":       max_norm given to clip_grad_norm_ before each step, or null
  "shapes":     the parameters' shapes
  "initial":    the parameters' values before the first step (flat, row-major)
  "grads":      per step, each parameter's gradient as set before that step
  "norms":      per step, clip_grad_norm_'s returned total norm (only with "clip")
  "values":     per step, each parameter's values after that step

tests/golden/optim/label_smoothing.json: {case name: case}, each case
  "label_smoothing", "shape" [N, K], "logits" (flat), "labels",
  "loss" (CrossEntropyLoss(label_smoothing=...) of the logits, mean reduction),
  "grad" (its gradient w.r.t. the logits, flat)

tests/golden/optim/schedules.json: {case name: case}, each case
  "schedule":   bnlab's --lr-schedule text; "warmup_epochs"; "lr" (the base lr);
  "epochs"; "steps_per_epoch"
  "lrs":        the optimizer's lr at every step, epoch by epoch (epochs * steps_per_epoch
                values), read from optimizer.param_groups[0]["lr"] before the step, the
                per-epoch schedulers stepped after each epoch and OneCycleLR after each step
"""
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "optim")
STEPS = 5
SHAPES = [[3, 4], [5]]


def floats(tensor):
    return [float(v) for v in tensor.detach().reshape(-1).tolist()]


def optimizer_case(settings, clip, seed):
    generator = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]
    initial = [floats(p) for p in params]
    name = settings["name"]
    if name == "sgd":
        optimizer = torch.optim.SGD(params, lr=settings["lr"], momentum=settings["momentum"],
                                    dampening=settings["dampening"],
                                    weight_decay=settings["weight_decay"],
                                    nesterov=settings["nesterov"])
    elif name == "adam":
        optimizer = torch.optim.Adam(params, lr=settings["lr"], betas=tuple(settings["betas"]),
                                     eps=settings["eps"], weight_decay=settings["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(params, lr=settings["lr"], betas=tuple(settings["betas"]),
                                      eps=settings["eps"], weight_decay=settings["weight_decay"])
    grads, norms, values = [], [], []
    for step in range(STEPS):
        # Large gradients on some steps, so clipping both acts and does not.
        scale = 3.0 if step % 2 == 0 else 0.05
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator) * scale
        grads.append([floats(p.grad) for p in params])
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip)))
        optimizer.step()
        values.append([floats(p) for p in params])
    case = {"optimizer": settings, "clip": clip, "shapes": SHAPES, "initial": initial,
            "grads": grads, "values": values}
    if clip is not None:
        case["norms"] = norms
    return case


def label_smoothing_case(smoothing, n, k, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, k, generator=generator) * 2.0).requires_grad_()
    labels = torch.randint(0, k, (n,), generator=generator)
    loss = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, labels)
    loss.backward()
    return {"label_smoothing": smoothing, "shape": [n, k], "logits": floats(logits),
            "labels": [int(v) for v in labels.tolist()], "loss": float(loss.item()),
            "grad": floats(logits.grad)}


def schedule_case(text, warmup, lr, epochs, steps_per_epoch):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler
    per_step = text == "onecycle"
    if text == "onecycle":
        main = sched.OneCycleLR(optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                cycle_momentum=False)
    elif text.startswith("step:"):
        _, size, gamma = text.split(":")
        main = sched.StepLR(optimizer, step_size=int(size), gamma=float(gamma))
    elif text.startswith("multistep:"):
        _, milestones, gamma = text.split(":")
        main = sched.MultiStepLR(optimizer, milestones=[int(m) for m in milestones.split(",")],
                                 gamma=float(gamma))
    elif text == "cosine":
        main = sched.CosineAnnealingLR(optimizer, T_max=epochs - warmup, eta_min=0.0)
    else:
        main = None  # constant
    if warmup > 0:
        warm = sched.LinearLR(optimizer, start_factor=0.01, total_iters=warmup)
        scheduler = sched.SequentialLR(optimizer, [warm, main], milestones=[warmup]) if main else warm
    else:
        scheduler = main
    lrs = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()
            if per_step:
                scheduler.step()
        if scheduler is not None and not per_step:
            scheduler.step()
    return {"schedule": text, "warmup_epochs": warmup, "lr": lr, "epochs": epochs,
            "steps_per_epoch": steps_per_epoch, "lrs": lrs}


def write(name, cases):
    path = os.path.join(OUT_DIR, name + ".json")
    with open(path, "w") as f:
        json.dump(cases, f)
        f.write("\n")
    print(f"{path}: {len(cases)} cases")


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    sgd = {"name": "sgd", "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "nesterov": False,
           "weight_decay": 0.0}
    adam = {"name": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
    optimizers = {
        "sgd_nesterov": optimizer_case(dict(sgd, momentum=0.9, nesterov=True, weight_decay=1e-3),
                                       None, 1),
        "sgd_dampening": optimizer_case(dict(sgd, momentum=0.8, dampening=0.3, weight_decay=1e-3),
                                        None, 2),
        "adam_betas_eps": optimizer_case(dict(adam, betas=[0.8, 0.95], eps=1e-3, weight_decay=0.01),
                                         None, 3),
        "adamw_default": optimizer_case(dict(adam, name="adamw", weight_decay=0.01), None, 4),
        "adamw_betas": optimizer_case(dict(adam, name="adamw", lr=0.05, betas=[0.85, 0.98],
                                           eps=1e-6, weight_decay=0.1), None, 5),
        "sgd_momentum_clip": optimizer_case(dict(sgd, momentum=0.9), 1.0, 6),
        "adamw_clip": optimizer_case(dict(adam, name="adamw", weight_decay=0.01), 0.5, 7),
    }
    write("optimizers", optimizers)
    write("label_smoothing", {
        "smoothing_0.1": label_smoothing_case(0.1, 6, 5, 10),
        "smoothing_0.3": label_smoothing_case(0.3, 4, 10, 11),
        "smoothing_1.0": label_smoothing_case(1.0, 3, 4, 12),
        "smoothing_0": label_smoothing_case(0.0, 5, 3, 13),
    })
    write("schedules", {
        "step": schedule_case("step:3:0.5", 0, 0.1, 12, 1),
        "multistep": schedule_case("multistep:2,5,9:0.1", 0, 0.1, 12, 1),
        "cosine": schedule_case("cosine", 0, 0.1, 12, 1),
        "warmup_cosine": schedule_case("cosine", 3, 0.1, 12, 1),
        "warmup_step": schedule_case("step:3:0.5", 2, 0.05, 12, 1),
        "warmup_multistep": schedule_case("multistep:2,5:0.2", 2, 0.1, 10, 1),
        "warmup_constant": schedule_case("constant", 4, 0.1, 8, 1),
        "onecycle": schedule_case("onecycle", 0, 0.1, 4, 7),
        "onecycle_short": schedule_case("onecycle", 0, 0.02, 1, 5),
    })


if __name__ == "__main__":
    main()
