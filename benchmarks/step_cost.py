"""Per-step training cost of every registered method relative to ERM, measured in one run.

One step = method loss (forward + explanation terms) + backward + Adam step, batch 256 of 1x28x28
inputs (random pixels in [0, 1], random labels, a 4x4 decoy-style swatch in a random corner as the
mask) on the built-in ``mlp``, ``cnn`` and ``cnn-strided`` models. Methods are timed interleaved: each
round runs a few steps of every method (in a rotated order), and the table shows the median over
rounds, so a machine that is busy for a while slows every method alike. Every registered method is picked up;
those that cannot run on plain tensors (e.g. they need a split model) are skipped with a note.
Schedules are advanced past their ramps, so robust terms are at full strength.

    python benchmarks/step_cost.py [--rounds 5] [--steps 5] [--models mlp,cnn,cnn-strided] [--methods erm,ibp_ex]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from rightreasons.batch import Batch
from rightreasons.methods import METHODS, StepContext, create_method
from rightreasons.models import create_model

LATE_EPOCH = 1000  # after every schedule's ramp


def decoy_batch(n: int = 256, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mask = torch.zeros_like(x)
    corner = torch.randint(0, 4, (n,), generator=g)
    for i, c in enumerate(corner.tolist()):
        r, q = (0 if c < 2 else 24), (0 if c % 2 == 0 else 24)
        mask[i, 0, r:r + 4, q:q + 4] = 1
    return Batch(x, y, mask, y.clone(), torch.ones(n, dtype=torch.bool))


class Runner:
    """One method training its own copy of the model with its own Adam optimiser."""

    def __init__(self, name: str, model: torch.nn.Module, batch: Batch):
        self.name, self.batch = name, batch
        self.method = create_method(name)
        self.method.start_epoch(LATE_EPOCH, LATE_EPOCH + 1)
        self.model = copy.deepcopy(model).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.gen = torch.Generator().manual_seed(0)
        self.times: list[float] = []

    def step(self) -> None:
        ctx = StepContext(epoch=LATE_EPOCH, num_epochs=LATE_EPOCH + 1, step=0, generator=self.gen)
        out = self.method.loss(self.model, self.batch, ctx)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        self.opt.step()

    def timed(self, steps: int) -> None:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.times.append((time.perf_counter() - start) / steps)


def runners_for(model_name: str, names: list[str], batch: Batch, notes: list[str]) -> list[Runner]:
    torch.manual_seed(0)
    model = create_model(model_name, (1, 28, 28), 10)
    out = []
    for name in names:
        if getattr(METHODS.get(name), "standalone", False):
            notes.append(f"{model_name}/{name}: skipped (standalone method, not a single-model loss)")
            continue
        try:
            runner = Runner(name, model, batch)
            runner.step()  # warm-up, and a check that it runs on plain tensors
            runner.step()
        except Exception as exc:  # noqa: BLE001 - report and move on
            notes.append(f"{model_name}/{name}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
            continue
        out.append(runner)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    parser.add_argument("--steps", type=int, default=5, help="steps per method per round")
    parser.add_argument("--models", default="mlp,cnn,cnn-strided")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.methods.split(",") if args.methods else METHODS.names()
    if "erm" not in names:
        names = ["erm"] + names
    batch = decoy_batch()
    notes: list[str] = []
    table = {m: runners_for(m, names, batch, notes) for m in args.models.split(",")}
    everyone = [r for runners in table.values() for r in runners]
    for k in range(args.rounds):
        shift = k % len(everyone)
        for runner in everyone[shift:] + everyone[:shift]:
            runner.timed(args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {len(batch)}, "
          f"{args.rounds} rounds x {args.steps} steps, median per step")
    width = max([len("model"), *map(len, table)])
    print(f"{'model':<{width}} {'method':<14} {'ms/step':>9} {'x ERM':>7}")
    for model_name, runners in table.items():
        medians = {r.name: statistics.median(r.times) for r in runners}
        base = medians.get("erm")
        for name, t in medians.items():
            ratio = f"{t / base:7.2f}" if base else "    n/a"
            print(f"{model_name:<{width}} {name:<14} {t * 1e3:9.2f} {ratio}")
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
