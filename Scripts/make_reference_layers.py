#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for the normalisation, regularisation and pooling layers
(Tests/BackpropTests/Fixtures/layers_*.json), which LayerCatalogReferenceTests.swift checks.

Usage (from the repository root; needs torch and numpy, CPU only):

    python Scripts/make_reference_layers.py            # writes Tests/BackpropTests/Fixtures/layers_*.json
    python Scripts/make_reference_layers.py --seed 7   # another draw (tests must still pass)

Conventions are Scripts/make_reference.py's: inputs, parameters and upstream gradients are drawn
in float32 and stored exactly; results are computed by PyTorch in float64 from those values and
stored rounded once to float32. Each tensor is {"shape", "data"}, row-major, images NCHW. For a
layer, the recorded gradients are those of `sum(output * output_gradient)`.

Cases
-----
- BatchNorm (F.batch_norm, float64): two training steps — forward, backward, and the running
  statistics and num_batches_tracked after each — then an eval-mode forward and backward with
  the running statistics the steps left; the affine variants ("both", "weight": β frozen at 0,
  "bias": γ frozen at 1, "none": affine=False); BatchNorm1d; and an eval-only case with given
  running statistics. A frozen tensor's gradient is still recorded (Backprop computes it too).
- Dropout / Dropout2d: a mask drawn here, applied with PyTorch's formula x·mask/(1 − p). The script
  first checks that F.dropout and F.dropout2d themselves compute exactly that formula (their
  output divided by the input gives 0 or 1/(1 − p)), so the fixture is PyTorch's semantics given
  the mask.
- GELU, exact and approximate='tanh'.
- AvgPool2d (non-overlapping and overlapping windows), AdaptiveAvgPool2d(1)+Flatten,
  AdaptiveMaxPool2d(1)+Flatten (distinct input values, so the argmax is unambiguous).
- Scale (x · 1/9, airbench's logit scale).
- torch.nn.init.dirac_ weights for several shapes, and a padded convolution with them.
"""

import argparse
import os
import platform
import sys

import numpy as np
import torch
import torch.nn.functional as F

from reference_fixtures import FIXTURES, dump, f32, leaf, tensor_json

DEFAULT_SEED = 20240611


# MARK: - Helpers (as in make_reference.py)


def layer_pass(forward, x, gen, parameters=()):
    """Runs `forward(x)` and the backward of sum(y · upstream); returns the fixture fields."""
    x = leaf(x)
    y = forward(x)
    upstream = f32(list(y.shape), gen)
    (y * upstream).sum().backward()
    record = {"input": tensor_json(x), "output": tensor_json(y), "output_gradient": tensor_json(upstream),
              "input_gradient": tensor_json(x.grad)}
    for name, p in parameters:
        record[name + "_gradient"] = tensor_json(p.grad)
        p.grad = None
    return record


# MARK: - BatchNorm

def batchnorm_case(gen, shape, affine="both", momentum=0.1, eps=1e-5, steps=2, running=None, eval_only=False):
    """Training steps on fresh inputs (each step's gradients on their own), then one eval pass."""
    channels = shape[1]
    weight = f32([channels], gen, scale=0.5) + 1 if affine in ("both", "weight") else torch.ones(channels, dtype=torch.float64)
    bias = f32([channels], gen, scale=0.5) if affine in ("both", "bias") else torch.zeros(channels, dtype=torch.float64)
    weight, bias = weight.to(torch.float32).to(torch.float64), bias.to(torch.float32).to(torch.float64)
    if running is None:
        running_mean, running_var = torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)
    else:
        running_mean, running_var = running
    case = {"channels": channels, "dimensions": 2 if len(shape) == 4 else 1, "affine": affine, "momentum": momentum, "eps": eps,
            "initial_running_mean": tensor_json(running_mean), "initial_running_var": tensor_json(running_var)}
    w, b = leaf(weight), leaf(bias)
    parameters = [("weight", w), ("bias", b)] if affine != "none" else []
    if affine != "none":
        case["weight"], case["bias"] = tensor_json(weight), tensor_json(bias)
    tracked = 0
    records = []
    for _ in range(0 if eval_only else steps):
        # A shifted, scaled input, so the statistics are far from 0 and 1.
        x = (f32(shape, gen, scale=1.5) + 0.7).to(torch.float32).to(torch.float64)
        record = layer_pass(lambda t: F.batch_norm(t, running_mean, running_var, w if affine != "none" else None,
                                                   b if affine != "none" else None, training=True,
                                                   momentum=momentum, eps=eps), x, gen, parameters)
        tracked += 1
        record.update({"running_mean": tensor_json(running_mean), "running_var": tensor_json(running_var),
                       "num_batches_tracked": tracked})
        records.append(record)
    case["training_steps"] = records
    x = (f32(shape, gen, scale=1.5) + 0.7).to(torch.float32).to(torch.float64)
    # The stored running statistics are float32: evaluate with exactly those.
    rm, rv = running_mean.to(torch.float32).to(torch.float64), running_var.to(torch.float32).to(torch.float64)
    case["eval"] = layer_pass(lambda t: F.batch_norm(t, rm, rv, w if affine != "none" else None,
                                                     b if affine != "none" else None, training=False, eps=eps),
                              x, gen, parameters)
    return case


def check_batchnorm_module_semantics(gen):
    """nn.BatchNorm2d (the module, float32) updates running_var with the unbiased variance."""
    bn = torch.nn.BatchNorm2d(3, momentum=0.1)
    x = torch.randn(4, 3, 2, 2, generator=gen)
    bn(x)
    unbiased = x.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True)
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * unbiased, atol=1e-6), "running_var is not from the unbiased variance"
    assert int(bn.num_batches_tracked) == 1


# MARK: - Dropout

def check_dropout_formula(gen):
    """F.dropout / F.dropout2d output x·mask/(1 − p) with mask ∈ {0, 1} (per element / per plane)."""
    p = 0.3
    x = torch.rand(64, 50, generator=gen, dtype=torch.float64) + 0.5   # nonzero, so y/x recovers the factor
    ratio = F.dropout(x, p, training=True) / x
    assert torch.all((ratio == 0) | torch.isclose(ratio, torch.tensor(1 / (1 - p), dtype=torch.float64))), "dropout formula"
    x = torch.rand(8, 6, 3, 3, generator=gen, dtype=torch.float64) + 0.5
    ratio = F.dropout2d(x, p, training=True) / x
    dropped = (ratio == 0).reshape(8, 6, 9)
    assert torch.all(dropped == dropped[:, :, :1]), "dropout2d drops whole planes"
    assert torch.all((ratio == 0) | torch.isclose(ratio, torch.tensor(1 / (1 - p), dtype=torch.float64))), "dropout2d formula"


def dropout_case(gen, shape, p, spatial):
    mask_shape = shape[:2] if spatial else shape
    keep = torch.rand(*mask_shape, generator=gen) >= p
    factor = keep.to(torch.float64) / (1 - p)
    if spatial:
        factor = factor[:, :, None, None]
    record = layer_pass(lambda t: t * factor, f32(shape, gen), gen)
    record.update({"p": p, "spatial": spatial, "keep": [bool(k) for k in keep.flatten()]})
    return record


# MARK: - Others

def gelu_case(gen, shape, approximate):
    record = layer_pass(lambda t: F.gelu(t, approximate=approximate), f32(shape, gen, scale=2.0), gen)
    record["approximate"] = approximate
    return record


def avgpool_case(gen, shape, size, stride):
    record = layer_pass(lambda t: F.avg_pool2d(t, size, stride), f32(shape, gen), gen)
    record.update({"size": size, "stride": stride})
    return record


def global_avgpool_case(gen, shape):
    return layer_pass(lambda t: torch.flatten(F.adaptive_avg_pool2d(t, 1), 1), f32(shape, gen), gen)


def global_maxpool_case(gen, shape):
    count = int(np.prod(shape))
    perm = torch.randperm(count, generator=gen).to(torch.float64)
    x = ((perm - count / 2) * 0.01).to(torch.float32).to(torch.float64).reshape(shape)   # distinct values
    return layer_pass(lambda t: torch.flatten(F.adaptive_max_pool2d(t, 1), 1), x, gen)


def scale_case(gen, shape, factor):
    record = layer_pass(lambda t: t * factor, f32(shape, gen), gen)
    record["factor"] = factor
    return record


def dirac_case(gen, cout, cin, k, height=5, width=6):
    weight = torch.empty(cout, cin, k, k, dtype=torch.float64)
    torch.nn.init.dirac_(weight)
    x = f32([2, cin, height, width], gen)
    y = F.conv2d(x, weight, padding=k // 2)
    return {"output_channels": cout, "input_channels": cin, "kernel_size": k, "padding": k // 2,
            "weight": tensor_json(weight), "input": tensor_json(x), "output": tensor_json(y)}


# MARK: - Output


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", default=FIXTURES)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    header = {
        "generator": "Scripts/make_reference_layers.py",
        "command": " ".join(["python", "Scripts/make_reference_layers.py"] + sys.argv[1:]),
        "seed": args.seed,
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "precision": "inputs/parameters float32; results computed in float64 from them, stored rounded to float32",
        "layout": "row-major; images NCHW; conv weight [out,in,kh,kw]",
    }

    # Each file draws from its own generator seeded from the base seed, so editing one file's
    # cases does not change the others.
    def gen(offset):
        return torch.Generator().manual_seed(args.seed + offset)

    check_batchnorm_module_semantics(gen(100))
    check_dropout_formula(gen(101))

    bn = gen(1)
    running = (f32([4], bn, scale=0.5).to(torch.float32).to(torch.float64),
               (f32([4], bn, scale=0.3).abs() + 0.5).to(torch.float32).to(torch.float64))
    files = {
        "layers_batchnorm.json": {
            "bn2d_both": batchnorm_case(bn, [4, 3, 4, 4]),
            "bn2d_weight": batchnorm_case(bn, [4, 3, 3, 3], affine="weight"),
            "bn2d_bias": batchnorm_case(bn, [4, 3, 3, 3], affine="bias"),
            "bn2d_none": batchnorm_case(bn, [4, 3, 3, 3], affine="none"),
            # airbench's settings: BatchNorm(momentum=0.6) is PyTorch momentum 0.4; eps 1e-12; no trained scale.
            "bn2d_airbench": batchnorm_case(bn, [3, 4, 3, 3], affine="bias", momentum=0.4, eps=1e-12),
            "bn1d_both": batchnorm_case(bn, [6, 5], momentum=0.3, eps=1e-3),
            "bn2d_eval_given_running": batchnorm_case(bn, [2, 4, 3, 4], running=running, eval_only=True),
        },
        "layers_dropout.json": {
            "dropout_p0.3": dropout_case(gen(2), [3, 20], p=0.3, spatial=False),
            "dropout2d_p0.4": dropout_case(gen(3), [3, 4, 3, 3], p=0.4, spatial=True),
        },
        "layers_gelu.json": {
            "exact": gelu_case(gen(4), [2, 3, 4, 5], "none"),
            "tanh": gelu_case(gen(5), [2, 3, 4, 5], "tanh"),
        },
        "layers_pooling.json": {
            "avgpool_size2_stride2_4x6": avgpool_case(gen(6), [2, 3, 4, 6], 2, 2),
            "avgpool_size3_stride2_7x7": avgpool_case(gen(7), [2, 2, 7, 7], 3, 2),
            "global_avgpool_4x5": global_avgpool_case(gen(8), [2, 3, 4, 5]),
            "global_maxpool_4x5": global_maxpool_case(gen(9), [2, 3, 4, 5]),
        },
        "layers_scale.json": {"one_ninth": scale_case(gen(10), [3, 10], 1 / 9)},
        "layers_dirac.json": {
            "k3_4from3": dirac_case(gen(11), cout=4, cin=3, k=3),
            "k3_2from3": dirac_case(gen(12), cout=2, cin=3, k=3),
            "k5_3from3": dirac_case(gen(13), cout=3, cin=3, k=5),
            "k1_3from2": dirac_case(gen(14), cout=3, cin=2, k=1),
        },
    }
    total = 0
    for name, cases in files.items():
        size = dump(os.path.join(args.out, name), {**header, "file": name}, cases)
        total += size
        print(f"{name}: {size} bytes")
    print(f"total: {total} bytes")


if __name__ == "__main__":
    main()
