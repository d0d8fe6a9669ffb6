"""Backprop's spec files in PyTorch: the same network, state_dict names, initial weights, data,
batches, augmentation, optimizers, schedules, loss and weight average, so that a preset can be
trained on both sides and compared.

Usage (a module; importing it has no side effects):

    import sys; sys.path.insert(0, "Scripts")
    import backprop_torch as bt
    experiment = bt.load_experiment("Examples/resnet-mnist.json")    # spec + merged training options
    model = bt.build_model(experiment.spec, seed=experiment.options["seed"])
    model.state_dict().keys()      # == the tensor names of Backprop's model.safetensors
    model = bt.load_backprop_model("runs/resnet-mnist")   # a Backprop run folder, loaded strictly

    python Scripts/backprop_torch.py keys RUN_DIR     # compare a run's model.safetensors with build_model

`Scripts/train_pytorch.py` trains a spec with these pieces; `Scripts/bench_pytorch.py --specs`
times spec networks.

What is identical to Backprop (Sources/Backprop, Sources/BackpropTraining):
- The layer tree and its state_dict names: `Sequential` names children "0", "1", … by position
  (a layer's "name" replaces it), a `dense` whose input is not flat gets an automatic
  `nn.Flatten` that takes a position, `residual` puts its paths under `main_name`/`shortcut_name`
  (`main_name: ""` puts the main path's layers directly under the block), BatchNorm has
  weight/bias (unless affine "none") and running_mean/running_var/num_batches_tracked (int64),
  a conv/dense without bias has no bias tensor.
- The initial weights, bit for bit: Backprop's SeededGenerator (xoshiro256** seeded by
  SplitMix64, Box–Muller normals in double) is reimplemented here, drawn in the same order
  (layers in tree order, main path before shortcut, one draw per dropout layer for its salt), with
  He scaling `N(0,1)·init_scale/√(fan_in/2)` in float32, zero biases, "dirac"/"he_dirac"
  filters, frozen layers (`requires_grad=False`), BatchNorm affine "bias"/"weight" (the other of
  γ/β frozen at 1/0).
- Dropout masks: the same hash of (seed, layer salt, iteration, example, element) as Backprop's
  `Dropout` (set `model.context.step` to the iteration; `train_pytorch.py` does).
- Data: the split (one permutation of the first train_size images by
  SeededGenerator(seed ^ "SHUFFLE!"), the last validation_size held out), preprocessing
  (MNIST `byte/255 − mean`, CIFAR-10 `byte − mean[c]`, means over the training split, float32),
  the batch order (fixed, or reshuffled each epoch from SeededGenerator(seed ^ "EPOCHS!!")), and
  the augmentation (flip/altflip/crop/translate, zero or reflect fill, hashed per seed, epoch and
  example): the batches are the same bytes as Backprop's.
- Optimizers: course_sgd (`m = μm + (1−μ)g; w −= α(m + λw)`, every trainable parameter decays),
  sgd (torch.optim.SGD; decay only on conv/dense weights; Nesterov; decoupled decay
  `w *= 1 − αλ` before the step), adamw (torch.optim.AdamW, decay only on conv/dense weights);
  learning rate, momentum and weight decay rounded to float32 as Backprop stores them.
- Schedules (constant, step, cosine, onecycle incl. momentum cycling, warmup+…) with the same
  string grammar and step index (iteration − 1); label smoothing (PyTorch's, which is Backprop's
  formula); the EMA of parameters *and* float buffers (num_batches_tracked copied), updated after
  each step with `a += (1 − d)(w − a)`, used for validation and for the final model.

What is not identical:
- Floating-point rounding: convolutions, reductions and BatchNorm statistics are summed in a
  different order, so losses agree to ~1e-6 at first and drift apart over a run (as two BLAS
  libraries would); accuracies agree statistically, not to the last image.
- Where a max is tied, MaxPool/global max pool may route the gradient to another position.
- `scale` multiplies in PyTorch's arithmetic (the factor may be applied in double before rounding).
- Backprop cuts batches without BatchNorm into slices of 16 (the gradient is the same sum); here
  the whole batch goes at once.
- `init="torch"` in `build_model` (not Backprop's) re-initialises conv/dense layers with PyTorch's
  defaults; `exact_dropout=False` uses torch's own dropout RNG (same distribution, other masks).
"""
import copy
import gzip
import json
import math
import os
import tarfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.functional as F

MASK64 = (1 << 64) - 1

# MARK: - Random numbers (Sources/Backprop/Random.swift, Dropout.swift, Augmentation.swift)


class SeededGenerator:
    """Backprop's SeededGenerator: xoshiro256** seeded through SplitMix64 (same sequence)."""

    def __init__(self, seed):
        x = seed & MASK64
        state = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            state.append(z ^ (z >> 31))
        self.s = state

    def next(self):
        s0, s1, s2, s3 = self.s
        r = ((s1 * 5) & MASK64)
        result = ((((r << 7) | (r >> 57)) & MASK64) * 9) & MASK64
        t = (s1 << 17) & MASK64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & MASK64
        self.s = [s0, s1, s2, s3]
        return result

    def next_unit(self):
        """Uniform in [0, 1) from 53 bits."""
        return (self.next() >> 11) * (2.0 ** -53)

    def next_int(self, bound):
        """Uniform in 0..<bound (Lemire's method, the same draws as Backprop's)."""
        product = self.next() * bound
        if (product & MASK64) < bound:
            threshold = ((1 << 64) - bound) % bound
            while (product & MASK64) < threshold:
                product = self.next() * bound
        return product >> 64

    def next_normal(self):
        u1 = 1 - self.next_unit()
        u2 = self.next_unit()
        return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)

    def normals(self, count):
        """`count` standard normals (float64), as `count` calls of `next_normal` (inlined: fast)."""
        out = np.empty(count, dtype=np.float64)
        s0, s1, s2, s3 = self.s
        M, unit, log, cos, sqrt, two_pi = MASK64, 2.0 ** -53, math.log, math.cos, math.sqrt, 2 * math.pi
        for i in range(count):
            u = []
            for _ in range(2):
                r = (s1 * 5) & M
                result = ((((r << 7) | (r >> 57)) & M) * 9) & M
                t = (s1 << 17) & M
                s2 ^= s0
                s3 ^= s1
                s1 ^= s2
                s0 ^= s3
                s2 ^= t
                s3 = ((s3 << 45) | (s3 >> 19)) & M
                u.append((result >> 11) * unit)
            out[i] = sqrt(-2 * log(1 - u[0])) * cos(two_pi * u[1])
        self.s = [s0, s1, s2, s3]
        return out

    def permutation(self, count):
        """A permutation of 0..<count (Fisher–Yates with Backprop's draws), as a numpy array."""
        p = list(range(count))
        for i in range(count - 1, 0, -1):
            j = self.next_int(i + 1)
            p[i], p[j] = p[j], p[i]
        return np.asarray(p, dtype=np.int64)


def mix(x):
    """One SplitMix64 step (add the golden-ratio increment, then the finaliser), on a Python int."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def mix_array(x):
    """`mix` elementwise on a numpy uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def high_product(h, c):
    """`⌊h·c / 2⁶⁴⌋` for a uint64 array `h` and a small whole number `c` (< 2³¹)."""
    c = np.uint64(c)
    hi, lo = h >> np.uint64(32), h & np.uint64(0xFFFFFFFF)
    return (hi * c + ((lo * c) >> np.uint64(32))) >> np.uint64(32)


# MARK: - Layers (Sources/Backprop/Layers)


class StepContext:
    """What random layers read: the run's seed and the training iteration (1-based). One object
    is shared by every dropout layer of a model (`model.context`)."""

    def __init__(self, seed=0, step=0, exact_dropout=True):
        self.seed, self.step, self.exact_dropout = seed, step, exact_dropout


class HashDropout(nn.Module):
    """Backprop's Dropout/Dropout2d: element (or channel plane) `i` of batch row `e` is dropped
    when `mix(mix(base ^ e) ^ i) >> 11 < ⌊p·2⁵³⌋`, `base = mix(mix(seed ^ salt) ^ step)`; kept
    values are scaled by `1/(1 − p)` (float32). The identity in eval mode."""

    def __init__(self, p, spatial, salt, context):
        super().__init__()
        self.p, self.spatial, self.salt = float(p), spatial, salt
        self.context = context

    def extra_repr(self):
        return f"p={self.p}, spatial={self.spatial}"

    def forward(self, x):
        if not self.training:
            return x
        if not self.context.exact_dropout:
            return (F.dropout2d if self.spatial else F.dropout)(x, self.p, True)
        n = x.shape[0]
        units = x[0].numel() // (x.shape[2] * x.shape[3] if self.spatial else 1) if n else 0
        threshold = np.uint64(int(math.floor(self.p * 2.0 ** 53)))
        scale = np.float32(1 / (1 - self.p)) if self.p < 1 else np.float32(0)
        base = mix(mix((self.context.seed ^ self.salt) & MASK64) ^ (self.context.step & MASK64))
        example = mix_array(np.uint64(base) ^ np.arange(n, dtype=np.uint64))
        keys = mix_array(example[:, None] ^ np.arange(units, dtype=np.uint64)[None, :])
        mask = np.where((keys >> np.uint64(11)) >= threshold, scale, np.float32(0)).astype(np.float32)
        mask = torch.from_numpy(mask).to(x.device)
        shape = (n, units, 1, 1) if self.spatial else x.shape
        return x * mask.reshape(shape)


class GlobalAvgPool2d(nn.Module):
    """`[N, C, H, W]` → `[N, C]`: one module (one position), as Backprop counts it."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class GlobalMaxPool2d(nn.Module):
    """`[N, C, H, W]` → `[N, C]`, the gradient to one maximum per plane."""

    def forward(self, x):
        return x.flatten(2).max(dim=2).values


class Scale(nn.Module):
    """Multiplies by a constant (Backprop's `scale`, airbench's `Mul`)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = float(factor)

    def extra_repr(self):
        return f"factor={self.factor}"

    def forward(self, x):
        return x * self.factor


class SpecSequential(nn.Sequential):
    """`nn.Sequential` whose children are named by position or by the spec's "name"."""


class Residual(nn.Module):
    """`y = main(x) + shortcut(x)` (identity shortcut when none). The main path's layers sit
    under `main_name`, or directly under the block when it is ""; the shortcut under
    `shortcut_name`."""

    def __init__(self, main, shortcut, main_name="main", shortcut_name="shortcut"):
        super().__init__()
        self.main_name, self.shortcut_name = main_name, shortcut_name
        if main_name:
            self.add_module(main_name, main)
            self._main_names = None
        else:
            self._main_names = []
            for name, child in main.named_children():
                self.add_module(name, child)
                self._main_names.append(name)
        if shortcut is not None:
            self.add_module(shortcut_name, shortcut)
        self.has_shortcut = shortcut is not None

    def forward(self, x):
        if self._main_names is None:
            y = getattr(self, self.main_name)(x)
        else:
            y = x
            for name in self._main_names:
                y = getattr(self, name)(y)
        return y + (getattr(self, self.shortcut_name)(x) if self.has_shortcut else x)


# MARK: - Specs (Sources/Backprop/NetworkSpec.swift and each layer's Spec)

ALIASES = {
    "convolution": "conv2d", "conv": "conv2d", "maxpooling": "maxpool2d", "maxpool": "maxpool2d",
    "fully_connected": "dense", "linear": "dense", "residual_block": "residual",
    "batch_norm2d": "batchnorm2d", "batch_norm1d": "batchnorm1d", "spatial_dropout": "dropout2d",
    "avgpool": "avgpool2d", "globalavgpool2d": "global_avgpool2d", "global_avgpool": "global_avgpool2d",
    "globalmaxpool2d": "global_maxpool2d", "global_maxpool": "global_maxpool2d", "mul": "scale",
    "softmax_cross_entropy": "softmaxloss",
}
KEYS = {
    "conv2d": {"out_channels", "kernel_size", "stride", "padding", "bias", "init_scale", "init", "frozen", "bias_epochs"},
    "relu": set(), "flatten": set(), "identity": set(), "global_avgpool2d": set(), "global_maxpool2d": set(),
    "maxpool2d": {"size", "stride"}, "avgpool2d": {"size", "stride"},
    "dense": {"out_features", "bias", "init_scale", "frozen"},
    "sequential": {"layers"}, "residual": {"main", "shortcut", "main_name", "shortcut_name"},
    "batchnorm2d": {"momentum", "eps", "affine", "bias_lr_scale", "bias_decay"},
    "batchnorm1d": {"momentum", "eps", "affine", "bias_lr_scale", "bias_decay"},
    "dropout": {"p"}, "dropout2d": {"p"}, "gelu": {"approximate"}, "scale": {"factor"},
}


class SpecError(ValueError):
    pass


def layer_type(layer):
    name = str(layer.get("type", "")).lower()
    return ALIASES.get(name, name)


def network_layers(spec):
    """The spec's top-level layers without the final softmaxloss."""
    layers = list(spec["layers"])
    if layers and layer_type(layers[-1]) == "softmaxloss":
        layers = layers[:-1]
    if any(layer_type(l) == "softmaxloss" for l in layers):
        raise SpecError("softmaxloss may only end the top-level list")
    return layers


def _he_weight(shape, fan_in, init_scale, gen):
    """Backprop's `Tensor.randomNormal`: float32(N(0,1)) · (float32(scale) / √(float32(fan_in)/2))."""
    std = np.float32(init_scale) / np.sqrt(np.float32(fan_in) / np.float32(2))
    count = int(np.prod(shape))
    values = gen.normals(count).astype(np.float32) * std
    return torch.from_numpy(values.astype(np.float32).reshape(shape))


def _make_layer(kind, layer, shape, gen, context, where):
    get = layer.get
    if kind == "conv2d":
        if len(shape) != 3:
            raise SpecError(f"layer {where}: conv2d needs a CxHxW input, got {shape}")
        cin, cout, k = shape[0], int(layer["out_channels"]), int(layer["kernel_size"])
        stride, padding = int(get("stride", 1)), int(get("padding", 0))
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bool(get("bias", True)))
        weight = _he_weight((cout, cin, k, k), k * k * cin, float(get("init_scale", 1)), gen)
        init = get("init", "he")
        if init not in ("he", "dirac", "he_dirac", "whitening"):
            raise SpecError(f"layer {where}: init must be he, dirac, he_dirac or whitening")
        if init == "whitening" and cout not in (cin * k * k, 2 * cin * k * k):
            raise SpecError(f"layer {where}: init whitening needs {cin * k * k} or {2 * cin * k * k} output channels")
        if init in ("dirac", "he_dirac"):
            identities = cout if init == "dirac" else min(cout, cin)
            weight[:identities] = 0
            for o in range(min(cout, cin)):
                weight[o, o, k // 2, k // 2] = 1
        with torch.no_grad():
            conv.weight.copy_(weight)
            if conv.bias is not None:
                conv.bias.zero_()
        if get("frozen", False):
            conv.requires_grad_(False)
        bias_epochs = int(get("bias_epochs", 0))
        if bias_epochs < 0 or (bias_epochs > 0 and conv.bias is None):
            raise SpecError(f"layer {where}: bias_epochs must be >= 0 and needs a bias")
        if bias_epochs > 0:  # trained in the first epochs only (train_pytorch.py sets requires_grad per step)
            conv.bias.requires_grad_(True)
            conv.bias.backprop_epochs = bias_epochs
        conv.awaits_whitening = init == "whitening"
        h = (shape[1] + 2 * padding - k) // stride + 1
        w = (shape[2] + 2 * padding - k) // stride + 1
        return conv, [cout, h, w]
    if kind == "dense":
        if len(shape) != 1:
            raise SpecError(f"layer {where}: dense needs a flat input, got {shape}")
        fin, fout = shape[0], int(layer["out_features"])
        linear = nn.Linear(fin, fout, bias=bool(get("bias", True)))
        with torch.no_grad():
            linear.weight.copy_(_he_weight((fout, fin), fin, float(get("init_scale", 1)), gen))
            if linear.bias is not None:
                linear.bias.zero_()
        if get("frozen", False):
            linear.requires_grad_(False)
        return linear, [fout]
    if kind in ("maxpool2d", "avgpool2d"):
        size = int(get("size", 2))
        stride = int(get("stride", size))
        if len(shape) != 3 or shape[1] < size or shape[2] < size:
            raise SpecError(f"layer {where}: {kind} window {size} does not fit input {shape}")
        module = nn.MaxPool2d(size, stride) if kind == "maxpool2d" else nn.AvgPool2d(size, stride)
        return module, [shape[0], (shape[1] - size) // stride + 1, (shape[2] - size) // stride + 1]
    if kind in ("batchnorm2d", "batchnorm1d"):
        if (kind == "batchnorm2d") != (len(shape) == 3):
            raise SpecError(f"layer {where}: {kind} does not fit input {shape}")
        affine = get("affine", "both")
        if affine not in ("both", "weight", "bias", "none"):
            raise SpecError(f"layer {where}: affine must be both, weight, bias or none")
        cls = nn.BatchNorm2d if kind == "batchnorm2d" else nn.BatchNorm1d
        bn = cls(shape[0], eps=float(get("eps", 1e-5)), momentum=float(get("momentum", 0.1)), affine=affine != "none")
        if affine == "bias":
            bn.weight.requires_grad_(False)
        if affine == "weight":
            bn.bias.requires_grad_(False)
        if bn.bias is not None:
            bn.bias.backprop_lr_scale = float(get("bias_lr_scale", 1))
            bn.bias.backprop_decays = bool(get("bias_decay", False))
        return bn, shape
    if kind in ("dropout", "dropout2d"):
        if kind == "dropout2d" and len(shape) != 3:
            raise SpecError(f"layer {where}: dropout2d needs a CxHxW input")
        salt = gen.next()
        return HashDropout(float(get("p", 0.5)), kind == "dropout2d", salt, context), shape
    if kind == "gelu":
        return nn.GELU(approximate=get("approximate", "none")), shape
    if kind == "relu":
        return nn.ReLU(), shape
    if kind == "flatten":
        return nn.Flatten(), [int(np.prod(shape))]
    if kind == "identity":
        return nn.Identity(), shape
    if kind == "scale":
        if "factor" not in layer:
            raise SpecError(f"layer {where}: scale needs \"factor\"")
        return Scale(layer["factor"]), shape
    if kind in ("global_avgpool2d", "global_maxpool2d"):
        if len(shape) != 3:
            raise SpecError(f"layer {where}: {kind} needs a CxHxW input")
        return (GlobalAvgPool2d() if kind == "global_avgpool2d" else GlobalMaxPool2d()), [shape[0]]
    if kind == "sequential":
        return _make_sequence(layer["layers"], shape, gen, context, f"{where}.layers")
    if kind == "residual":
        main, main_shape = _make_sequence(layer["main"], shape, gen, context, f"{where}.main")
        shortcut, shortcut_shape = None, shape
        if layer.get("shortcut") is not None:
            shortcut, shortcut_shape = _make_sequence(layer["shortcut"], shape, gen, context, f"{where}.shortcut")
        if main_shape != shortcut_shape:
            raise SpecError(f"layer {where}: the main path gives {main_shape} but the shortcut {shortcut_shape}")
        main_name, shortcut_name = get("main_name", "main"), get("shortcut_name", "shortcut")
        clash = shortcut_name in (main._modules if not main_name else {})
        if not shortcut_name or "." in main_name + shortcut_name or main_name == shortcut_name or clash:
            raise SpecError(f"layer {where}: \"main_name\" and \"shortcut_name\" must differ, contain no \".\", "
                            "and the shortcut's must not be empty (nor name a main-path layer when main_name is \"\")")
        return Residual(main, shortcut, main_name, shortcut_name), main_shape
    raise SpecError(f"layer {where}: unknown type {layer.get('type')!r}")


def _make_sequence(layers, shape, gen, context, path=""):
    """NetworkSpec.makeSequence: builds the layers in order, inserting a Flatten before a dense
    layer whose input is not flat; children are named by their position (counting the
    inserted Flatten) unless the spec names them."""
    modules = OrderedDict()
    shape = list(shape)
    for position, layer in enumerate(layers):
        where = f"{path}.{position}" if path else str(position)
        kind = layer_type(layer)
        if kind not in KEYS:
            raise SpecError(f"spec layer {where}: unknown type {layer.get('type')!r}")
        unknown = sorted(set(layer) - KEYS[kind] - {"type", "name"})
        if unknown:
            raise SpecError(f"spec layer {where} ({kind}): unknown key {unknown[0]!r}")
        if kind == "dense" and len(shape) != 1:
            modules[str(len(modules))] = nn.Flatten()
            shape = [int(np.prod(shape))]
        module, shape = _make_layer(kind, layer, shape, gen, context, where)
        name = layer.get("name")
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise SpecError(f"spec layer {where}: \"name\" must be non-empty and contain no \".\"")
        name = name or str(len(modules))
        if name in modules:
            raise SpecError(f"layer {path or 'list'}: two layers are named {name!r}")
        modules[name] = module
    return SpecSequential(modules), shape


def build_model(spec, seed=42, init="backprop", exact_dropout=True):
    """The spec's network as a `torch.nn.Module` whose `state_dict()` keys (parameters and
    buffers) are Backprop's tensor names.

    - `spec`: the spec's JSON object (or a path to it); only "input" and "layers" are read.
    - `seed`: the run's seed (`training.seed`, 42 by default): with `init="backprop"` the initial
      weights are Backprop's for that seed, bit for bit, and dropout masks use it.
    - `init="torch"`: PyTorch's default initialisation of conv/dense layers instead (dropout
      salts still come from Backprop's generator).
    - `exact_dropout=False`: torch's dropout RNG instead of Backprop's hashed masks.

    The model has `.context` (a `StepContext`: set `.step` to the iteration before each training
    forward for Backprop's dropout masks), `.input_shape`, `.output_shape` and `.spec`.
    """
    if isinstance(spec, (str, os.PathLike)):
        with open(spec) as f:
            spec = json.load(f)
    context = StepContext(seed=seed, exact_dropout=exact_dropout)
    gen = SeededGenerator(seed)
    model, shape = _make_sequence(network_layers(spec), spec["input"], gen, context)
    if init == "torch":
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.reset_parameters()
    elif init != "backprop":
        raise ValueError("init must be 'backprop' or 'torch'")
    model.context = context
    model.input_shape, model.output_shape, model.spec = list(spec["input"]), shape, spec
    return model


def whitening_filters(inputs, k, filters, relative_epsilon=5e-4):
    """`Whitening.filters` (Sources/Backprop/Whitening.swift): ±eigenvectors / sqrt(λ + ε) of the
    k×k patches' second-moment matrix of float32 `inputs` [N, C, H, W], in float64; each
    eigenvector's largest-magnitude entry made positive; ε = relative_epsilon · trace / d."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float64)
    n, c = x.shape[:2]
    patches = x.unfold(2, k, 1).unfold(3, k, 1)            # [N, C, Ho, Wo, k, k]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
    sigma = patches.T @ patches / patches.shape[0]
    values, vectors = torch.linalg.eigh(sigma)             # ascending; columns are vectors
    values, vectors = values.flip(0), vectors.flip(1).T    # descending; rows are vectors
    d = c * k * k
    largest = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors[torch.arange(d), largest])
    vectors = vectors * signs[:, None]
    epsilon = relative_epsilon * float(values.sum()) / d
    scaled = vectors / torch.sqrt(values.clamp(min=0) + epsilon)[:, None]
    weight = torch.cat([scaled, -scaled]) if filters == 2 * d else scaled
    return weight.reshape(filters, c, k, k).float()


def initialize_from_data(model, inputs):
    """`Network.initializeFromData`: sets every whitening convolution (the first layer only)
    from `inputs`, float32 [N, C, H, W]."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and getattr(module, "awaits_whitening", False):
            with torch.no_grad():
                module.weight.copy_(whitening_filters(inputs, module.kernel_size[0], module.out_channels))
            module.awaits_whitening = False


WHITENING_SAMPLE_SIZE = 5000  # Trainer.whiteningSampleSize


def decaying_parameters(model):
    """The names of the parameters Backprop marks `decays` (the weights of conv and dense
    layers, and BatchNorm's β with `bias_decay`; not other biases, not BatchNorm's γ)."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            names.add(f"{prefix}.weight" if prefix else "weight")
    names.update(n for n, p in model.named_parameters() if getattr(p, "backprop_decays", False))
    return names


# MARK: - Loading a Backprop model


def load_backprop_model(folder, device="cpu"):
    """A Backprop model (a run folder with model.safetensors, or the .safetensors file itself)
    as a PyTorch module in eval mode: the network is rebuilt from the file's `backprop.model`
    metadata and every tensor is loaded strictly (missing or unexpected names, or a shape
    mismatch, raise). Attached: `.preprocessing` ({"scale", "mean"}), `.class_names`,
    `.dataset`; `preprocess(model, uint8_images)` makes inputs the way Backprop does."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = folder if str(folder).endswith(".safetensors") else os.path.join(folder, "model.safetensors")
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    if "backprop.model" not in metadata:
        raise SpecError(f"{path}: no backprop.model description in the safetensors metadata")
    description = json.loads(metadata["backprop.model"])
    model = build_model(description["network"], seed=0)
    model.load_state_dict(load_file(path, device=device), strict=True)
    model.preprocessing = description["preprocessing"]
    model.class_names = description["class_names"]
    model.dataset = description["dataset"]
    return model.eval()


def preprocess(model_or_preprocessing, images):
    """`x = byte · scale − mean[c]` in float32 for uint8 images `[N, C, H, W]` (numpy or torch)."""
    p = getattr(model_or_preprocessing, "preprocessing", model_or_preprocessing)
    return Preprocessing(p["scale"], p["mean"]).apply(np.asarray(images))


# MARK: - Training options (Sources/BackpropTraining/Experiment.swift)

COMMON_DEFAULTS = {
    "seed": 42, "validation_interval": 200, "moving_average": 0.99, "reshuffle_each_epoch": False,
    "optimizer": "course_sgd", "nesterov": False, "decoupled_weight_decay": False, "beta2": 0.999,
    "epsilon": 1e-8, "schedule": "constant", "label_smoothing": 0.0, "ema": 0.0, "ema_warmup": False, "augmentation": "none",
    "lookahead": None, "checkpoint_interval": 1000, "save_best": False, "test_time_augmentation": "none",
    "muon_learning_rate": 0.24, "muon_momentum": 0.6,
}
DATASET_DEFAULTS = {
    "mnist": dict(iterations=3000, batch_size=16, learning_rate=0.1, momentum=0.9, weight_decay=0.005,
                  train_size=60000, validation_size=2000),
    "cifar10": dict(iterations=5000, batch_size=16, learning_rate=1e-3, momentum=0.95, weight_decay=0.001,
                    train_size=20000, validation_size=2000),
}
IMAGE_SHAPES = {"mnist": [1, 28, 28], "cifar10": [3, 32, 32]}


def default_options(dataset):
    """`Experiment.defaultOptions(for:)`: the seed's options for a data set."""
    return {**COMMON_DEFAULTS, **DATASET_DEFAULTS[dataset]}


class Experiment:
    """A spec file read as Backprop reads it: `name`, `dataset`, `spec` (the JSON object) and
    `options` (the dataset's defaults overridden by the spec's "training" keys)."""

    def __init__(self, spec, source="spec", dataset=None):
        self.spec = spec
        self.dataset = spec.get("dataset", dataset)
        if self.dataset not in DATASET_DEFAULTS:
            raise SpecError(f"{source}: \"dataset\" must be \"mnist\" or \"cifar10\"")
        # A run folder's experiment.json names its format and version (Backprop's FileFormat).
        if spec.get("format", "backprop-experiment") != "backprop-experiment" or spec.get("version", 1) != 1:
            raise SpecError(f"{source}: not a version-1 backprop-experiment file")
        unknown = sorted(set(spec) - {"dataset", "input", "layers", "training", "name", "format", "version"})
        if unknown:
            raise SpecError(f"{source}: unknown key {unknown[0]!r}")
        self.name = spec.get("name") or os.path.splitext(os.path.basename(source))[0]
        options = default_options(self.dataset)
        for key, value in (spec.get("training") or {}).items():
            if key not in options:
                raise SpecError(f"{source}: training: unknown key {key!r}")
            options[key] = value
        self.options = options


def load_experiment(path, dataset=None):
    with open(path) as f:
        return Experiment(json.load(f), source=path, dataset=dataset)


def f32(x):
    """A number as Backprop stores it in a `Float` setting (learning rate, momentum, weight decay)."""
    return float(np.float32(x))


def validate_options(o, image_height=None, image_width=None, available=None):
    """`TrainingOptions.validate`: raises SpecError with Backprop's reasons."""
    def need(ok, message):
        if not ok:
            raise SpecError(message)
    need(1 <= o["iterations"] <= 1 << 40, f"iterations must be from 1 to 2^40, got {o['iterations']}")
    need(1 <= o["batch_size"] <= 1 << 16, f"batch size must be from 1 to 65536, got {o['batch_size']}")
    need(o["learning_rate"] > 0, "learning rate must be a positive number")
    need(0 <= o["momentum"] < 1, "momentum must be in [0, 1)")
    need(o["weight_decay"] >= 0, "weight decay must be >= 0")
    need(o["train_size"] > o["validation_size"] >= 0, "train size must exceed the validation size (>= 0)")
    if available is not None:
        need(o["train_size"] <= available, f"train size {o['train_size']} exceeds the {available} training images available")
    need(o["validation_interval"] > 0, "validation interval must be positive")
    need(0 <= o["ema"] < 1, "ema must be in [0, 1)")
    lookahead = lookahead_settings(o)
    if lookahead is not None:
        every, decay, power = lookahead
        need(1 <= every <= 1 << 30, f"lookahead every must be from 1 to 2^30 steps, got {every}")
        need(0 <= decay <= 1, f"lookahead decay must be in [0, 1], got {decay}")
        need(0 <= power <= 100, f"lookahead power must be in [0, 100], got {power}")
    need(0 <= o["label_smoothing"] <= 1, "label smoothing must be in [0, 1]")
    need(o["optimizer"] in ("course_sgd", "sgd", "adamw", "muon"), "optimizer must be course_sgd, sgd, adamw or muon")
    need(not o["nesterov"] or (o["optimizer"] in ("sgd", "muon") and o["momentum"] > 0), "nesterov needs the sgd or muon optimizer with momentum > 0")
    need(not o["decoupled_weight_decay"] or o["optimizer"] in ("sgd", "muon"), "decoupled weight decay is an option of the sgd and muon optimizers")
    need(o["muon_learning_rate"] > 0, "muon learning rate must be a positive number")
    need(0 <= o["muon_momentum"] < 1, "muon momentum must be in [0, 1)")
    Schedule.parse(o["schedule"]).validate(o["iterations"])
    if image_height is not None:
        Augmentation.parse(o["augmentation"]).validate(image_height, image_width)


# MARK: - Schedules (Sources/Backprop/Schedule.swift)


class Schedule:
    """A learning-rate (and one-cycle momentum) schedule, parsed from Backprop's string form:
    `constant`, `step:EVERY:FACTOR`, `cosine[:MIN_FACTOR]`, `onecycle[:key=value,…]` (torch's
    OneCycleLR keys and defaults), `warmup:STEPS[:START_FACTOR]+SCHEDULE`. `step` is the number
    of optimizer steps already taken (iteration − 1); steps past the end keep the last value."""

    ONECYCLE_DEFAULTS = dict(pct_start=0.3, anneal_strategy="cos", div_factor=25.0, final_div_factor=1e4,
                             cycle_momentum=True, base_momentum=0.85, max_momentum=0.95)

    def __init__(self, kind, **settings):
        self.kind, self.settings = kind, settings

    def __repr__(self):
        return f"Schedule({self.kind}, {self.settings})"

    @classmethod
    def parse(cls, text):
        def fail(reason):
            return SpecError(f"schedule '{text}': {reason}")
        if "+" in text:
            head, rest = text.split("+", 1)
            fields = head.split(":")
            if fields[0] != "warmup" or len(fields) not in (2, 3):
                raise fail("expected warmup:STEPS[:START_FACTOR]+SCHEDULE")
            inner = cls.parse(rest)
            if inner.kind in ("onecycle", "warmup"):
                raise fail(f"warmup cannot wrap {inner.kind}")
            steps = int(fields[1])
            if steps < 1:
                raise fail("the warm-up's steps must be a whole number ≥ 1")
            start = float(fields[2]) if len(fields) == 3 else 0.01
            return cls("warmup", steps=steps, start_factor=start, inner=inner)
        kind, _, arguments = text.partition(":")
        has_arguments = ":" in text
        if kind == "constant":
            if has_arguments:
                raise fail("constant takes no arguments")
            return cls("constant")
        if kind == "step":
            fields = arguments.split(":") if has_arguments else []
            if len(fields) != 2:
                raise fail("expected step:EVERY:FACTOR")
            return cls("step", every=int(fields[0]), factor=float(fields[1]))
        if kind == "cosine":
            return cls("cosine", minimum_factor=float(arguments) if has_arguments else 0.0)
        if kind == "onecycle":
            c = dict(cls.ONECYCLE_DEFAULTS)
            if has_arguments:
                for option in arguments.split(","):
                    key, eq, value = option.partition("=")
                    if not eq or key not in c:
                        raise fail(f"bad onecycle option '{option}'")
                    if key == "anneal_strategy":
                        if value not in ("cos", "linear"):
                            raise fail("anneal_strategy must be cos or linear")
                        c[key] = value
                    elif key == "cycle_momentum":
                        if value not in ("true", "false"):
                            raise fail("cycle_momentum must be true or false")
                        c[key] = value == "true"
                    else:
                        c[key] = float(value)
            return cls("onecycle", **c)
        raise fail("unknown schedule")

    def validate(self, total):
        if total < 1:
            raise SpecError(f"schedule needs at least 1 step, got {total}")
        # Below 1 the rising phase holds no step (as in torch); at exactly 1 torch divides by zero.
        if self.kind == "onecycle" and self.settings["pct_start"] * total == 1:
            raise SpecError(f"schedule onecycle: pct_start × steps must not be exactly 1, got {self.settings['pct_start']} × {total}")
        if self.kind == "warmup":
            if not self.settings["steps"] < total:
                raise SpecError(f"schedule warmup: the warm-up's {self.settings['steps']} steps leave none of the run's {total}")
            self.settings["inner"].validate(total - self.settings["steps"])

    def _position(self, t, total):
        c = self.settings
        t = float(min(t, total - 1))
        end1, end2 = c["pct_start"] * total - 1, float(total - 1)
        return (True, t / end1) if t <= end1 else (False, (t - end1) / (end2 - end1))

    def _anneal(self, start, end, p):
        if self.settings["anneal_strategy"] == "cos":
            return end + (start - end) / 2 * (math.cos(math.pi * p) + 1)
        return (end - start) * p + start

    def learning_rate(self, step, total, base):
        c = self.settings
        if self.kind == "constant":
            return base
        if self.kind == "step":
            return base * math.pow(c["factor"], float(step // c["every"]))
        if self.kind == "cosine":
            minimum = c["minimum_factor"] * base
            if step >= total:
                return minimum
            return minimum + (base - minimum) * (1 + math.cos(float(step) * math.pi / float(total))) / 2
        if self.kind == "onecycle":
            initial = base / c["div_factor"]
            final = initial / c["final_div_factor"]
            rising, p = self._position(step, total)
            return self._anneal(initial, base, p) if rising else self._anneal(base, final, p)
        if self.kind == "warmup":
            if step < c["steps"]:
                s = c["start_factor"]
                return base * (s + (1 - s) * float(step) / float(c["steps"]))
            return c["inner"].learning_rate(step - c["steps"], total - c["steps"], base)
        raise AssertionError(self.kind)

    def momentum(self, step, total):
        """The momentum (SGD's μ, AdamW's β1) the schedule sets for this step, or None."""
        c = self.settings
        if self.kind == "onecycle" and c["cycle_momentum"]:
            rising, p = self._position(step, total)
            return (self._anneal(c["max_momentum"], c["base_momentum"], p) if rising
                    else self._anneal(c["base_momentum"], c["max_momentum"], p))
        if self.kind == "warmup" and step >= c["steps"]:
            return c["inner"].momentum(step - c["steps"], total - c["steps"])
        return None


# MARK: - Optimizers (SGD.swift, PyTorchSGD.swift, AdamW.swift)


class CourseSGD(torch.optim.Optimizer):
    """The course's SGD (Backprop's `course_sgd`): `m = μm + (1 − μ)g; w −= α(m + λw)`, or with
    μ = 0 `w −= α(g + λw)`; every parameter given decays (biases and BatchNorm's too)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            alpha, mu, lam = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if mu == 0:
                    p.sub_(alpha * (p.grad + lam * p))
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                m = state["velocity"]
                m.mul_(mu).add_((1 - mu) * p.grad)
                p.sub_(alpha * (m + lam * p))


class BackpropOptimizer:
    """The optimizer a run's options describe, over the model's trainable parameters, with
    `set(lr, momentum)` for the schedule and `step()`.

    - course_sgd: `CourseSGD` over every trainable parameter.
    - sgd: `torch.optim.SGD` with two groups, decaying (conv/dense weights) and not; with
      `decoupled_weight_decay` the decaying weights are first multiplied by `1 − αλ` and the
      SGD step has no decay.
    - adamw: `torch.optim.AdamW` with the same two groups (β1 = momentum).
    """

    def __init__(self, model, options):
        o = options
        self.kind = o["optimizer"]
        lr, mu, lam = f32(o["learning_rate"]), f32(o["momentum"]), f32(o["weight_decay"])
        self.weight_decay, self.decoupled, self.beta2 = lam, bool(o["decoupled_weight_decay"]), float(o["beta2"])
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.muon = None
        if self.kind == "muon":
            # Convolution filters go to Muon; everything else to SGD as "sgd" sets it up.
            filters = [p for n, p in trainable if p.dim() == 4]
            trainable = [(n, p) for n, p in trainable if p.dim() != 4]
            self.muon = Muon(filters, float(o["muon_learning_rate"]), float(o["muon_momentum"]))
            self.muon_ratio = float(o["muon_learning_rate"]) / f32(o["learning_rate"])
        decaying = decaying_parameters(model)
        # Parameters with a learning-rate scale s (BatchNorm's bias_lr_scale) get groups of their
        # own; a decaying one gets torch weight_decay λ/s, so that its step decays it by αλ as the
        # others (airbench's wd / lr_biases); decoupled SGD shrinks it below instead.
        scale = lambda p: getattr(p, "backprop_lr_scale", 1.0)
        scales = sorted({scale(p) for n, p in trainable} - {1.0})
        decay = [p for n, p in trainable if n in decaying and scale(p) == 1.0]
        plain = [p for n, p in trainable if n not in decaying and scale(p) == 1.0]
        group_decay = 0.0 if self.kind in ("sgd", "muon") and self.decoupled else lam
        scaled = [dict(params=[p for n, p in trainable if (n in decaying) == decays and scale(p) == s],
                       weight_decay=group_decay / s if decays else 0.0, lr_scale=s)
                  for s in scales for decays in (True, False)]
        scaled = [g for g in scaled if g["params"]]
        self.decaying = [p for n, p in trainable if n in decaying]
        if self.kind == "course_sgd":
            self.optimizer = CourseSGD([p for _, p in trainable], lr=lr, momentum=mu, weight_decay=lam)
        elif self.kind in ("sgd", "muon"):
            coupled = 0.0 if self.decoupled else lam
            self.optimizer = torch.optim.SGD([dict(params=decay, weight_decay=coupled), dict(params=plain, weight_decay=0.0)] + scaled,
                                             lr=lr, momentum=mu, nesterov=bool(o["nesterov"]))
        elif self.kind == "adamw":
            self.optimizer = torch.optim.AdamW([dict(params=decay, weight_decay=lam), dict(params=plain, weight_decay=0.0)] + scaled,
                                               lr=lr, betas=(mu, self.beta2), eps=float(o["epsilon"]))
        else:
            raise SpecError(f"unknown optimizer {self.kind!r}")
        self.lr = lr

    def set(self, lr, momentum=None):
        self.lr = lr
        if self.muon:
            self.muon.lr = lr * self.muon_ratio
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            if momentum is not None:
                if self.kind == "adamw":
                    group["betas"] = (momentum, self.beta2)
                else:
                    group["momentum"] = momentum

    def zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)
        if self.muon:
            for p in self.muon.parameters:
                p.grad = None

    @torch.no_grad()
    def step(self):
        if self.kind in ("sgd", "muon") and self.decoupled and self.weight_decay:
            shrink = 1 - self.lr * self.weight_decay
            for p in self.decaying:
                p.mul_(shrink)
        self.optimizer.step()
        if self.muon:
            self.muon.step()


def newton_schulz(g, steps=3):
    """Backprop's `Muon.orthogonalize`: three steps of the quintic Newton–Schulz iteration
    (airbench94_muon's coefficients) on `g / ‖g‖`, in float32, on the wide orientation."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * (s @ s)) @ x
    return x.T if tall else x


class Muon:
    """Backprop's Muon for convolution filters, as airbench94_muon runs it: per filter tensor
    `w` (out × …) with gradient `g`: `b = μb + g`, `d = g + μb` (Nesterov),
    `w ← w·√out/‖w‖`, `w ← w − lr·NS(d as out × rest)`."""

    def __init__(self, parameters, lr, momentum):
        self.parameters, self.lr, self.momentum = list(parameters), lr, momentum
        self.buffers = [torch.zeros_like(p) for p in self.parameters]

    @torch.no_grad()
    def step(self):
        for p, b in zip(self.parameters, self.buffers):
            if p.grad is None:
                continue
            b.mul_(self.momentum).add_(p.grad)
            d = p.grad + self.momentum * b
            p.mul_(p.size(0) ** 0.5 / p.norm())
            p.add_(newton_schulz(d.reshape(p.size(0), -1)).view_as(p), alpha=-self.lr)


class ExponentialMovingAverage:
    """Backprop's EMA: a copy of the model whose parameters *and* float buffers follow
    `a += (1 − d)(w − a)` after each step (integer buffers — num_batches_tracked — copied);
    `averaged` is the model Backprop validates and saves. With `warm_up` the decay is
    `min(decay, (1 + n)/(10 + n))` after `n` updates (computed in double, as Backprop does)."""

    def __init__(self, model, decay, warm_up=False):
        self.decay = decay
        self.warm_up = warm_up
        self.updates = 0
        self.averaged = copy.deepcopy(model)
        self.rate = float(np.float32(1 - decay))

    @torch.no_grad()
    def update(self, model):
        if self.warm_up:
            n = float(self.updates)
            self.rate = float(np.float32(1 - min(self.decay, (1 + n) / (10 + n))))
        self.updates += 1
        live = model.state_dict()
        for name, average in self.averaged.state_dict().items():
            value = live[name]
            if average.is_floating_point():
                average.add_((value - average) * self.rate)
            else:
                average.copy_(value)


def lookahead_settings(o):
    """(every, decay, power) of the options' `lookahead` (`LookaheadOptions`: `true` or an object
    with airbench's defaults for missing keys), or None."""
    value = o.get("lookahead")
    if value is None or value is False:
        return None
    settings = {} if value is True else dict(value)
    unknown = sorted(set(settings) - {"every", "decay", "power"})
    if unknown:
        raise SpecError(f"training: \"lookahead\": unknown key {unknown[0]!r} (every, decay, power)")
    return int(settings.get("every", 5)), float(settings.get("decay", 0.7737809375)), float(settings.get("power", 3.0))


class Lookahead:
    """Backprop's `Lookahead` (airbench94's): after step t of T, when t is a multiple of `every`,
    the slow copy of the parameters and float buffers moves `s += (1 − d)(w − s)` with
    `d = decay · (t/T)^power` (double, then the rate in float32) and the live ones are set to it;
    after step T the live ones take the slow ones. Integer buffers are left alone."""

    def __init__(self, model, every, decay, power):
        self.every, self.decay, self.power = every, decay, power
        self.slow = {name: value.detach().clone() for name, value in model.state_dict().items() if value.is_floating_point()}

    @torch.no_grad()
    def after_step(self, model, step, total):
        live = model.state_dict()
        if step % self.every == 0:
            rate = float(np.float32(1 - self.decay * (step / total) ** self.power))
            for name, slow in self.slow.items():
                slow.add_((live[name] - slow) * rate)
                live[name].copy_(slow)
        if step == total:
            for name, slow in self.slow.items():
                live[name].copy_(slow)


# MARK: - Data (Sources/BackpropData, Sources/BackpropTraining/Preprocessing.swift)


def _read(path):
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def _find_folder(directory, sub, probe):
    for folder in [directory, os.path.join(directory, sub)]:
        if probe(folder):
            return folder
    return None


def load_mnist(directory, train_limit=None):
    """The four IDX files (official or `train-images.idx3-ubyte` names, optionally .gz) in
    `directory` or `directory/mnist`: uint8 images `[N, 1, 28, 28]` and labels."""
    def spellings(name):
        dotted = name.replace("-idx", ".idx")
        return [name + ".gz", name, dotted + ".gz", dotted]

    def file(folder, name):
        for candidate in spellings(name):
            if os.path.isfile(os.path.join(folder, candidate)):
                return os.path.join(folder, candidate)
        return None
    folder = _find_folder(directory, "mnist", lambda f: file(f, "train-images-idx3-ubyte") is not None)
    if folder is None:
        raise FileNotFoundError(f"no MNIST files in {directory} or {directory}/mnist")

    def pair(images, labels):
        raw_images, raw_labels = _read(file(folder, images)), _read(file(folder, labels))
        assert int.from_bytes(raw_images[:4], "big") == 0x803 and int.from_bytes(raw_labels[:4], "big") == 0x801
        n = int.from_bytes(raw_images[4:8], "big")
        x = np.frombuffer(raw_images, np.uint8, offset=16).reshape(n, 1, 28, 28)
        y = np.frombuffer(raw_labels, np.uint8, offset=8).astype(np.int64)
        return x, y
    train = pair("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    test = pair("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    if train_limit is not None:
        train = (train[0][:train_limit], train[1][:train_limit])
    return dict(kind="mnist", train_images=train[0], train_labels=train[1], test_images=test[0], test_labels=test[1],
                class_names=[str(i) for i in range(10)])


def load_cifar10(directory, train_limit=None):
    """The binary batches (`data_batch_N.bin[.gz]`, `test_batch.bin[.gz]`) in `directory`, its
    `cifar-10-batches-bin/`, `cifar10/cifar-10-batches-bin/` or `cifar10/`, or the
    `cifar-10-binary.tar.gz` archive: uint8 images `[N, 3, 32, 32]` (CHW as stored) and labels.
    Only the training batches `train_limit` needs are read."""
    count = min(train_limit if train_limit is not None else 50000, 50000)
    wanted = [f"data_batch_{i}.bin" for i in range(1, (count + 9999) // 10000 + 1)] + ["test_batch.bin"]
    folders = [directory, os.path.join(directory, "cifar-10-batches-bin"),
               os.path.join(directory, "cifar10", "cifar-10-batches-bin"), os.path.join(directory, "cifar10")]
    blobs = {}
    folder = next((f for f in folders if any(os.path.isfile(os.path.join(f, n + s)) for n in wanted for s in ("", ".gz"))), None)
    if folder is not None:
        for name in wanted:
            path = os.path.join(folder, name)
            blobs[name] = _read(path if os.path.isfile(path) else path + ".gz")
    else:
        archive = next((a for a in [os.path.join(directory, "cifar-10-binary.tar.gz"),
                                    os.path.join(directory, "cifar10", "cifar-10-binary.tar.gz"), directory]
                        if os.path.isfile(a)), None)
        if archive is None:
            raise FileNotFoundError(f"no CIFAR-10 data in {directory}")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                base = os.path.basename(member.name)
                if base in wanted and base not in blobs:
                    blobs[base] = tar.extractfile(member).read()

    def take(names, n):
        records = np.concatenate([np.frombuffer(blobs[name], np.uint8).reshape(10000, 3073) for name in names])[:n]
        return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)
    train = take(wanted[:-1], count)
    test = take(["test_batch.bin"], 10000)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = os.path.join(folder, "batches.meta.txt") if folder else None
    if meta and os.path.isfile(meta):
        with open(meta) as f:
            listed = [line.strip() for line in f if line.strip()]
        if len(listed) == 10:
            names = listed
    return dict(kind="cifar10", train_images=train[0], train_labels=train[1], test_images=test[0], test_labels=test[1],
                class_names=names)


def load_dataset(kind, directory, train_limit=None):
    return (load_mnist if kind == "mnist" else load_cifar10)(directory, train_limit)


class Preprocessing:
    """`x = byte · scale − mean[c]` in float32 (MNIST: scale 1/255 and one mean; CIFAR-10:
    scale 1 and a mean per channel), the means fitted on the training split."""

    def __init__(self, scale, mean):
        self.scale = np.float32(scale)
        self.mean = [np.float32(m) for m in mean]

    @classmethod
    def fit(cls, kind, images, indices):
        scale = np.float32(1) / np.float32(255) if kind == "mnist" else np.float32(1)
        selected = images[indices]
        planes = images.shape[1] if kind == "cifar10" else 1
        plane_size = images[0].size // planes
        sums = selected.reshape(len(indices), planes, plane_size).sum(axis=(0, 2), dtype=np.int64)
        count = float(max(len(indices), 1) * plane_size)
        return cls(scale, [np.float32(float(s) / count * float(scale)) for s in sums])

    def means(self, channels):
        return np.asarray(self.mean if len(self.mean) == channels else self.mean[:1] * channels, np.float32)

    def apply(self, images):
        """uint8 `[N, C, H, W]` → float32 numpy `[N, C, H, W]`."""
        m = self.means(images.shape[1])[None, :, None, None]
        return images.astype(np.float32) * self.scale - m

    def as_dict(self):
        return {"scale": float(self.scale), "mean": [float(m) for m in self.mean]}


def prepare_data(dataset, options):
    """`PreparedData`: the first train_size images shuffled once by
    SeededGenerator(seed ^ "SHUFFLE!"); the last validation_size of that order held out; the
    preprocessing fitted on the rest."""
    gen = SeededGenerator(options["seed"] ^ 0x5348_5546_464C_4521)  # "SHUFFLE!"
    order = gen.permutation(min(options["train_size"], len(dataset["train_images"])))
    v = options["validation_size"]
    train_indices, validation_indices = order[:len(order) - v], order[len(order) - v:]
    pre = Preprocessing.fit(dataset["kind"], dataset["train_images"], train_indices)
    return dict(train_indices=train_indices, validation_indices=validation_indices, preprocessing=pre)


# MARK: - Augmentation (Sources/BackpropTraining/Augmentation.swift)


class Augmentation:
    """Flip (`random` per example and epoch, or airbench's `alternating`) and a shift
    (`crop:P` = RandomCrop with padding P, zero fill; `translate:K`, reflect fill), drawn from
    Backprop's hash of (seed, stream, epoch, example): the same draws as Backprop's."""

    def __init__(self, flip="none", shift=None, pixels=0, fill="zero"):
        self.flip, self.shift, self.pixels, self.fill = flip, shift, pixels, fill

    @classmethod
    def parse(cls, value):
        """The CLI string (`none`, `flip,crop:4`, `altflip,translate:2:reflect`, …) or the JSON
        object a run folder saves (`{"flip": "alternating", "shift": {"translate": {…}}}`)."""
        if isinstance(value, dict):
            a = cls(flip=value.get("flip", "none"))
            for kind, settings in (value.get("shift") or {}).items():
                a.shift = kind
                a.pixels = int(settings["padding" if kind == "crop" else "pixels"])
                a.fill = settings.get("fill", "zero" if kind == "crop" else "reflect")
            return a
        a = cls()
        items = [item.strip().lower() for item in str(value).split(",")]
        if items == ["none"]:
            return a
        for item in items:
            parts = item.split(":")
            if parts[0] in ("flip", "altflip") and len(parts) == 1 and a.flip == "none":
                a.flip = "random" if parts[0] == "flip" else "alternating"
            elif parts[0] in ("crop", "translate") and len(parts) in (2, 3) and a.shift is None:
                a.shift, a.pixels = parts[0], int(parts[1])
                a.fill = parts[2] if len(parts) == 3 else ("zero" if parts[0] == "crop" else "reflect")
                if a.pixels < 1 or a.fill not in ("zero", "reflect"):
                    raise SpecError(f"bad augmentation {value!r}")
            else:
                raise SpecError(f"bad augmentation {value!r}")
        return a

    @property
    def is_identity(self):
        return self.flip == "none" and self.shift is None

    def __str__(self):
        items = {"none": [], "random": ["flip"], "alternating": ["altflip"]}[self.flip]
        if self.shift:
            items.append(f"{self.shift}:{self.pixels}:{self.fill}")
        return ",".join(items) or "none"

    def validate(self, height, width):
        if self.shift and self.pixels >= min(height, width):
            raise SpecError(f"augmentation {self}: a shift of {self.pixels} px must be smaller than the {height}x{width} images")

    @staticmethod
    def _bits(seed, stream, epochs, examples):
        h = mix(mix(seed ^ 0x4155_474D_454E_5421) ^ stream)  # "AUGMENT!"
        h = mix_array(np.uint64(h) ^ epochs.astype(np.uint64))
        return mix_array(h ^ examples.astype(np.uint64))

    def draw(self, seed, epochs, examples):
        """(flip, row shift, column shift) arrays for examples (indices into the image file) in
        epochs."""
        epochs, examples = np.asarray(epochs, np.int64), np.asarray(examples, np.int64)
        n = len(examples)
        flip = np.zeros(n, bool)
        if self.flip == "random":
            flip = (self._bits(seed, 1, epochs, examples) >> np.uint64(63)) == 1
        elif self.flip == "alternating":
            base = (self._bits(seed, 2, np.zeros_like(epochs), examples) >> np.uint64(63)) == 1
            flip = base != ((epochs & 1) == 1)
        dy = dx = np.zeros(n, np.int64)
        if self.shift:
            p, c = self.pixels, 2 * self.pixels + 1
            dy = high_product(self._bits(seed, 3, epochs, examples), c).astype(np.int64) - p
            dx = high_product(self._bits(seed, 4, epochs, examples), c).astype(np.int64) - p
        return flip, dy, dx

    def render(self, values, flip, dy, dx):
        """`out[c, y, x] = v(c, y + dy, x′ + dx)`, `x′ = W − 1 − x` when flipped, on preprocessed
        float32 images `values` `[B, C, H, W]`; outside the image 0 (zero fill) or the mirror
        image without repeating the edge (reflect fill)."""
        b, c, h, w = values.shape
        p = self.pixels
        padded = np.pad(values, ((0, 0), (0, 0), (p, p), (p, p)), mode="constant" if self.fill == "zero" else "reflect") if p else values
        rows = np.arange(h)[None, :] + dy[:, None] + p
        columns = np.arange(w)[None, :]
        columns = np.where(flip[:, None], w - 1 - columns, columns) + dx[:, None] + p
        return padded[np.arange(b)[:, None, None, None], np.arange(c)[None, :, None, None],
                      rows[:, None, :, None], columns[:, None, None, :]]


# MARK: - Batches (Sources/BackpropTraining/BatchSource.swift)


class BatchSource:
    """Batch t (from 1) holds the examples at positions (t − 1)·B ..< t·B of an endless stream over
    the training split: position p is slot p mod n of epoch ⌊p / n⌋. `fixed` order walks the
    split's order every epoch; `reshuffled_in_sequence` (reshuffle_each_epoch) walks it in epoch
    0 and the e-th permutation drawn from SeededGenerator(seed ^ "EPOCHS!!") in epoch e;
    `reshuffled_by_epoch` a permutation from a generator seeded by a hash of (seed, e). Each
    example is preprocessed, then shifted and flipped by its draw."""

    def __init__(self, images, labels, indices, preprocessing, batch_size, seed, order="fixed", augmentation=None):
        self.images, self.labels, self.indices = images, labels, np.asarray(indices, np.int64)
        self.pre, self.batch_size, self.seed, self.order = preprocessing, batch_size, seed, order
        self.augmentation = augmentation or Augmentation()
        self.sequence_seed = seed ^ 0x4550_4F43_4853_2121  # "EPOCHS!!"
        self._epoch, self._slots, self._gen = -1, None, None

    def _epoch_seed(self, epoch):
        z = ((self.sequence_seed ^ ((epoch * 0xD1B54A32D192ED03) & MASK64)) + 0x9E3779B97F4A7C15) & MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def _slots_of(self, epoch):
        n = len(self.indices)
        if self.order == "fixed":
            return None
        if epoch == self._epoch:
            return self._slots
        if self.order == "reshuffled_by_epoch":
            self._slots = SeededGenerator(self._epoch_seed(epoch)).permutation(n)
        else:
            if epoch < self._epoch or self._epoch < 0:
                self._gen, self._epoch, self._slots = SeededGenerator(self.sequence_seed), 0, np.arange(n)
            while self._epoch < epoch:
                self._slots = self._gen.permutation(n)
                self._epoch += 1
        self._epoch = epoch
        return self._slots

    def image_indices(self, iteration):
        """The B indices into the image file of batch `iteration`, and each one's epoch."""
        n = len(self.indices)
        positions = (iteration - 1) * self.batch_size + np.arange(self.batch_size)
        epochs, slots = positions // n, positions % n
        result = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            order = self._slots_of(int(epoch))
            result[rows] = self.indices[slots[rows] if order is None else order[slots[rows]]]
        return result, epochs

    def batch(self, iteration):
        """(inputs float32 tensor `[B, C, H, W]`, labels int64 tensor `[B]`) of batch `iteration`."""
        index, epochs = self.image_indices(iteration)
        values = self.pre.apply(self.images[index])
        if not self.augmentation.is_identity:
            flip, dy, dx = self.augmentation.draw(self.seed, epochs, index)
            values = self.augmentation.render(values, flip, dy, dx)
        return torch.from_numpy(np.ascontiguousarray(values)), torch.from_numpy(self.labels[index])


# MARK: - Evaluation


@torch.no_grad()
def predict(model, inputs, batch_size=250):
    """Predicted classes (the first largest logit) of `inputs` (float32 `[N, C, H, W]`, numpy or
    torch) in eval mode, in batches of 250 as Backprop's `Predictions`."""
    was_training = model.training
    model.eval()
    inputs = torch.as_tensor(inputs)
    classes = [model(inputs[start:start + batch_size]).argmax(dim=1) for start in range(0, len(inputs), batch_size)]
    model.train(was_training)
    return torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64)


def tta_views(text):
    """`TestTimeAugmentation.views`: [(flip, dy, dx, weight)] and the fill, from its spelling
    (none | flip | translate:K[:fill] | shift:K[:fill] | grid:K[:fill], comma-separated)."""
    flip, shifts = False, None
    if text and text != "none":
        for item in text.split(","):
            parts = item.split(":")
            if parts[0] == "flip":
                flip = True
            elif parts[0] in ("translate", "shift", "grid"):
                fill = parts[2] if len(parts) > 2 else ("reflect" if parts[0] == "translate" else "zero")
                shifts = (parts[0], int(parts[1]), fill)
            else:
                raise SpecError(f"bad test-time augmentation {text!r}")
    views = [(0, 0, 1.0)]
    if shifts and shifts[0] == "translate":
        k = shifts[1]
        views = [(0, 0, 0.5), (-k, -k, 0.25), (k, k, 0.25)]
    elif shifts and shifts[0] == "shift":
        k = shifts[1]
        views = [(0, 0, 1 / 3)] + [(dy, dx, 1 / 6) for dy, dx in ((-k, 0), (k, 0), (0, -k), (0, k))]
    elif shifts:
        k = shifts[1]
        views = [(0, 0, 1 / 9)] + [(dy, dx, 1 / 9) for dy in (-k, 0, k) for dx in (-k, 0, k) if dy or dx]
    if flip:
        views = [v for dy, dx, w in views for v in ((False, dy, dx, w / 2), (True, dy, dx, w / 2))]
    else:
        views = [(False, dy, dx, w) for dy, dx, w in views]
    return views, (shifts[2] if shifts else "zero")


def predict_tta(model, inputs, text, batch_size=250):
    """Classes from the weighted mean of logits over the test-time augmentation's views of
    float32 preprocessed `inputs` [N, C, H, W] (Augmentation's rule: pad with the fill, shift, flip)."""
    views, fill = tta_views(text)
    x = torch.as_tensor(inputs)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            b = x[start:start + batch_size]
            total = 0
            for flip, dy, dx, weight in views:
                v = b
                if dy or dx:
                    p = max(abs(dy), abs(dx))
                    padded = F.pad(b, (p, p, p, p), mode="reflect" if fill == "reflect" else "constant")
                    h, w = b.shape[2], b.shape[3]
                    v = padded[:, :, p + dy:p + dy + h, p + dx:p + dx + w]
                if flip:
                    v = v.flip(3)
                total = total + np.float32(weight) * model(v)
            out.append(total.argmax(dim=1))
    model.train(was_training)
    return torch.cat(out)


def accuracy(model, inputs, labels):
    if len(labels) == 0:
        return 0.0
    return float((predict(model, inputs) == torch.as_tensor(labels)).double().mean())


# MARK: - A command to compare names


def compare_keys(run_folder):
    """(missing, unexpected, shape mismatches) between a Backprop run folder's model.safetensors
    and `build_model` of its experiment.json."""
    from safetensors import safe_open
    with open(os.path.join(run_folder, "experiment.json")) as f:
        spec = json.load(f)
    model = build_model(spec, seed=spec.get("training", {}).get("seed", 42))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with safe_open(os.path.join(run_folder, "model.safetensors"), "pt") as f:
        theirs = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    return (sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs)),
            sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k]))


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "keys":
        sys.exit("usage: backprop_torch.py keys RUN_DIR   (compares model.safetensors' names with build_model's)")
    missing, unexpected, mismatched = compare_keys(sys.argv[2])
    print(f"missing in PyTorch: {missing}\nonly in PyTorch: {unexpected}\nshape mismatches: {mismatched}")
    sys.exit(1 if missing or unexpected or mismatched else 0)
