#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for residual blocks and the label-smoothed loss that
Tests/BackpropTests/BlockReferenceTests.swift checks.

Usage (from the repository root; needs torch and numpy, CPU only):

    python Scripts/make_reference_blocks.py      # writes Tests/BackpropTests/Fixtures/blocks_*.json

Conventions as Scripts/make_reference.py: every input and parameter is drawn in float32 and
stored exactly; PyTorch computes in float64 from those values; results are stored rounded to
float32 (losses as float64). Recorded gradients are d/d(input, parameters) of sum(y * upstream)
for a random upstream (blocks), or of the mean loss (loss cases).

The block is torchvision's BasicBlock without the final ReLU, in training mode:
    y = bn2(conv2(relu(bn1(conv1(x))))) + downsample(x),  downsample = bn(conv1x1 stride 2)
(convolutions without bias, BatchNorm with weight and bias, momentum 0.1, eps 1e-5), and the
running statistics after the pass. Parameter names are the state_dict's.
"""

import argparse
import os
import platform
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference_fixtures import FIXTURES, dump, f32, tensor_json

DEFAULT_SEED = 20241130


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.downsample(x)


def block_case(gen, n, cin, cout, stride, size):
    block = Block(cin, cout, stride).double()
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith("weight") and p.dim() == 4:
                p.copy_(f32(list(p.shape), gen, scale=(2.0 / p[0].numel()) ** 0.5))
            elif name.endswith("weight"):
                p.copy_(1 + f32(list(p.shape), gen, scale=0.2))
            else:
                p.copy_(f32(list(p.shape), gen, scale=0.2))
    parameters = {name: tensor_json(p) for name, p in block.named_parameters()}
    x = f32([n, cin, size, size], gen).requires_grad_(True)
    block.train()
    y = block(x)
    upstream = f32(list(y.shape), gen)
    (y * upstream).sum().backward()
    return {
        "input_channels": cin, "output_channels": cout, "stride": stride,
        "parameters": parameters,
        "input": tensor_json(x), "output": tensor_json(y), "output_gradient": tensor_json(upstream),
        "input_gradient": tensor_json(x.grad),
        "parameter_gradients": {name: tensor_json(p.grad) for name, p in block.named_parameters()},
        "buffers_after": {name: tensor_json(b.to(torch.float64)) for name, b in block.named_buffers()},
        "state_dict_keys": list(block.state_dict().keys()),
    }


def loss_case(gen, n, k, smoothing, scale):
    logits = (f32([n, k], gen) * scale).requires_grad_(True)
    labels = torch.randint(0, k, (n,), generator=gen)
    loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    loss.backward()
    return {"label_smoothing": smoothing, "logits": tensor_json(logits), "labels": labels.tolist(),
            "loss": loss.item(), "logits_gradient": tensor_json(logits.grad)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", default=FIXTURES)
    args = parser.parse_args()
    header = {
        "generator": "Scripts/make_reference_blocks.py",
        "command": " ".join(["python", "Scripts/make_reference_blocks.py"] + sys.argv[1:]),
        "seed": args.seed, "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "precision": "inputs/parameters float32; results computed in float64 from them, stored rounded to float32",
    }
    gen = torch.Generator().manual_seed(args.seed)
    dump(os.path.join(args.out, "blocks_residual.json"), header, {
        "basic_block_stride2": block_case(gen, 4, 3, 6, 2, 6),
    })
    gen = torch.Generator().manual_seed(args.seed + 1)
    dump(os.path.join(args.out, "blocks_loss.json"), header, {
        "smoothing_0.1": loss_case(gen, 5, 10, 0.1, 2.0),
        "smoothing_0.2_large": loss_case(gen, 4, 10, 0.2, 300.0),
        "smoothing_0": loss_case(gen, 3, 7, 0.0, 1.0),
    })


if __name__ == "__main__":
    main()
