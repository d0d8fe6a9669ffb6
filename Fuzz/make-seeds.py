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
    "training": {"iterations": 10, "batch_size": 4, "learning_rate": 0.1,
                 "lookahead": {"every": 5, "decay": 0.5, "power": 3}}}).encode())

# ONNX models (protobuf written here field by field, as onnx.proto numbers them), small nets of
# the operators the importer reads, plus the torch.onnx.export fixture of the ONNX tests.
def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])

def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, float):
        return varint(number << 3 | 5) + struct.pack("<f", value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data

def tensor(name, dims, values):
    return b"".join(field(1, d) for d in dims) + field(2, 1) + field(8, name) + field(9, struct.pack("<%df" % len(values), *values))

def attribute(name, value):
    if isinstance(value, list):
        return field(1, name) + b"".join(field(8, v) for v in value) + field(20, 7)
    if isinstance(value, float):
        return field(1, name) + field(2, value) + field(20, 1)
    return field(1, name) + field(3, value) + field(20, 2)

def node(op, inputs, outputs, **attributes):
    return (b"".join(field(1, i) for i in inputs) + b"".join(field(2, o) for o in outputs) + field(3, outputs[0])
            + field(4, op) + b"".join(field(5, attribute(k, v)) for k, v in attributes.items()))

def value_info(name, dims):
    shape = b"".join(field(1, field(2, d) if isinstance(d, str) else field(1, d)) for d in dims)
    return field(1, name) + field(2, field(1, field(1, 1) + field(2, shape)))

def onnx_model(nodes, initializers, input_dims, outputs, metadata=()):
    graph = (b"".join(field(1, n) for n in nodes) + field(2, "seed") + b"".join(field(5, t) for t in initializers)
             + field(11, value_info("input", ["N"] + input_dims)) + b"".join(field(12, value_info(o, ["N", 10])) for o in outputs))
    return (field(1, 8) + field(2, "make-seeds") + field(7, graph) + field(8, field(1, "") + field(2, 17))
            + b"".join(field(14, field(1, k) + field(2, v)) for k, v in metadata))

put("onnx", "residual.onnx", onnx_model([
    node("Conv", ["input", "0.weight", "0.bias"], ["c0"], kernel_shape=[3, 3], strides=[4, 4], pads=[0, 0, 0, 0]),
    node("BatchNormalization", ["c0", "1.weight", "1.bias", "1.running_mean", "1.running_var"], ["b1"], epsilon=1e-5, momentum=0.9),
    node("Relu", ["b1"], ["r2"]),
    node("Conv", ["r2", "3.weight"], ["c3"], kernel_shape=[1, 1]),
    node("Add", ["c3", "r2"], ["a3"]),
    node("MaxPool", ["a3"], ["p4"], kernel_shape=[2, 2], strides=[2, 2]),
    node("GlobalAveragePool", ["p4"], ["g5"]),
    node("Flatten", ["g5"], ["f5"], axis=1),
    node("Gemm", ["f5", "6.weight", "6.bias"], ["logits"], transB=1),
    node("Softmax", ["logits"], ["probabilities"], axis=1)],
    [tensor("0.weight", [2, 1, 3, 3], [0.1] * 18), tensor("0.bias", [2], [0, 0.5]),
     tensor("1.weight", [2], [1, 2]), tensor("1.bias", [2], [0, 1]), tensor("1.running_mean", [2], [0.1, 0.2]),
     tensor("1.running_var", [2], [1, 0.5]), tensor("3.weight", [2, 2, 1, 1], [1, 0, 0, 1]),
     tensor("6.weight", [10, 2], [0.01 * i for i in range(20)]), tensor("6.bias", [10], [0] * 10)],
    [1, 28, 28], ["logits", "probabilities"],
    [("backprop.dataset", "mnist"), ("backprop.preprocessing.scale", "0.00392156862745098"), ("backprop.preprocessing.mean", "[0.1307]"),
     ("backprop.class_names", json.dumps([str(i) for i in range(10)])), ("backprop.test_time_augmentation", "flip")]))
half, root2 = 0.5, 2 ** 0.5
put("onnx", "matmul-gelu.onnx", onnx_model([
    node("Reshape", ["input", "shape"], ["x"]),
    node("MatMul", ["x", "w"], ["m"]), node("Add", ["m", "b"], ["h"]),
    node("Div", ["h", "sqrt2"], ["d"]), node("Erf", ["d"], ["e"]), node("Add", ["e", "one"], ["e1"]),
    node("Mul", ["h", "e1"], ["p"]), node("Mul", ["p", "half"], ["g"]),
    node("Dropout", ["g"], ["o"]), node("MatMul", ["o", "w2"], ["logits"])],
    [struct_t for struct_t in [
        field(1, 2) + field(2, 7) + field(8, "shape") + field(9, struct.pack("<2q", 0, -1)),
        tensor("w", [16, 4], [0.01] * 64), tensor("b", [4], [0.1] * 4), tensor("sqrt2", [], [root2]),
        tensor("one", [], [1.0]), tensor("half", [], [half]), tensor("w2", [4, 10], [0.02] * 40)]],
    [1, 4, 4], ["logits"]))
with open(os.path.join(os.path.dirname(root), "..", "Tests", "BackpropONNXTests", "Fixtures", "torch_global.onnx"), "rb") as f:
    put("onnx", "torch_global.onnx", f.read())
