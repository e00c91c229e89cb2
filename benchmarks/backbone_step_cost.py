"""Per-step training cost of ERM, RRR, IBP-Ex and PGD-Ex on an image backbone, relative to ERM, in one run.

One step = the method's loss (forward + explanation terms) + backward + Adam step on a synthetic batch of
RGB images (uniform pixels in [0, 1], random labels, a square patch at a random place as the mask), with the
model in train mode (BatchNorm uses batch statistics; IBP-Ex bounds through it with the clean batch's
statistics). Methods are timed interleaved: each round runs a few steps of every method in a rotated
order; the table shows the median time per step, and the median (and range) over rounds of each round's
ratio to ERM, so a machine that is busy for a while slows every method alike. Schedules are advanced past
their ramps, so the robust terms run at full strength. On a GPU the clock is read after
``torch.cuda.synchronize``. Targets on the CPU for ``resnet-small`` (printed beside
the ratios): rrr <= 2.5x, ibp_ex <= 3x, pgd_ex with 10 steps <= 11x.

    python benchmarks/backbone_step_cost.py [--model resnet-small] [--size 32] [--batch 64]
        [--methods erm,rrr,ibp_ex,pgd_ex] [--device cpu] [--precisions fp32,bf16] [--rounds 5] [--steps 3]
        [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from rightreasons.batch import Batch
from rightreasons.devices import resolve_device
from rightreasons.methods import StepContext, create_method
from rightreasons.models import create_model
from rightreasons.precision import autocast, grad_scaler, input_grad_scale

LATE_EPOCH = 1000  # after every schedule's ramp
TARGETS = {"rrr": 2.5, "ibp_ex": 3.0, "pgd_ex": 11.0}
PARAMS = {"pgd_ex": {"steps": 10}}


def patch_batch(n: int, size: int, classes: int, device: torch.device, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    mask = torch.zeros(n, 1, size, size)
    side = max(2, size // 8)
    corners = torch.randint(0, size - side + 1, (n, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        mask[i, 0, r:r + side, c:c + side] = 1
    mask = mask.expand(-1, 3, -1, -1).contiguous()
    return Batch(x, y, mask, y.clone(), torch.ones(n, dtype=torch.bool)).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One (method, precision) training its own copy of the model with its own Adam optimiser."""

    def __init__(self, name: str, precision: str, model: torch.nn.Module, batch: Batch, device: torch.device):
        self.name, self.precision, self.batch, self.device = name, precision, batch, device
        self.method = create_method(name, **PARAMS.get(name, {}))
        self.method.start_epoch(LATE_EPOCH, LATE_EPOCH + 1)
        self.model = copy.deepcopy(model).train()
        self.method.check_model(self.model)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.scaler = grad_scaler(device, precision)
        self.gen = torch.Generator().manual_seed(0)
        self.times: list[float] = []

    def step(self) -> None:
        ctx = StepContext(epoch=LATE_EPOCH, num_epochs=LATE_EPOCH + 1, step=0, generator=self.gen)
        scale = self.scaler.get_scale() if self.scaler else 1.0
        with autocast(self.device, self.precision), input_grad_scale(scale):
            out = self.method.loss(self.model, self.batch, ctx)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            out.loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()

    def timed(self, steps: int) -> None:
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        synchronize(self.device)
        self.times.append((time.perf_counter() - start) / steps)


def main(argv=None, defaults: dict | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet-small")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--methods", default="erm,rrr,ibp_ex,pgd_ex")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32,bf16,fp16")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    parser.add_argument("--steps", type=int, default=3, help="steps per method per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.set_defaults(**(defaults or {}))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = args.methods.split(",")
    if "erm" not in names:
        names = ["erm"] + names
    torch.manual_seed(0)
    model = create_model(args.model, (3, args.size, args.size), args.classes).to(device)
    batch = patch_batch(args.batch, args.size, args.classes, device)
    runners = []
    for precision in args.precisions.split(","):
        for name in names:
            runner = Runner(name, precision, model, batch, device)
            runner.step()  # warm-up
            runners.append(runner)
    for k in range(args.rounds):
        shift = k % len(runners)
        for runner in runners[shift:] + runners[:shift]:
            runner.timed(args.steps)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, model {args.model}, "
          f"batch {args.batch} x 3 x {args.size} x {args.size}, {args.rounds} rounds x {args.steps} steps, "
          "median per step")
    print(f"{'precision':<9} {'method':<8} {'ms/step':>10} {'x ERM':>7} {'rounds':>11} {'target':>7}")
    for precision in args.precisions.split(","):
        ours = [r for r in runners if r.precision == precision]
        erm = next(r for r in ours if r.name == "erm")
        for r in ours:
            # the ratio within each round (its steps ran next to ERM's), then the median and range over rounds:
            # a machine that is slow for a while slows both sides of a round alike
            ratios = sorted(t / base for t, base in zip(r.times, erm.times))
            target = f"<= {TARGETS[r.name]:g}" if r.name in TARGETS and device.type == "cpu" else ""
            spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
            print(f"{precision:<9} {r.name:<8} {statistics.median(r.times) * 1e3:10.1f} "
                  f"{statistics.median(ratios):7.2f} {spread:>11} {target:>7}")


def run(argv=None, defaults: dict | None = None) -> int:
    """``main`` with a one-line message and exit code 2 for a bad device, model or option."""
    from rightreasons.errors import UserError

    try:
        main(argv, defaults)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
