"""Writes the fuzz targets' seed corpus (Fuzz/Corpus/<target>/): small valid inputs of each
format and a few near-misses, so the fuzzer starts inside the formats. Rerun after a format
changes: python3 Fuzz/make-seeds.py"""
import gzip, io, json, os, struct, tarfile

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus")

def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)

def idx(magic, dims, body):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + body

images = idx(0x803, [2, 28, 28], bytes(range(256)) * 6 + bytes(32))
labels = idx(0x801, [4], bytes([0, 1, 9, 3]))
put("idx", "images", images)
put("idx", "labels", labels)
put("idx", "images.gz", gzip.compress(images, mtime=0))
put("idx", "labels-two-members.gz", gzip.compress(labels[:6], mtime=0) + gzip.compress(labels[6:], mtime=0))

put("gzip", "one-member.gz", gzip.compress(b"hello " * 50, mtime=0))
put("gzip", "two-members.gz", gzip.compress(b"a" * 10, mtime=0) + gzip.compress(b"b" * 10, mtime=0))
put("gzip", "plain", b"not compressed")

def tar(fmt, members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()

meta = b"\n".join(b"c%d" % i for i in range(10)) + b"\n"
put("tar", "ustar.tar", tar(tarfile.USTAR_FORMAT, [("cifar-10-batches-bin/batches.meta.txt", meta)]))
put("tar", "gnu-long.tar", tar(tarfile.GNU_FORMAT, [("d" * 120 + "/x.bin", b"x" * 10)]))
put("tar", "pax-long.tar.gz", gzip.compress(tar(tarfile.PAX_FORMAT, [("p" * 300 + "/y.bin", b"y" * 10)]), mtime=0))
put("cifar", "meta-only.tar.gz", gzip.compress(tar(tarfile.USTAR_FORMAT, [("cifar-10-batches-bin/batches.meta.txt", meta),
                                                                       ("cifar-10-batches-bin/test_batch.bin", bytes(3073 * 2))]), mtime=0))

def safetensors(tensors, metadata=None):
    header, body = {}, b""
    if metadata: header["__metadata__"] = metadata
    for name, shape, values in tensors:
        data = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    text = json.dumps(header, sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body

put("safetensors", "two.safetensors", safetensors([("a", [2, 2], [1, 2, 3, 4]), ("b", [3], [5, 6, 7])]))
put("safetensors", "empty.safetensors", safetensors([]))

# A tiny model: MNIST input, one 2-channel 3x3 convolution, a dense layer to the 10 classes.
network = {"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 4},
                                            {"type": "relu"}, {"type": "dense", "out_features": 10}, {"type": "softmaxloss"}]}
description = {"format": "backprop-model", "version": 1, "dataset": "mnist", "class_names": [str(i) for i in range(10)],
               "preprocessing": {"scale": 1 / 255, "mean": [0.13], "formula": "x = byte * scale - mean[channel]; images NCHW"},
               "network": network}
features = 2 * 7 * 7
put("model", "tiny.safetensors", safetensors(
    [("0.weight", [2, 1, 3, 3], [0.1] * 18), ("0.bias", [2], [0, 0]),
     ("3.weight", [10, features], [0.01] * (10 * features)), ("3.bias", [10], [0] * 10)],
    {"backprop.model": json.dumps(description), "format": "pt"}))

put("spec", "tiny.json", json.dumps(dict(network, dataset="mnist")).encode())
put("spec", "residual.json", json.dumps({"dataset": "mnist", "input": [1, 28, 28], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "batchnorm2d"},
    {"type": "residual", "main": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "gelu"}]},
    {"type": "maxpool2d", "size": 2, "stride": 2}, {"type": "dropout", "p": 0.1}, {"type": "dense", "out_features": 10}],
    "training": {"iterations": 10, "batch_size": 4, "learning_rate": 0.1}}).encode())
