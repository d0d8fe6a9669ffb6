#!/usr/bin/env python3
"""Backprop vs PyTorch on this machine, same nets, same batch sizes, same run.

Usage (venv outside the repo):
    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy
    swift build -c release
    ~/venv-torch/bin/python Scripts/bench_pytorch.py [--threads 2] [--seconds 3] [--repeats 3]

For each seed preset at batch 16 and 128 it measures, in PyTorch (CPU, `--threads` threads):
training img/s (forward + loss + backward + SGD-with-momentum step) and inference img/s
(forward under inference_mode); then sgemm GFLOP/s at 2048^3. It runs `backprop bench --json`
for each row in its own process (so peak memory is per row) and prints a Markdown table with
the ratio Backprop / PyTorch.

Timings on a shared machine drift by 10-30 % from one measurement to the next, and a
disturbance only ever slows a run down. So each row is measured `--repeats` times, Backprop and
PyTorch alternating, and each side's best rate is kept.
"""
import argparse, json, os, subprocess, sys, time

import torch
import torch.nn as nn

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


def rate(body, seconds):
    for _ in range(3):
        body()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        body()
        calls += 1
    return calls / (time.perf_counter() - start)


def torch_row(preset, batch, seconds):
    torch.manual_seed(0)
    net = PRESETS[preset]()
    x = torch.randn(batch, *SHAPES[preset])
    y = torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-3)

    def step():
        opt.zero_grad(set_to_none=False)
        loss_fn(net(x), y).backward()
        opt.step()

    def infer():
        with torch.inference_mode():
            net(x)

    return rate(step, seconds) * batch, rate(infer, seconds) * batch


def torch_gemm(n, seconds):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return rate(lambda: torch.mm(a, b), seconds) * 2 * n ** 3 / 1e9


def backprop_bench(binary, args):
    out = subprocess.run([binary, "bench", "--json", *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row and side; the best is kept")
    parser.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", ".build", "release", "backprop"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"Backprop {os.path.relpath(args.binary)}; {args.seconds:g} s per measurement, "
          f"best of {args.repeats} (alternating)\n")
    print("| net | batch | Backprop train img/s | PyTorch train img/s | ratio | Backprop infer img/s | PyTorch infer img/s | ratio | Backprop GFLOP/s (train) | Backprop peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset in PRESETS:
        for batch in (16, 128):
            runs, train, infer = [], 0.0, 0.0
            for _ in range(args.repeats):
                runs.append(backprop_bench(args.binary, ["--presets", preset, "--batch-sizes", str(batch),
                                                         "--seconds", str(args.seconds), "--no-gemm"])["rows"][0])
                t, i = torch_row(preset, batch, args.seconds)
                train, infer = max(train, t), max(infer, i)
            ours = dict(runs[0])
            for key in ("trainImagesPerSecond", "inferenceImagesPerSecond", "trainGFLOPS"):
                ours[key] = max(run[key] for run in runs)
            ours["peakMemoryMB"] = max(run["peakMemoryMB"] for run in runs)
            print(f"| {preset} | {batch} | {ours['trainImagesPerSecond']:.0f} | {train:.0f} | "
                  f"{ours['trainImagesPerSecond'] / train:.2f} | {ours['inferenceImagesPerSecond']:.0f} | {infer:.0f} | "
                  f"{ours['inferenceImagesPerSecond'] / infer:.2f} | {ours['trainGFLOPS']:.1f} | {ours['peakMemoryMB']:.0f} |")
            sys.stdout.flush()

    ours, theirs = {}, 0.0
    for _ in range(args.repeats):
        gemm = backprop_bench(args.binary, ["--presets", "mnist", "--batch-sizes", "16", "--seconds", str(args.seconds)])["gemm"]
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
