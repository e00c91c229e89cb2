"""Per-step training cost of the text methods relative to ERM, per text model, in one run.

One step = the method's loss on a batch of ``decoy-bbc`` training documents (token ids cut at 400, the
decoy token masked; run ``rightreasons data fetch bbc`` first, or pass ``--synthetic`` for random token
ids with one masked token each) + backward + Adam step, in train mode. Methods are timed interleaved:
each round runs a few steps of every (model, method) in a rotated order, and the table shows the median
over rounds, so a machine that is busy for a while slows every method alike. Target on the CPU: rrr on
``text-cnn`` within 3x of ERM (printed beside the ratio).

    python benchmarks/text_step_cost.py [--models text-cnn,text-bag,text-transformer]
        [--methods erm,rrr,pgd_ex] [--batch 32] [--rounds 5] [--steps 3] [--threads N] [--synthetic]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rightreasons.batch import Batch
from rightreasons.methods import StepContext, create_method
from rightreasons.models import create_model

TARGETS = {("text-cnn", "rrr"): 3.0}
LATE_EPOCH = 1000  # after every schedule's ramp


def documents(batch: int, synthetic: bool) -> tuple[Batch, int]:
    """A training batch of decoy-bbc (or random ids of the same shape) and the vocabulary size."""
    if synthetic:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(2, 15_000, (batch, 400), generator=g)
        mask = torch.zeros(batch, 400)
        mask[torch.arange(batch), torch.randint(0, 400, (batch,), generator=g)] = 1
        y = torch.randint(0, 5, (batch,), generator=g)
        return Batch(ids, y, mask), 15_000
    from rightreasons.data import load_dataset

    data = load_dataset("decoy-bbc")
    return data.train.batch(torch.arange(batch)), len(data.train.vocab)


class Runner:
    """One (model, method) training its own model with its own Adam optimiser."""

    def __init__(self, model_name: str, method: str, batch: Batch, vocab: int):
        torch.manual_seed(0)
        self.model = create_model(model_name, (batch.x.shape[1],), 5, vocab_size=vocab).train()
        self.method = create_method(method)
        self.method.start_epoch(LATE_EPOCH, LATE_EPOCH + 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.batch = batch
        self.ctx = StepContext(epoch=LATE_EPOCH, num_epochs=LATE_EPOCH + 1, generator=torch.Generator().manual_seed(1),
                               input_range=(float("-inf"), float("inf")))
        self.times: list[float] = []

    def steps(self, n: int) -> None:
        start = time.perf_counter()
        for _ in range(n):
            out = self.method.loss(self.model, self.batch, self.ctx)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            self.optimizer.step()
        self.times.append((time.perf_counter() - start) / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="text-cnn,text-bag,text-transformer")
    parser.add_argument("--methods", default="erm,rrr,pgd_ex")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--synthetic", action="store_true", help="random token ids instead of decoy-bbc")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, vocab = documents(args.batch, args.synthetic)
    models, methods = args.models.split(","), args.methods.split(",")
    runners = [Runner(m, meth, batch, vocab) for m in models for meth in methods]
    for r in runners:  # warm-up
        r.steps(1)
        r.times.clear()
    for k in range(args.rounds):
        for r in runners[k % len(runners):] + runners[:k % len(runners)]:
            r.steps(args.steps)
    print(f"batch {args.batch} x {batch.x.shape[1]} tokens, torch threads {torch.get_num_threads()}, "
          f"median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'model':<18}{'method':<10}{'ms/step':>10}{'x ERM':>8}  target")
    for i, model in enumerate(models):
        mine = {r.method.name: statistics.median(r.times) for r in runners[i * len(methods):(i + 1) * len(methods)]}
        base = mine.get("erm")
        for name, t in mine.items():
            ratio = t / base if base else float("nan")
            target = TARGETS.get((model, name))
            mark = "" if target is None else f"<= {target:g}x {'ok' if ratio <= target else 'MISSED'}"
            print(f"{model:<18}{name:<10}{1000 * t:>10.1f}{ratio:>8.2f}  {mark}")


if __name__ == "__main__":
    main()
