#!/usr/bin/env python3
"""Writes the PyTorch-exported ONNX fixtures of Tests/BackpropONNXTests/Fixtures.

For each spec NAME.json there (a Backprop spec), builds the equivalent PyTorch net with
Scripts/backprop_torch.py (same layer tree and state_dict names), gives it weights from a fixed
seed — random biases, BatchNorm statistics and affine parameters too, so that each one shows —
and writes:

  NAME.safetensors   the weights (safetensors.torch.save_file), which Backprop loads by name
  NAME.onnx          torch.onnx.export of the net in eval mode (TorchScript exporter, opset 17,
                     dynamic batch; input "input", output "logits") — what a PyTorch user gets
  NAME.input.f32     4 inputs [4, C, H, W], raw little-endian float32
  NAME.logits.f32    PyTorch's logits for them, raw float32

The exporter folds each BatchNorm that follows a convolution into it, writes GELU as its Erf
(or Tanh) formula, the global average pooling as ReduceMean, dropout not at all.

Usage: python Scripts/make_onnx_fixtures.py   (needs torch, onnx, safetensors, numpy;
made with torch 2.15.0, onnx 1.23.2, seed 2026)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import backprop_torch as bt  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "Tests", "BackpropONNXTests", "Fixtures")
SEED = 2026


def main():
    torch.manual_seed(SEED)
    for name in ["torch_residual", "torch_global"]:
        with open(os.path.join(FIXTURES, f"{name}.json")) as f:
            spec = json.load(f)
        model = bt.build_model(spec, seed=SEED)
        with torch.no_grad():
            for key, tensor in model.state_dict().items():
                if key.endswith("num_batches_tracked"):
                    continue
                if key.endswith("running_var"):
                    tensor.copy_(torch.rand_like(tensor) * 1.5 + 0.25)
                elif key.endswith("running_mean") or key.endswith(".bias"):
                    tensor.copy_(torch.randn_like(tensor) * 0.2)
                elif tensor.dim() == 1:  # BatchNorm γ
                    tensor.copy_(1 + torch.randn_like(tensor) * 0.2)
        model.eval()
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(FIXTURES, f"{name}.safetensors"))
        shape = spec["input"]
        x = torch.randn(4, *shape) * (0.5 if shape[0] == 1 else 50)
        with torch.no_grad():
            logits = model(x)
        x.numpy().astype("<f4").tofile(os.path.join(FIXTURES, f"{name}.input.f32"))
        logits.numpy().astype("<f4").tofile(os.path.join(FIXTURES, f"{name}.logits.f32"))
        torch.onnx.export(model, (x[:1],), os.path.join(FIXTURES, f"{name}.onnx"), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        print(name, "torch", torch.__version__, "logits", logits.shape, "max |logit|", float(logits.abs().max()))


if __name__ == "__main__":
    main()
