"""Cost of augmenting a batch (data/augment.py presets) relative to one ERM training step, measured in one run.

For each image size: a batch of 128 RGB images (random pixels in [0, 1], random labels, a square patch
as the mask), float32 on the CPU. Timed: each preset's ``augment(batch, generator, (0, 1))``, and one ERM
step (forward + backward + Adam) of the built-in ``cnn`` at that input size. Interleaved: each round
times a few calls of everything in a rotated order, and the table shows the median over rounds, so a
machine that is busy for a while slows everything alike.

    python benchmarks/bench_augment.py [--sizes 64,224] [--presets flip,standard,strong] [--rounds 5] [--steps 3]
                                       [--batch 128] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rightreasons.batch import Batch
from rightreasons.data.augment import create_augmentation
from rightreasons.methods import StepContext, create_method
from rightreasons.models import create_model


def patch_batch(n: int, size: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
    side = max(1, size // 6)
    corners = torch.randint(0, size - side + 1, (n, 2), generator=g).tolist()
    for i, (r, c) in enumerate(corners):
        mask[i, 0, r:r + side, c:c + side] = True
    return Batch(x, y, mask)


class Timed:
    """One thing to time: a callable, and its per-call times (one per round)."""

    def __init__(self, size: int, name: str, fn):
        self.size, self.name, self.fn = size, name, fn
        self.times: list[float] = []

    def timed(self, calls: int) -> None:
        start = time.perf_counter()
        for _ in range(calls):
            self.fn()
        self.times.append((time.perf_counter() - start) / calls)


def erm_step(size: int, batch: Batch):
    torch.manual_seed(0)
    model = create_model("cnn", (3, size, size), 10).train()
    method = create_method("erm")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctx = StepContext(generator=torch.Generator().manual_seed(0))

    def step():
        out = method.loss(model, batch, ctx)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return step


def augment_call(preset: str, batch: Batch):
    aug = create_augmentation(preset)
    gen = torch.Generator().manual_seed(0)
    return lambda: aug(batch, gen, (0.0, 1.0))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,224", help="image sizes (square), comma-separated")
    parser.add_argument("--presets", default="flip,standard,strong")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    parser.add_argument("--steps", type=int, default=3, help="calls per item per round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    presets = args.presets.split(",")
    items: list[Timed] = []
    for size in sizes:
        batch = patch_batch(args.batch, size)
        items.append(Timed(size, "erm step (cnn)", erm_step(size, batch)))
        items += [Timed(size, f"augment {p}", augment_call(p, batch)) for p in presets]
    for item in items:  # warm-up
        item.fn()
    for k in range(args.rounds):
        shift = k % len(items)
        for item in items[shift:] + items[:shift]:
            item.timed(args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x 3 x S x S float32, "
          f"{args.rounds} rounds x {args.steps} calls, median per call")
    print(f"{'size':>5} {'what':<18} {'ms/batch':>9} {'x ERM step':>11}")
    for size in sizes:
        rows = [i for i in items if i.size == size]
        base = statistics.median(rows[0].times)
        for item in rows:
            t = statistics.median(item.times)
            print(f"{size:>5} {item.name:<18} {t * 1e3:9.2f} {t / base:11.3f}")


if __name__ == "__main__":
    main()
