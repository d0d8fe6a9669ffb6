#!/usr/bin/env python3
"""Train a Backprop spec file in PyTorch (CPU) and report test accuracy and time, to set beside
`backprop train --spec SPEC.json`.

Usage (venv outside the repo: python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy safetensors):

    ~/venv-torch/bin/python Scripts/train_pytorch.py SPEC.json [--data-dir ../shared/data] [--seed S]
        [--threads 2] [--iterations N] [--json] [--metrics FILE.jsonl] [--save FILE.safetensors]

    e.g. ~/venv-torch/bin/python Scripts/train_pytorch.py Examples/resnet-mnist.json --threads 2
         .build/release/backprop train --spec Examples/resnet-mnist.json --threads 2 --out runs/resnet-mnist

`--data-dir` defaults to $BACKPROP_DATA, else ../shared/data beside the repository. `--seed` and
`--iterations` override the spec's (as `backprop train --seed/--iterations` do: the schedule
spans the new number of iterations). It prints the run's settings, a line per validation, the
training time and img/s (validation excluded, batch building included, as Backprop counts them),
the test accuracy on the 10,000 test images (with the averaged weights when `ema` > 0, which is
the model Backprop saves), and the wall time of the whole script (imports, data, training, test).
`--json` prints one JSON object instead (progress goes to stderr). `--metrics` writes a
metrics.jsonl with Backprop's keys (loss, accuracy, learning_rate, … per iteration) to compare
with a run folder's; `--save` writes the model as Backprop's model.safetensors (names, metadata),
so `backprop evaluate` can read it.

What is identical to `backprop train` (see Scripts/backprop_torch.py for the details): the
network and its initial weights (bit for bit, from Backprop's generator and the seed), the
train/validation split, preprocessing, batch order, augmentation draws, dropout masks (so the
batches are the same bytes), the loss with label smoothing, the optimizer (course_sgd, sgd with
Nesterov/decoupled decay, adamw; which parameters decay), the schedule (incl. one-cycle momentum)
stepped at iteration − 1, the EMA of parameters and BatchNorm buffers, validation every
validation_interval iterations and at the end, and the test evaluation in batches of 250.

What is not: floating-point rounding (PyTorch's kernels sum in another order), so the loss agrees
to ~1e-6 at the first iteration and the runs drift apart slowly — compare accuracies as two
samples of the same recipe, not image by image; PyTorch's time includes building batches on the
training thread (Backprop prepares them on a second thread); no checkpoints, no run folder, no
report.
"""
import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import backprop_torch as bt  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Smoother:
    """The plain mean of the first 19 values, then `s = a·s + (1 − a)·x` (Backprop's metrics)."""

    def __init__(self, factor):
        self.factor, self.value, self.count = factor, 0.0, 0

    def add(self, x):
        self.count += 1
        if self.count <= 19:
            self.value += (x - self.value) / self.count
        else:
            self.value = self.factor * self.value + (1 - self.factor) * x
        return self.value


def save_backprop_model(path, model, experiment, preprocessing, class_names):
    """model.safetensors as Backprop writes it: the state_dict under Backprop's names (F32, and
    I64 for num_batches_tracked) with the `backprop.model` description in the metadata."""
    from safetensors.torch import save_file
    network = {"input": experiment.spec["input"], "layers": experiment.spec["layers"]}
    if bt.layer_type(network["layers"][-1]) != "softmaxloss":
        network["layers"] = network["layers"] + [{"type": "softmaxloss"}]
    description = {"format": "backprop-model", "version": 1, "dataset": experiment.dataset, "class_names": class_names,
                   "preprocessing": {**preprocessing.as_dict(), "formula": "x = byte * scale - mean[channel]; images NCHW"},
                   "network": network}
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, path, metadata={"backprop.model": json.dumps(description, sort_keys=True), "format": "pt"})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="a Backprop spec file (JSON)")
    parser.add_argument("--data-dir", default=os.environ.get("BACKPROP_DATA") or os.path.join(REPO, "..", "shared", "data"))
    parser.add_argument("--seed", type=int, help="override the spec's seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--iterations", type=int, help="override the spec's iterations")
    parser.add_argument("--json", action="store_true", help="print one JSON object (progress to stderr)")
    parser.add_argument("--metrics", help="write per-iteration metrics (Backprop's metrics.jsonl keys) here")
    parser.add_argument("--save", help="write the final model (the EMA's with ema > 0) as a Backprop model.safetensors")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    out = sys.stderr if args.json else sys.stdout

    def say(text):
        print(text, file=out, flush=True)

    experiment = bt.load_experiment(args.spec)
    o = experiment.options
    if args.seed is not None:
        o["seed"] = args.seed
    if args.iterations is not None:
        o["iterations"] = args.iterations
    shape = bt.IMAGE_SHAPES[experiment.dataset]
    bt.validate_options(o, shape[1], shape[2])
    if list(experiment.spec["input"]) != shape:
        raise SystemExit(f"the network's input {experiment.spec['input']} does not match {experiment.dataset} images {shape}")

    data = bt.load_dataset(experiment.dataset, args.data_dir, train_limit=o["train_size"])
    bt.validate_options(o, available=len(data["train_images"]))
    prepared = bt.prepare_data(data, o)
    pre = prepared["preprocessing"]
    model = bt.build_model(experiment.spec, seed=o["seed"])
    if model.output_shape != [10]:
        raise SystemExit(f"the network's output {model.output_shape} does not match the 10 classes")
    bt.initialize_from_data(model, pre.apply(data["train_images"][prepared["train_indices"][:bt.WHITENING_SAMPLE_SIZE]]))
    optimizer = bt.BackpropOptimizer(model, o)
    schedule = bt.Schedule.parse(o["schedule"])
    augmentation = bt.Augmentation.parse(o["augmentation"])
    ema = bt.ExponentialMovingAverage(model, o["ema"], o.get("ema_warmup", False)) if o["ema"] > 0 else None
    lookahead = bt.lookahead_settings(o)
    lookahead = bt.Lookahead(model, *lookahead) if lookahead else None
    source = bt.BatchSource(data["train_images"], data["train_labels"], prepared["train_indices"], pre, o["batch_size"],
                            o["seed"], order="reshuffled_in_sequence" if o["reshuffle_each_epoch"] else "fixed",
                            augmentation=augmentation)
    validation = torch.from_numpy(pre.apply(data["train_images"][prepared["validation_indices"]]))
    validation_labels = torch.from_numpy(data["train_labels"][prepared["validation_indices"]])
    parameters = sum(p.numel() for p in model.parameters())
    n, b, iterations = len(prepared["train_indices"]), o["batch_size"], o["iterations"]
    base, smoothing = bt.f32(o["learning_rate"]), float(o["label_smoothing"])
    lam = bt.f32(o["weight_decay"])

    say(f"{experiment.name} (PyTorch {torch.__version__}, {torch.get_num_threads()} threads): {experiment.dataset}, "
        f"{n:,} training / {len(validation_labels):,} validation images, {parameters:,} parameters")
    say(f"{iterations} iterations, batch {b}, {o['optimizer']}, lr {o['learning_rate']:g}"
        + ("" if schedule.kind == "constant" else f" ({o['schedule']})")
        + f", momentum {o['momentum']:g}, weight decay {o['weight_decay']:g}, seed {o['seed']}"
        + ("" if augmentation.is_identity else f", augment {augmentation}")
        + (f", ema {o['ema']:g}" if o["ema"] > 0 else "") + (", lookahead" if lookahead else "") + (f", label smoothing {smoothing:g}" if smoothing else ""))

    metrics_file = open(args.metrics, "w") if args.metrics else None
    loss_smoother, accuracy_smoother = Smoother(o["moving_average"]), Smoother(o["moving_average"])
    status, last_validation, elapsed, validation_time = "finished", None, 0.0, 0.0
    loop_start = time.perf_counter()
    model.train()
    epoch_limited = [p for p in model.parameters() if hasattr(p, "backprop_epochs")]
    for iteration in range(1, iterations + 1):
        inputs, labels = source.batch(iteration)
        for p in epoch_limited:  # conv2d's bias_epochs: trained while (iteration − 1)·B < E·N
            p.requires_grad_((iteration - 1) * b < p.backprop_epochs * n)
        optimizer.set(schedule.learning_rate(iteration - 1, iterations, base), schedule.momentum(iteration - 1, iterations))
        optimizer.zero_grad()
        model.context.step = iteration
        logits = model(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        value = loss.item()
        if not math.isfinite(value):
            status = "diverged"
            say(f"training diverged: the loss became {value} at iteration {iteration}")
            break
        loss.backward()
        decay_loss = None
        if metrics_file:
            with torch.no_grad():
                decay_loss = lam / 2 * sum(float(p.double().pow(2).sum()) for p in model.parameters()) if lam else 0.0
        optimizer.step()
        if lookahead:
            lookahead.after_step(model, iteration, iterations)
        if ema:
            ema.update(model)
        correct = int((logits.detach().argmax(dim=1) == labels).sum())
        elapsed = time.perf_counter() - loop_start - validation_time
        record = {"iteration": iteration, "loss": value, "accuracy": correct / b, "learning_rate": optimizer.lr,
                  "smoothed_loss": loss_smoother.add(value), "smoothed_accuracy": accuracy_smoother.add(correct / b),
                  "elapsed": elapsed, "images_per_second": iteration * b / max(elapsed, 1e-9)}
        if len(validation_labels) and (iteration % o["validation_interval"] == 0 or iteration == iterations):
            start = time.perf_counter()
            last_validation = bt.accuracy(ema.averaged if ema else model, validation, validation_labels)
            record["validation_accuracy"] = last_validation
            validation_time += time.perf_counter() - start
            say(f"it {iteration}/{iterations}  loss {record['smoothed_loss']:.4f}  acc {100 * record['smoothed_accuracy']:.2f}%  "
                f"val {100 * last_validation:.2f}%  {record['images_per_second']:.0f} img/s")
        if metrics_file:
            record["weight_decay_loss"] = decay_loss
            record["total_loss"] = record["smoothed_loss"] + decay_loss
            metrics_file.write(json.dumps(record, sort_keys=True) + "\n")
    loop_wall = time.perf_counter() - loop_start
    if metrics_file:
        metrics_file.close()
    completed = iteration if status == "finished" else iteration - 1
    images_per_second = completed * b / max(elapsed, 1e-9)
    final = ema.averaged if ema else model
    test_accuracy = None
    if status == "finished":
        test_inputs = pre.apply(data["test_images"])
        tta = o.get("test_time_augmentation", "none")
        if tta == "none":
            test_accuracy = bt.accuracy(final, test_inputs, data["test_labels"])
        else:
            predicted = bt.predict_tta(final, test_inputs, tta)
            test_accuracy = float((predicted == torch.as_tensor(data["test_labels"])).double().mean())
    if args.save:
        save_backprop_model(args.save, final, experiment, pre, data["class_names"])
    wall = time.perf_counter() - START

    say(f"trained in {loop_wall:.1f} s ({images_per_second:.0f} img/s)"
        + (f", validation accuracy {100 * last_validation:.2f}%" if last_validation is not None else ""))
    if test_accuracy is not None:
        say(f"test accuracy {100 * test_accuracy:.2f}% on {len(data['test_labels'])} images")
    say(f"wall time {wall:.1f} s (whole script: imports, data, training, test)")
    if args.json:
        print(json.dumps({
            "name": experiment.name, "dataset": experiment.dataset, "framework": f"pytorch {torch.__version__}",
            "threads": torch.get_num_threads(), "status": status, "iterations": iterations,
            "iterations_completed": completed, "batch_size": b, "seed": o["seed"], "parameter_count": parameters,
            "train_images": n, "validation_images": len(validation_labels),
            "train_seconds": elapsed, "loop_wall_seconds": loop_wall, "images_per_second": images_per_second,
            "final_validation_accuracy": last_validation, "test_accuracy": test_accuracy, "wall_seconds": wall,
        }, indent=2, sort_keys=True))
    return 0 if status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
