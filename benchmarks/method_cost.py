"""Whole-training cost of every method relative to ERM, and each method's peak memory.

Time: every method trains its own copy of the model on Decoy-MNIST (``limit_train`` examples, shuffled
batches, the method's schedules advanced epoch by epoch as in a real run of ``--steps`` steps), all in
this one process and interleaved: each round runs an equal slice of steps of every method in a rotated
order, and the table shows the median time per step over rounds and its ratio to ERM's, so a machine
that is busy for a while slows every method alike. (Per-step cost on synthetic batches, without data
or schedules, is benchmarks/step_cost.py.)

Memory: each method then runs alone in a fresh process (the same steps); the table shows that
process's peak resident set size ("peak MB", data loading included) and how far training took the
resident size above where it was once the data was loaded ("train +MB").

    python benchmarks/method_cost.py [--methods erm,rrr,...] [--steps 200] [--rounds 5] [--limit-train 5120]
                                     [--model mlp] [--threads 1] [--source IDX_DIR] [--no-memory]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import subprocess
import sys
import time

import torch

from rightreasons.data import load_dataset
from rightreasons.methods import METHODS, StepContext, create_method
from rightreasons.models import create_model
from rightreasons.report.bench import model_for
from rightreasons.report.worker import peak_memory_mb


class Runner:
    """One method training its own model copy, resumable step by step across rounds."""

    def __init__(self, name, model, data, batch_size, total_steps, seed=0):
        self.name, self.data, self.batch_size = name, data, batch_size
        self.method = create_method(name)
        self.model = copy.deepcopy(model).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.shuffle = torch.Generator().manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.per_epoch = data.num_batches(batch_size)
        self.epochs = max(1, -(-total_steps // self.per_epoch))
        self.step_count, self.epoch, self.batches = 0, -1, iter(())
        self.times: list[float] = []

    def _next_batch(self):
        batch = next(self.batches, None)
        if batch is None:
            self.epoch += 1
            self.method.start_epoch(self.epoch, self.epochs)
            self.batches = self.data.batches(self.batch_size, shuffle=True, generator=self.shuffle)
            batch = next(self.batches)
        return batch

    def run(self, steps):
        start = time.perf_counter()
        for _ in range(steps):
            batch = self._next_batch()
            ctx = StepContext(epoch=self.epoch, num_epochs=self.epochs, step=self.step_count, generator=self.gen)
            out = self.method.loss(self.model, batch, ctx)
            self.opt.zero_grad(set_to_none=True)
            out.loss.backward()
            self.opt.step()
            self.step_count += 1
        self.times.append((time.perf_counter() - start) / steps)


def load(args):
    options = {"limit_train": args.limit_train, **({"source": args.source} if args.source else {})}
    data = load_dataset("decoy-mnist", seed=0, **options).train
    torch.manual_seed(0)
    return data, create_model(args.model, data.input_shape, data.num_classes)


def model_for_method(name, model, args, data):
    """``model``, or (for feature_kl) the split version of ``args.model`` the bench would train."""
    split = model_for(name, args.model)
    if split == args.model:
        return model
    torch.manual_seed(0)
    return create_model(split, data.input_shape, data.num_classes)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args) -> None:
    """Run one method alone and print its memory as JSON (the parent's memory columns): the process's
    peak, and the peak during training above the resident size once the data is loaded (Linux: the
    peak is reset through /proc/self/clear_refs after loading)."""
    torch.set_num_threads(args.threads)
    data, model = load(args)
    gc.collect()
    loaded = _status_mb("VmRSS")
    process_peak = peak_memory_mb()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    Runner(args.child, model_for_method(args.child, model, args, data), data, args.batch_size,
           args.steps).run(args.steps)
    train_peak = _status_mb("VmHWM") if reset else float("nan")
    print(json.dumps({"peak_mb": max(process_peak, peak_memory_mb()), "train_extra_mb": train_peak - loaded}))


def memory(method, args) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--steps", str(args.steps), "--limit-train",
           str(args.limit_train), "--model", args.model, "--threads", str(args.threads),
           "--batch-size", str(args.batch_size)] + (["--source", args.source] if args.source else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS.names()))
    parser.add_argument("--steps", type=int, default=200, help="training steps per method")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit-train", type=int, default=5120)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", help="directory of MNIST IDX files (default: the cached MNIST)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    names = ["erm"] + [m for m in args.methods.split(",") if m and m != "erm"]
    data, model = load(args)
    runners, skipped = [], {}
    for name in names:
        try:
            runner = Runner(name, model_for_method(name, model, args, data), data, args.batch_size, args.steps)
            runner.run(1)  # warm-up (and a check that the method runs on this model and data)
            runner.times.clear()
            runners.append(runner)
        except Exception as exc:  # noqa: BLE001 - report, keep measuring the others
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    per_round = max(1, args.steps // args.rounds)
    for r in range(args.rounds):
        for runner in runners[r % len(runners):] + runners[:r % len(runners)]:
            runner.run(per_round)
    base = statistics.median(runners[0].times)
    print(f"decoy-mnist, {args.limit_train} training examples, model {args.model}, batch {args.batch_size}, "
          f"{per_round * args.rounds} steps per method in {args.rounds} interleaved rounds, {args.threads} thread(s)")
    print(f"{'method':<14} {'ms/step':>9} {'x ERM':>7} {'peak MB':>9} {'train +MB':>10}")
    for runner in runners:
        t = statistics.median(runner.times)
        mem = {} if args.no_memory else memory(runner.name, args)
        peak = f"{mem['peak_mb']:.0f}" if "peak_mb" in mem else "-"
        grow = f"{mem['train_extra_mb']:.0f}" if "peak_mb" in mem else mem.get("error", "-")
        print(f"{runner.name:<14} {t * 1e3:>9.2f} {t / base:>7.2f} {peak:>9} {grow:>10}", flush=True)
    for name, why in skipped.items():
        print(f"{name:<14} skipped: {why}")


if __name__ == "__main__":
    main()
