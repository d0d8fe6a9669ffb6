#!/usr/bin/env python3
"""Run a recipe preset over several seeds and print what BENCHMARKS.md records for it: test
accuracy (mean ± spread, i.e. half the range), wall time of the whole `backprop train` command
and its peak resident memory; with `--pytorch`, the same preset trained by
Scripts/train_pytorch.py (same network, initial weights, batches, schedule and augmentation)
beside it.

Usage (build first: swift build -c release; PyTorch in a venv outside the repo):

    python3 Scripts/run_recipe.py mnist-fast --seeds 42,43,44 [--pytorch] [--threads 2]
        [--data-dir ../shared/data] [--runs runs] [--python ~/venv-torch/bin/python]

Each seed trains into RUNS/PRESET-sSEED (replaced if present), one run at a time: the wall
times are only meaningful on an otherwise idle machine. The time is that of the whole command
(start-up, data loading, training, test evaluation, saving), measured by /usr/bin/time, which
also gives the peak memory. The PyTorch run reads the Backprop run's experiment.json, so both
train exactly the experiment the preset defines.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(command):
    """Runs `command`; returns (wall seconds, peak resident MB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", stats.name] + command,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stdout[-2000:]}")
        peak_kb = int(stats.read().strip().splitlines()[-1])
    return wall, peak_kb / 1024, result.stdout


def summary(values, unit="", scale=1.0, digits=2):
    mean = statistics.mean(values) * scale
    spread = (max(values) - min(values)) / 2 * scale
    return f"{mean:.{digits}f} ± {spread:.{digits}f}{unit}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preset")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--runs", default=os.path.join(REPO, "runs"))
    parser.add_argument("--pytorch", action="store_true", help="also train the preset with Scripts/train_pytorch.py")
    parser.add_argument("--python", default=os.path.expanduser("~/venv-torch/bin/python"))
    parser.add_argument("--backprop", default=os.path.join(REPO, ".build", "release", "backprop"))
    args = parser.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        out = os.path.join(args.runs, f"{args.preset}-s{seed}")
        shutil.rmtree(out, ignore_errors=True)
        wall, peak, _ = timed([args.backprop, "train", args.preset, "--seed", str(seed), "--threads", str(args.threads),
                               "--data-dir", args.data_dir, "--out", out])
        with open(os.path.join(out, "training.json")) as f:
            record = json.load(f)
        row = {"seed": seed, "accuracy": record["test_accuracy"], "wall": wall, "peak_mb": peak,
               "img_s": record["images_per_second"]}
        print(f"backprop  seed {seed}: test {100 * row['accuracy']:.2f} %, {wall:.1f} s wall, "
              f"{row['img_s']:.0f} img/s, peak {peak:.0f} MB", flush=True)
        if args.pytorch:
            pwall, ppeak, output = timed([args.python, os.path.join(REPO, "Scripts", "train_pytorch.py"),
                                          os.path.join(out, "experiment.json"), "--seed", str(seed),
                                          "--threads", str(args.threads), "--data-dir", args.data_dir, "--json"])
            report = json.loads(output[output.index("{"):])
            row.update(torch_accuracy=report["test_accuracy"], torch_wall=pwall, torch_peak_mb=ppeak,
                       torch_img_s=report["images_per_second"])
            print(f"pytorch   seed {seed}: test {100 * row['torch_accuracy']:.2f} %, {pwall:.1f} s wall, "
                  f"{row['torch_img_s']:.0f} img/s, peak {ppeak:.0f} MB", flush=True)
        rows.append(row)

    print()
    print("| preset | framework | seeds | test accuracy | wall time (s) | train img/s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    def line(name, accuracy, wall, img_s, peak):
        print(f"| {args.preset} | {name} | {args.seeds} | {summary([r[accuracy] for r in rows], ' %', 100)} | "
              f"{summary([r[wall] for r in rows], '', 1, 1)} | {statistics.mean(r[img_s] for r in rows):.0f} | "
              f"{max(r[peak] for r in rows):.0f} |")
    line("Backprop", "accuracy", "wall", "img_s", "peak_mb")
    if args.pytorch:
        line("PyTorch", "torch_accuracy", "torch_wall", "torch_img_s", "torch_peak_mb")


if __name__ == "__main__":
    main()
