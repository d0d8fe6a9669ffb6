#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures that Tests/BackpropTests/ReferenceTests.swift checks.

Usage (from the repository root; needs torch and numpy, CPU only):

    python Scripts/make_reference.py            # writes Tests/BackpropTests/Fixtures/*.json
    python Scripts/make_reference.py --seed 7   # another draw (tests must still pass)

Precision
---------
Every input, parameter and upstream gradient is drawn in float32, and the fixture stores
those float32 values exactly (shortest round-trip decimal). The expected results are then
computed by PyTorch in **float64** from those exact values and rounded once to float32 on
output (losses are kept as float64). So a fixture holds the float32-rounded *exact* answer for
the float32 inputs Backprop sees, and the Swift tests' tolerances only have to cover Backprop's
own float32 rounding, not PyTorch's.

Layouts are PyTorch's and Backprop's: NCHW row-major tensors, conv weight [out, in, kh, kw],
dense weight [out, in]. Each tensor is {"shape": [...], "data": [...]} in row-major order.

For a single layer, the scalar whose gradients are recorded is `sum(output * upstream)` with a
random `upstream` (not ones, so a gradient routed to the wrong output element shows), hence
`output_gradient = upstream` and `input_gradient`, `weight_gradient`, `bias_gradient` are
d/d(input, weight, bias) of that scalar.

Decisions that are made on exact comparisons (ReLU's sign, max pooling's argmax) are kept away
from ties: the generator redraws until every ReLU input is at least MARGIN from zero and every
pooling window's largest value beats the runner-up by at least MARGIN, so float32 rounding in
Backprop cannot flip them. In the whole-network case this is checked at every optimizer step.

The optimizer is the course's momentum SGD (Backprop's `SGD`), written out by hand here because
it is *not* torch.optim.SGD:  m = mu*m + (1-mu)*g;  w = w - lr*(m + lambda*w),  m starting at 0.
"""

import argparse
import os
import platform
import sys

import numpy as np
import torch
import torch.nn.functional as F

from reference_fixtures import FIXTURES, dump, f32, leaf, tensor_json

MARGIN = 1e-3            # distance of ReLU inputs from 0, and of pooling maxima from runners-up
NET_MARGIN = 1e-4        # the same for the whole network's hidden activations (many more of them)
DEFAULT_SEED = 20240601


# MARK: - Helpers


def relu_margin(x):
    return x.abs().min().item()


def pool_margin(x, size, stride):
    """The smallest gap between a window's maximum and its runner-up, over windows whose maximum
    is positive (windows of ReLU zeros tie harmlessly: the gradient there is zero either way)."""
    n, c, h, w = x.shape
    cols = F.unfold(x.reshape(n * c, 1, h, w), kernel_size=size, stride=stride)  # [nc, size², windows]
    top2 = cols.topk(2, dim=1).values
    gaps = top2[:, 0, :] - top2[:, 1, :]
    relevant = top2[:, 0, :] > 0
    return gaps[relevant].min().item() if relevant.any() else float("inf")


# MARK: - Cases

def conv2d_case(gen, n, cin, cout, k, stride, padding, h, w):
    x = leaf(f32([n, cin, h, w], gen))
    weight = leaf(f32([cout, cin, k, k], gen, scale=(2.0 / (cin * k * k)) ** 0.5))
    bias = leaf(f32([cout], gen, scale=0.1))
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    upstream = f32(list(y.shape), gen)
    (y * upstream).sum().backward()
    return {
        "input_channels": cin, "output_channels": cout, "kernel_size": k, "stride": stride, "padding": padding,
        "input": tensor_json(x), "weight": tensor_json(weight), "bias": tensor_json(bias),
        "output": tensor_json(y), "output_gradient": tensor_json(upstream),
        "input_gradient": tensor_json(x.grad), "weight_gradient": tensor_json(weight.grad),
        "bias_gradient": tensor_json(bias.grad),
    }


def dense_case(gen, n, fin, fout):
    x = leaf(f32([n, fin], gen))
    weight = leaf(f32([fout, fin], gen, scale=(2.0 / fin) ** 0.5))
    bias = leaf(f32([fout], gen, scale=0.1))
    y = F.linear(x, weight, bias)
    upstream = f32(list(y.shape), gen)
    (y * upstream).sum().backward()
    return {
        "input_size": fin, "output_size": fout,
        "input": tensor_json(x), "weight": tensor_json(weight), "bias": tensor_json(bias),
        "output": tensor_json(y), "output_gradient": tensor_json(upstream),
        "input_gradient": tensor_json(x.grad), "weight_gradient": tensor_json(weight.grad),
        "bias_gradient": tensor_json(bias.grad),
    }


def relu_case(gen, shape):
    x = f32(shape, gen)
    while relu_margin(x) < MARGIN:       # redraw the offending entries only
        near = x.abs() < MARGIN
        x[near] = f32([int(near.sum())], gen)
    x = leaf(x)
    y = F.relu(x)
    upstream = f32(shape, gen)
    (y * upstream).sum().backward()
    return {"input": tensor_json(x), "output": tensor_json(y), "output_gradient": tensor_json(upstream),
            "input_gradient": tensor_json(x.grad), "min_abs_input": relu_margin(x.detach())}


def maxpool_case(gen, shape, size, stride):
    # Distinct values by construction: a random permutation of an evenly spaced grid (spacing
    # 0.01, exact in float32 to well within MARGIN), so no window can hold a tie.
    count = int(np.prod(shape))
    perm = torch.randperm(count, generator=gen).to(torch.float64)
    x = ((perm - count / 2) * 0.01).to(torch.float32).to(torch.float64).reshape(shape)
    # Every window's maximum beats its runner-up (all windows, not only positive ones).
    n, c, h, w = shape
    cols = F.unfold(x.reshape(n * c, 1, h, w), kernel_size=size, stride=stride)
    top2 = cols.topk(2, dim=1).values
    assert (top2[:, 0, :] - top2[:, 1, :]).min().item() >= MARGIN, "tie in a pooling window"
    x = leaf(x)
    y = F.max_pool2d(x, kernel_size=size, stride=stride)
    upstream = f32(list(y.shape), gen)
    (y * upstream).sum().backward()
    return {"size": size, "stride": stride,
            "input": tensor_json(x), "output": tensor_json(y), "output_gradient": tensor_json(upstream),
            "input_gradient": tensor_json(x.grad)}


def softmax_case(gen, large):
    n, k = 4, 10
    logits = f32([n, k], gen, scale=2.0)
    labels = torch.tensor([7, 4, 0, 2])
    if not large:   # ordinary logits, where a mistake in any row moves the mean loss visibly
        return softmax_result(logits.to(torch.float32).to(torch.float64), labels)
    # Row 1: huge, nearly equal logits (a naive exp overflows; the softmax is still spread out).
    logits[1] = 1000.0 + torch.arange(k, dtype=torch.float64) * -0.5
    # Row 2: one logit 1000 above the rest and the label elsewhere: loss ≈ 1000, exp underflows.
    logits[2, 3] = 1000.0
    # Row 3: hugely negative logits.
    logits[3] = -1000.0 + f32([k], gen)
    return softmax_result(logits.to(torch.float32).to(torch.float64), labels)


def softmax_result(logits, labels):
    x = leaf(logits)
    loss = F.cross_entropy(x, labels)       # mean over the batch, as Backprop's
    loss.backward()
    correct = int((logits.argmax(dim=1) == labels).sum())
    return {"logits": tensor_json(x), "labels": labels.tolist(), "loss": loss.item(), "correct": correct,
            "logits_gradient": tensor_json(x.grad)}


def network_case(gen, steps=3, lr=0.1, mu=0.9, lam=0.005):
    """conv 5x5 p2 (1→4) → relu → maxpool 2 → conv 3x3 p1 (4→6) → relu → maxpool 2 → flatten
    → dense 54→10, the same indexes as torch.nn.Sequential (Flatten is layer 6)."""
    n = 4
    shapes = {"0.weight": [4, 1, 5, 5], "0.bias": [4], "3.weight": [6, 4, 3, 3], "3.bias": [6],
              "7.weight": [10, 54], "7.bias": [10]}
    fan_in = {"0.weight": 25, "3.weight": 36, "7.weight": 54}

    def forward(p, x):
        a0 = F.conv2d(x, p["0.weight"], p["0.bias"], padding=2)
        a2 = F.max_pool2d(F.relu(a0), 2, 2)
        a3 = F.conv2d(a2, p["3.weight"], p["3.bias"], padding=1)
        a5 = F.max_pool2d(F.relu(a3), 2, 2)
        logits = F.linear(a5.flatten(1), p["7.weight"], p["7.bias"])
        margin = min(relu_margin(a0), relu_margin(a3), pool_margin(F.relu(a0), 2, 2), pool_margin(F.relu(a3), 2, 2))
        return logits, margin

    attempt = 0
    while True:
        attempt += 1
        x = f32([n, 1, 12, 12], gen)
        labels = torch.randint(0, 10, (n,), generator=gen)
        params = {name: f32(shape, gen, scale=(2.0 / fan_in[name]) ** 0.5 if name in fan_in else 0.1)
                  for name, shape in shapes.items()}
        initial = {name: v.clone() for name, v in params.items()}
        velocity = {name: torch.zeros_like(v) for name, v in params.items()}
        losses, worst = [], float("inf")
        record = {}
        for step in range(steps + 1):
            p = {name: leaf(v) for name, v in params.items()}
            logits, margin = forward(p, x)
            worst = min(worst, margin)
            loss = F.cross_entropy(logits, labels)
            losses.append(loss.item())
            if step == steps:
                break
            loss.backward()
            if step == 0:
                record = {"logits": tensor_json(logits),
                          "gradients": {name: tensor_json(v.grad) for name, v in p.items()}}
            # The course's momentum SGD, literally (not torch.optim.SGD).
            with torch.no_grad():
                for name in params:
                    velocity[name] = mu * velocity[name] + (1 - mu) * p[name].grad
                    params[name] = params[name] - lr * (velocity[name] + lam * params[name])
        if worst >= NET_MARGIN:
            break
    return {
        "input_shape": [1, 12, 12], "attempts": attempt, "min_decision_margin": worst,
        "input": tensor_json(x), "labels": labels.tolist(),
        "parameters": {name: tensor_json(v) for name, v in initial.items()},
        "logits": record["logits"], "gradients": record["gradients"],
        "sgd": {"learning_rate": lr, "momentum": mu, "weight_decay": lam, "steps": steps,
                "losses": losses, "final_parameters": {name: tensor_json(v) for name, v in params.items()}},
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
        "generator": "Scripts/make_reference.py",
        "command": " ".join(["python", "Scripts/make_reference.py"] + sys.argv[1:]),
        "seed": args.seed,
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "precision": "inputs/parameters float32; results computed in float64 from them, stored rounded to float32 (losses float64)",
        "layout": "row-major; images NCHW; conv weight [out,in,kh,kw]; dense weight [out,in]",
    }

    # Each file draws from its own generator seeded from the base seed, so editing one case
    # does not change the others.
    def gen(offset):
        return torch.Generator().manual_seed(args.seed + offset)

    g = gen(1)
    pooling, softmax = gen(4), gen(5)
    files = {
        "conv2d.json": {
            "k3_pad1": conv2d_case(g, n=2, cin=3, cout=4, k=3, stride=1, padding=1, h=5, w=6),
            "k5_pad2": conv2d_case(g, n=2, cin=3, cout=4, k=5, stride=1, padding=2, h=5, w=6),
            "k3_stride2_7x7": conv2d_case(g, n=2, cin=3, cout=4, k=3, stride=2, padding=0, h=7, w=7),
            "k1": conv2d_case(g, n=2, cin=3, cout=4, k=1, stride=1, padding=0, h=5, w=6),
        },
        "dense.json": {"n3_in7_out5": dense_case(gen(2), n=3, fin=7, fout=5)},
        "relu.json": {"n2_c3_4x5": relu_case(gen(3), [2, 3, 4, 5])},
        "maxpool2d.json": {
            "size2_stride2_4x6": maxpool_case(pooling, [2, 2, 4, 6], size=2, stride=2),
            "size3_stride2_7x7": maxpool_case(pooling, [2, 2, 7, 7], size=3, stride=2),
        },
        "softmax_cross_entropy.json": {"n4_k10": softmax_case(softmax, large=False),
                                       "n4_k10_large": softmax_case(softmax, large=True)},
        "network.json": {"small_cnn": network_case(gen(6))},
    }
    total = 0
    for name, cases in files.items():
        size = dump(os.path.join(args.out, name), {**header, "file": name}, cases)
        total += size
        print(f"{name}: {size} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    main()
