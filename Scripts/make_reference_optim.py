#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that Tests/BackpropTests/OptimizerReferenceTests.swift checks.

Usage (from the repository root; needs torch and numpy, CPU only):

    python Scripts/make_reference_optim.py            # writes Tests/BackpropTests/Fixtures/optim_*.json
    python Scripts/make_reference_optim.py --seed 7   # another draw (tests must still pass)

Files
-----
optim_sgd.json      torch.optim.SGD: momentum, dampening, Nesterov, coupled weight decay (only
                    on the `weight` parameter, via a param group with weight_decay=0 for `bias`;
                    in `scaled_bias_decay` `bias` has a group with lr·8 and weight_decay wd/8,
                    Backprop's `learningRateScale` 8 on a decaying parameter),
                    plain SGD; decoupled decay (`p.mul_(1 - lr*wd)` before an SGD step without
                    decay, AdamW's rule: torch.optim.SGD has no such option); and SGD driven by
                    OneCycleLR with momentum cycling.
optim_adamw.json    torch.optim.AdamW with weight decay on `weight` only (param groups), a large
                    eps (so that where eps is added shows), and AdamW driven by OneCycleLR cycling
                    betas[0].
optim_muon.json     airbench94_muon's Muon on two convolution filters (a wide `filter` [6, 2, 3, 3]
                    and a tall `tall` [5, 1, 1, 2], whose 5 × 2 matrix is orthogonalised as its
                    transpose) beside torch.optim.SGD (Nesterov, coupled decay on `weight` [4, 3]
                    only) for the rest; written here from airbench's code, in float64; one case
                    with a constant rate, one under a linear one-cycle schedule, where the
                    filters' rate follows the base rate in proportion.
optim_schedules.json  the learning rates (and momenta) over every step of OneCycleLR (cos and
                    linear, with momentum cycling), StepLR, CosineAnnealingLR and
                    SequentialLR(LinearLR warm-up, CosineAnnealingLR), each with the Backprop
                    schedule string that should reproduce it.

Step indexing: `lrs[t]` (and `momenta[t]`) is the value the (t+1)-th optimizer.step() used,
i.e. the optimizer's param_group value after t calls of scheduler.step() — torch steps the
scheduler after each optimizer step.

Precision
---------
As in make_reference.py: parameters and gradients are drawn in float32 and stored exactly
(shortest round-trip decimal); the optimizer runs in float64 on those exact values and each
result is rounded once to float32 on output. Learning rates and momenta are float64.

Each optimizer case has parameters `weight` [4, 3] (decays) and `bias` [4] (no decay), their
initial values, and per step the gradients given to the optimizer (random, not from a loss, so
the case tests the update rule alone), the lr and momentum of that step, and the parameters
after it.
"""

import argparse
import math
import os
import platform
import sys

import numpy as np
import torch

from reference_fixtures import FIXTURES, dump, f32, tensor_json

DEFAULT_SEED = 20240602
SHAPES = {"weight": [4, 3], "bias": [4]}


# MARK: - Helpers


def make_parameters(gen, shapes=SHAPES):
    return {name: torch.nn.Parameter(f32(shape, gen)) for name, shape in shapes.items()}


def groups(params, weight_decay):
    """`weight` decays, `bias` does not (torch's usual no-decay param group)."""
    return [{"params": [params["weight"]], "weight_decay": weight_decay},
            {"params": [params["bias"]], "weight_decay": 0.0}]


def momentum_of(group):
    return group["betas"][0] if "betas" in group else group["momentum"]


def run_optimizer(gen, make, steps, scheduler=None, before_step=None, settings=None, shapes=SHAPES, after_step=None):
    """Runs `steps` optimizer steps on random float32 gradients and records everything;
    `before_step` / `after_step(params, group)` run around each `optimizer.step()`."""
    params = make_parameters(gen, shapes)
    initial = {name: tensor_json(p) for name, p in params.items()}
    optimizer = make(params)
    sched = scheduler(optimizer) if scheduler else None
    record = []
    for _ in range(steps):
        grads = {name: f32(p.shape, gen) for name, p in params.items()}
        for name, p in params.items():
            p.grad = grads[name].clone()
        group = optimizer.param_groups[0]
        lr, momentum = group["lr"], momentum_of(group)
        if before_step:
            with torch.no_grad():
                before_step(params, group)
        optimizer.step()
        if after_step:
            with torch.no_grad():
                after_step(params, lr)
        if sched:
            sched.step()
        record.append({"learning_rate": lr, "momentum": momentum,
                       "gradients": {n: tensor_json(g) for n, g in grads.items()},
                       "parameters": {n: tensor_json(p) for n, p in params.items()}})
    return {"settings": settings or {}, "initial": initial, "steps": record}


# MARK: - Cases

def sgd_cases(seed):
    def gen(offset):
        return torch.Generator().manual_seed(seed + offset)

    def sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        return lambda params: torch.optim.SGD(groups(params, weight_decay), lr=lr, momentum=momentum,
                                              dampening=dampening, nesterov=nesterov)

    def settings(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, decoupled=False):
        return {"learning_rate": lr, "momentum": momentum, "dampening": dampening, "nesterov": nesterov,
                "weight_decay": weight_decay, "decoupled_weight_decay": decoupled}

    decoupled_wd = 0.05

    def decoupled(params, group):
        # AdamW's decoupled decay, on `weight` only, then torch's SGD step without decay.
        params["weight"].mul_(1 - group["lr"] * decoupled_wd)

    return {
        "momentum": run_optimizer(gen(1), sgd(0.1, momentum=0.9), 4, settings=settings(0.1, momentum=0.9)),
        "momentum_weight_decay": run_optimizer(gen(2), sgd(0.1, momentum=0.9, weight_decay=0.05), 4,
                                               settings=settings(0.1, momentum=0.9, weight_decay=0.05)),
        "nesterov_weight_decay": run_optimizer(gen(3), sgd(0.1, momentum=0.9, nesterov=True, weight_decay=0.05), 4,
                                               settings=settings(0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
        "dampening": run_optimizer(gen(4), sgd(0.1, momentum=0.9, dampening=0.5), 4,
                                   settings=settings(0.1, momentum=0.9, dampening=0.5)),
        "plain_weight_decay": run_optimizer(gen(5), sgd(0.1, weight_decay=0.05), 3,
                                            settings=settings(0.1, weight_decay=0.05)),
        "decoupled_weight_decay": run_optimizer(gen(6), sgd(0.1, momentum=0.9, nesterov=True), 4, before_step=decoupled,
                                                settings=settings(0.1, momentum=0.9, nesterov=True,
                                                                  weight_decay=decoupled_wd, decoupled=True)),
        # airbench's BatchNorm biases: a group with lr·s and weight_decay wd/s (s = bias_scaler).
        "scaled_bias_decay": run_optimizer(
            gen(8), lambda params: torch.optim.SGD(
                [{"params": [params["weight"]], "weight_decay": 0.05},
                 {"params": [params["bias"]], "lr": 0.1 * 8, "weight_decay": 0.05 / 8}],
                lr=0.1, momentum=0.9, nesterov=True), 4,
            settings={**settings(0.1, momentum=0.9, nesterov=True, weight_decay=0.05), "bias_lr_scale": 8, "bias_decays": True}),
        "onecycle": run_optimizer(
            gen(7), sgd(0.1, momentum=0.9, weight_decay=0.05), 8,
            scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=8),
            settings={**settings(0.1, momentum=0.9, weight_decay=0.05), "schedule": "onecycle", "total_steps": 8}),
    }


def adamw_cases(seed):
    def gen(offset):
        return torch.Generator().manual_seed(seed + 100 + offset)

    def adamw(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1):
        return lambda params: torch.optim.AdamW(groups(params, weight_decay), lr=lr, betas=betas, eps=eps)

    def settings(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1):
        return {"learning_rate": lr, "beta1": betas[0], "beta2": betas[1], "epsilon": eps, "weight_decay": weight_decay}

    return {
        "weight_decay": run_optimizer(gen(1), adamw(0.01), 5, settings=settings(0.01)),
        "large_eps": run_optimizer(gen(2), adamw(0.01, betas=(0.8, 0.99), eps=0.1, weight_decay=0.3), 4,
                                   settings=settings(0.01, betas=(0.8, 0.99), eps=0.1, weight_decay=0.3)),
        "onecycle": run_optimizer(
            gen(3), adamw(0.01), 8,
            scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(
                o, max_lr=0.01, total_steps=8, anneal_strategy="linear", base_momentum=0.8, max_momentum=0.9),
            settings={**settings(0.01), "schedule": "onecycle:anneal_strategy=linear,base_momentum=0.8,max_momentum=0.9",
                      "total_steps": 8}),
    }


def newton_schulz(g, steps=3):
    """airbench94_muon's `zeropower_via_newtonschulz5`, in the input's precision."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    if g.size(0) > g.size(1):
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    if g.size(0) > g.size(1):
        x = x.T
    return x


def muon_case(seed, steps, lr, muon_lr, muon_momentum, schedule=None, total_steps=None):
    """Muon (airbench94_muon's `Muon.step`, with Nesterov) on `filter` and `tall`; torch SGD
    (momentum 0.85, Nesterov, decay 0.05 on `weight`) on `weight` and `bias`."""
    shapes = {"filter": [6, 2, 3, 3], "tall": [5, 1, 1, 2], "weight": [4, 3], "bias": [4]}
    buffers = {}

    def muon_step(params, step_lr):
        for name in ("filter", "tall"):
            p, g = params[name], params[name].grad
            buf = buffers.setdefault(name, torch.zeros_like(p))
            buf.mul_(muon_momentum).add_(g)
            g = g.add(buf, alpha=muon_momentum)
            p.data.mul_(len(p.data) ** 0.5 / p.data.norm())
            update = newton_schulz(g.reshape(len(g), -1)).view(g.shape)
            p.data.add_(update, alpha=-muon_lr * step_lr / lr)

    settings = {"learning_rate": lr, "momentum": 0.85, "nesterov": True, "weight_decay": 0.05,
                "muon_learning_rate": muon_lr, "muon_momentum": muon_momentum}
    scheduler = None
    if schedule:
        settings.update(schedule=schedule, total_steps=total_steps)
        scheduler = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=lr, total_steps=total_steps, pct_start=0.25,
                                                                   anneal_strategy="linear", cycle_momentum=False)
    # SGD sees only `weight` and `bias`; the filters are Muon's.
    make = lambda params: torch.optim.SGD(groups(params, 0.05), lr=lr, momentum=0.85, nesterov=True)
    return run_optimizer(torch.Generator().manual_seed(seed), make, steps, scheduler=scheduler, settings=settings,
                         shapes=shapes, after_step=muon_step)


def muon_cases(seed):
    return {
        "constant": muon_case(seed + 200, 4, 0.1, 0.24, 0.6),
        "onecycle": muon_case(seed + 201, 8, 0.1, 0.3, 0.5,
                              schedule="onecycle:pct_start=0.25,anneal_strategy=linear,cycle_momentum=false", total_steps=8),
    }


def schedule_case(make_optimizer, make_scheduler, schedule, base_lr, total_steps, recorded_steps=None, cycles_momentum=False):
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = make_optimizer([param], base_lr)
    scheduler = make_scheduler(optimizer)
    lrs, momenta = [], []
    for _ in range(recorded_steps or total_steps):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(momentum_of(group))
        param.grad = torch.zeros_like(param)
        optimizer.step()
        scheduler.step()
    return {"schedule": schedule, "base_learning_rate": base_lr, "total_steps": total_steps,
            "learning_rates": lrs, "momenta": momenta if cycles_momentum else None}


def schedule_cases():
    sched = torch.optim.lr_scheduler

    def sgd(params, lr):
        return torch.optim.SGD(params, lr=lr, momentum=0.9)

    def adam(params, lr):
        return torch.optim.Adam(params, lr=lr)

    return {
        "onecycle_cos": schedule_case(sgd, lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=50),
                                      "onecycle", 0.1, 50, cycles_momentum=True),
        "onecycle_linear": schedule_case(
            adam, lambda o: sched.OneCycleLR(o, max_lr=0.004, total_steps=37, pct_start=0.25, anneal_strategy="linear",
                                             div_factor=10, final_div_factor=100, base_momentum=0.8, max_momentum=0.9),
            "onecycle:pct_start=0.25,anneal_strategy=linear,div_factor=10,final_div_factor=100,base_momentum=0.8,max_momentum=0.9",
            0.004, 37, cycles_momentum=True),
        # pct_start × steps = 0.4 < 1: the rising phase holds no step; the first is already on the way down.
        "onecycle_short_rise": schedule_case(
            sgd, lambda o: sched.OneCycleLR(o, max_lr=0.1, total_steps=20, pct_start=0.02, anneal_strategy="linear"),
            "onecycle:pct_start=0.02,anneal_strategy=linear", 0.1, 20, cycles_momentum=True),
        "step": schedule_case(sgd, lambda o: sched.StepLR(o, step_size=7, gamma=0.5), "step:7:0.5", 0.1, 40),
        # One step past T_max: torch reaches eta_min at t = T_max, Backprop stays there.
        "cosine": schedule_case(sgd, lambda o: sched.CosineAnnealingLR(o, T_max=30, eta_min=0.001),
                                "cosine:0.01", 0.1, 30, recorded_steps=31),
        "warmup_cosine": schedule_case(
            sgd, lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.1, total_iters=10),
                                                  sched.CosineAnnealingLR(o, T_max=40)], milestones=[10]),
            "warmup:10:0.1+cosine", 0.05, 50),
        "warmup_step": schedule_case(
            sgd, lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.01, total_iters=5),
                                                  sched.StepLR(o, step_size=4, gamma=0.1)], milestones=[5]),
            "warmup:5+step:4:0.1", 0.2, 20),
    }


# MARK: - Output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", default=FIXTURES)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    header = {
        "generator": "Scripts/make_reference_optim.py",
        "command": " ".join(["python", "Scripts/make_reference_optim.py"] + sys.argv[1:]),
        "seed": args.seed,
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "precision": "parameters/gradients float32; optimizer run in float64 on them, results stored rounded to "
                     "float32; learning rates and momenta float64",
        "step_indexing": "learning_rates[t] / momenta[t] / steps[t] are those of the (t+1)-th optimizer.step(); "
                         "torch's scheduler.step() follows each optimizer step",
    }
    files = {
        "optim_sgd.json": sgd_cases(args.seed),
        "optim_adamw.json": adamw_cases(args.seed),
        "optim_muon.json": muon_cases(args.seed),
        "optim_schedules.json": schedule_cases(),
    }
    total = 0
    for name, cases in files.items():
        size = dump(os.path.join(args.out, name), {**header, "file": name}, cases)
        total += size
        print(f"{name}: {size} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    main()
