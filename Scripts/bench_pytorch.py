#!/usr/bin/env python3
"""Backprop vs PyTorch on this machine, same nets, same batch sizes, same run.

Usage (venv outside the repo):
    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy safetensors
    swift build -c release
    ~/venv-torch/bin/python Scripts/bench_pytorch.py [--threads 2] [--seconds 3] [--repeats 3]
        [--presets mnist,cifar10,cifar10-improved] [--specs FILE,FILE] [--batch-sizes 16,128] [--no-gemm]

    e.g. spec nets only:
    ~/venv-torch/bin/python Scripts/bench_pytorch.py --presets '' --specs Examples/resnet-mnist.json --no-gemm
    e.g. the cifar-fast recipe's net at its batch size:
    ~/venv-torch/bin/python Scripts/bench_pytorch.py --presets cifar-fast --batch-sizes 1024 --no-gemm

For each seed preset (hand-written below), each recipe preset (mnist-fast, cifar-quick,
cifar-fast: their spec from `backprop summary NAME --print-spec`) and each spec file (built by
`backprop_torch.build_model`: the same layers, names and initial weights as Backprop's) at each
batch size it measures, in PyTorch (CPU, `--threads` threads): training img/s (forward + loss +
backward + SGD-with-momentum step, BatchNorm in training mode) and inference img/s (forward under
inference_mode, eval mode); then sgemm GFLOP/s at 2048^3. It runs `backprop bench --json
--threads N` (the same thread count) for each row in its own process (`--presets NAME` or `--presets '' --specs FILE`, so peak memory is
per row) and prints a Markdown table with the ratio Backprop / PyTorch.

What is the same on both sides: the network, the batch size, random inputs and labels, the
training step's parts. What is not: the inputs' values (each side draws its own); Backprop's
bench steps the course's SGD, PyTorch torch.optim.SGD (the same work per weight); dropout in
spec nets uses torch's own RNG here (Backprop hashes its masks; same cost class, other masks).
A `backprop` binary older than `bench --specs` cannot measure spec rows: they are printed with
"n/a" on Backprop's side and a note, and the run goes on.

Timings on a shared machine drift by 10-30 % from one measurement to the next, and a
disturbance only ever slows a run down. So each row is measured `--repeats` times, Backprop and
PyTorch alternating, and each side's best rate is kept.
"""
import argparse, json, os, re, subprocess, sys, tempfile, time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backprop_torch as bt  # noqa: E402

PRESETS = {
    # Same layers and order as Backprop's presets (Sources/BackpropTraining/Experiment.swift).
    "mnist": lambda: nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(784, 10)),
    "cifar10": lambda: nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(4096, 10)),
    "cifar10-improved": lambda: nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 5, padding=2), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.Flatten(), nn.Linear(4096, 10)),
}
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar10-improved": (3, 32, 32)}
# Recipe presets are spec files compiled into Backprop; `backprop summary NAME --print-spec` prints them.
RECIPES = ["mnist-fast", "cifar-quick", "cifar-fast"]


def rate(body, seconds):
    for _ in range(3):
        body()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        body()
        calls += 1
    return calls / (time.perf_counter() - start)


def torch_row(make_net, shape, batch, seconds):
    """PyTorch training and inference img/s of the net `make_net()` on random `[batch, *shape]` inputs."""
    torch.manual_seed(0)
    net = make_net()
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, weight_decay=1e-3)

    def step():
        net.train()
        opt.zero_grad(set_to_none=False)
        loss_fn(net(x), y).backward()
        opt.step()

    def infer():
        net.eval()
        with torch.inference_mode():
            net(x)

    return rate(step, seconds) * batch, rate(infer, seconds) * batch


def spec_net(path):
    """(name, make_net, input shape) of a spec file, as Backprop's bench names its row."""
    experiment = bt.load_experiment(path)
    return experiment.name, lambda: bt.build_model(experiment.spec, seed=1, exact_dropout=False), tuple(experiment.spec["input"])


def recipe_net(binary, name):
    """(name, make_net, input shape) of a recipe preset, from the spec the binary prints for it."""
    spec = subprocess.run([binary, "summary", name, "--print-spec"], check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name + ".json")
        with open(path, "w") as f:
            f.write(spec)
        return spec_net(path)


def torch_gemm(n, seconds):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return rate(lambda: torch.mm(a, b), seconds) * 2 * n ** 3 / 1e9


def backprop_bench(binary, args):
    out = subprocess.run([binary, "bench", "--json", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def snake_case(row):
    """The row with snake_case keys (binaries before `bench --json` format 1 wrote camelCase:
    `trainImagesPerSecond`, `peakMemoryMB`)."""
    renamed = {"trainGFLOPS": "train_gflops", "inferenceGFLOPS": "inference_gflops", "peakMemoryMB": "peak_memory_mb"}
    return {renamed.get(k, re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower()): v for k, v in row.items()}


def backprop_row(binary, args):
    """Backprop's row, or (None, reason) when the binary cannot measure it (e.g. a build older
    than `bench --specs`)."""
    try:
        return snake_case(backprop_bench(binary, args)["rows"][0]), None
    except subprocess.CalledProcessError as error:
        message = (error.stderr or error.stdout or "").strip().splitlines()
        reason = message[0] if message else f"exit status {error.returncode}"
        if "--specs" in " ".join(message) or "Unknown option" in " ".join(message):
            reason = f"this backprop binary has no `bench --specs` ({reason}); rebuild it"
        return None, reason
    except (json.JSONDecodeError, KeyError, IndexError) as error:
        return None, f"unreadable `backprop bench --json` output ({error})"


def measure(label, make_net, shape, batch, backprop_args, args):
    """One table row: best of `--repeats` alternating measurements on each side."""
    runs, train, infer, failure = [], 0.0, 0.0, None
    for _ in range(args.repeats):
        if failure is None:
            row, failure = backprop_row(args.binary, [*backprop_args, "--batch-sizes", str(batch), "--seconds",
                                                      str(args.seconds), "--no-gemm", "--threads", str(args.threads)])
            if row is not None:
                runs.append(row)
        t, i = torch_row(make_net, shape, batch, args.seconds)
        train, infer = max(train, t), max(infer, i)
    if not runs:
        print(f"| {label} | {batch} | n/a | {train:.0f} | | n/a | {infer:.0f} | | | |")
        return failure
    ours = dict(runs[0])
    for key in ("train_images_per_second", "inference_images_per_second", "train_gflops"):
        ours[key] = max(run[key] for run in runs)
    ours["peak_memory_mb"] = max(run["peak_memory_mb"] for run in runs)
    print(f"| {label} | {batch} | {ours['train_images_per_second']:.0f} | {train:.0f} | "
          f"{ours['train_images_per_second'] / train:.2f} | {ours['inference_images_per_second']:.0f} | {infer:.0f} | "
          f"{ours['inference_images_per_second'] / infer:.2f} | {ours['train_gflops']:.1f} | {ours['peak_memory_mb']:.0f} |")
    return failure


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row and side; the best is kept")
    parser.add_argument("--presets", default=",".join(PRESETS), help="seed presets to measure (comma-separated; '' for none)")
    parser.add_argument("--specs", default="", help="spec files to measure too (comma-separated)")
    parser.add_argument("--batch-sizes", default="16,128", help="batch sizes (comma-separated)")
    parser.add_argument("--no-gemm", action="store_true", help="skip the GEMM comparison")
    parser.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "backprop"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in PRESETS and p not in RECIPES]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r} (known: {', '.join([*PRESETS, *RECIPES])}; other nets: --specs)")
    batches = [int(b) for b in args.batch_sizes.split(",") if b]
    rows = []
    for p in presets:
        if p in PRESETS:
            rows.append((p, PRESETS[p], SHAPES[p], ["--presets", p]))
        else:
            try:
                _, make_net, shape = recipe_net(args.binary, p)
            except subprocess.CalledProcessError:
                parser.error(f"{args.binary} cannot print the spec of {p} (`backprop summary {p} --print-spec`); rebuild it")
            rows.append((p, make_net, shape, ["--presets", p]))
    for path in (p for p in args.specs.split(",") if p):
        name, make_net, shape = spec_net(path)
        rows.append((name, make_net, shape, ["--presets", "", "--specs", path]))

    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"Backprop {os.path.relpath(args.binary)}; {args.seconds:g} s per measurement, "
          f"best of {args.repeats} (alternating)\n")
    print("| net | batch | Backprop train img/s | PyTorch train img/s | ratio | Backprop infer img/s | PyTorch infer img/s | ratio | Backprop GFLOP/s (train) | Backprop peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for label, make_net, shape, backprop_args in rows:
        for batch in batches:
            failure = measure(label, make_net, shape, batch, backprop_args, args)
            if failure and failure not in notes:
                notes.append(failure)
            sys.stdout.flush()
    for note in notes:
        print(f"\nBackprop n/a: {note}")
    if args.no_gemm:
        return

    ours, theirs = {}, 0.0
    for _ in range(args.repeats):
        gemm = backprop_bench(args.binary, ["--presets", "mnist", "--batch-sizes", "16", "--seconds", str(args.seconds),
                                            "--threads", str(args.threads)])["gemm"]
        for row in gemm:
            ours[row["shape"]] = max(ours.get(row["shape"], 0.0), row["gflops"])
        theirs = max(theirs, torch_gemm(2048, args.seconds))
    print()
    print("| GEMM | Backprop GFLOP/s | PyTorch GFLOP/s | ratio |")
    print("|---|---|---|---|")
    print(f"| 2048x2048x2048 | {ours['2048x2048x2048']:.1f} | {theirs:.1f} | {ours['2048x2048x2048'] / theirs:.2f} |")
    for shape, gflops in ours.items():
        if shape != "2048x2048x2048":
            print(f"| {shape} | {gflops:.1f} | | |")


if __name__ == "__main__":
    main()
