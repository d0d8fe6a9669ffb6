#!/usr/bin/env python3
"""Runs an ONNX model written by `backprop export` in onnxruntime, for the tests that hold
Backprop and onnxruntime together (Tests/BackpropONNXTests/ONNXRuntimeTests.swift).

  check_onnxruntime.py logits MODEL.onnx INPUT.f32 OUTPUT.f32
      INPUT.f32: raw little-endian float32 inputs, shaped as the model's input [N, ...];
      OUTPUT.f32: the "logits" output, raw float32.
  check_onnxruntime.py accuracy MODEL.onnx DATA_DIR PREDICTIONS.u8
      Reads the test set named by the model's metadata (backprop.dataset) from DATA_DIR
      (mnist/t10k-*-ubyte[.gz] or cifar10/cifar-10-batches-bin/test_batch.bin[.gz]) itself,
      preprocesses it as the metadata says (x = byte * scale - mean[channel]) and writes one
      predicted label per image (uint8).

Prints one JSON line: onnxruntime's version, the model's opset and, for accuracy, the count of
correct predictions.

Needs numpy and onnxruntime (and onnx, to read the metadata).
"""
import gzip
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def read(path):
    for candidate in (path, path + ".gz"):
        if os.path.exists(candidate):
            with (gzip.open if candidate.endswith(".gz") else open)(candidate, "rb") as f:
                return f.read()
    raise FileNotFoundError(path)


def test_set(kind, root):
    if kind == "mnist":
        images = np.frombuffer(read(f"{root}/mnist/t10k-images-idx3-ubyte"), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        labels = np.frombuffer(read(f"{root}/mnist/t10k-labels-idx1-ubyte"), np.uint8, offset=8)
    elif kind == "cifar10":
        records = np.frombuffer(read(f"{root}/cifar10/cifar-10-batches-bin/test_batch.bin"), np.uint8).reshape(-1, 1 + 3072)
        labels, images = records[:, 0], records[:, 1:].reshape(-1, 3, 32, 32)
    else:
        raise ValueError(f"unknown data set {kind}")
    return images, labels


def main():
    mode, model_path = sys.argv[1], sys.argv[2]
    model = onnx.load(model_path)
    onnx.checker.check_model(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    s = session(model_path)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    report = {"onnxruntime": ort.__version__, "opset": model.opset_import[0].version}
    if mode == "logits":
        x = np.fromfile(sys.argv[3], dtype="<f4").reshape([-1] + shape)
        logits = s.run(["logits"], {"input": x})[0]
        logits.astype("<f4").tofile(sys.argv[4])
    else:
        images, labels = test_set(metadata["backprop.dataset"], sys.argv[3])
        scale = float(metadata["backprop.preprocessing.scale"])
        mean = np.array(json.loads(metadata["backprop.preprocessing.mean"]), dtype=np.float32)
        mean = mean.reshape(1, -1, 1, 1) if mean.size > 1 else mean.reshape(1, 1, 1, 1)
        predictions = []
        for start in range(0, len(images), 1000):
            # In float32, as Backprop computes byte * scale - mean.
            x = images[start:start + 1000].astype(np.float32) * np.float32(scale) - mean
            predictions.append(s.run(["logits"], {"input": x.astype(np.float32)})[0].argmax(axis=1))
        predicted = np.concatenate(predictions).astype(np.uint8)
        predicted.tofile(sys.argv[4])
        report["correct"] = int((predicted == labels).sum())
        report["total"] = int(len(labels))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
