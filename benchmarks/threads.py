"""How many torch threads should training use here? Times one RRR and one ERM training step of each
built-in model at batch 256 on 1x28x28 inputs, for each thread count, interleaved in one run, and
prints ms/step and the ratio to one thread.

    python benchmarks/threads.py [--repeats 5]
"""

import argparse
import statistics
import time

import torch

from rightreasons.batch import Batch
from rightreasons.methods import StepContext, create_method
from rightreasons.models import create_model


def step_time(model, method, batch, optimizer, n=20):
    ctx = StepContext(generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(n):
        out = method.loss(model, batch, ctx)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / n


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 28, 28, generator=g)
    mask = torch.zeros_like(x)
    mask[:, :, :4, :4] = 1
    batch = Batch(x, torch.randint(0, 10, (256,), generator=g), mask, torch.zeros(256, dtype=torch.long),
                  torch.ones(256, dtype=torch.bool))
    counts = sorted({1, torch.get_num_threads(), 2})
    results = {}
    for _ in range(args.repeats):
        for model_name in ("mlp", "mlp-wide", "cnn"):
            for method_name in ("erm", "rrr"):
                for threads in counts:
                    torch.set_num_threads(threads)
                    model = create_model(model_name, (1, 28, 28), 10)
                    opt = torch.optim.Adam(model.parameters(), 1e-3)
                    method = create_method(method_name)
                    step_time(model, method, batch, opt, n=2)  # warm-up
                    key = (model_name, method_name, threads)
                    results.setdefault(key, []).append(step_time(model, method, batch, opt))
    print(f"{'model':<9} {'method':<6} " + " ".join(f"{t:>2} thr ms (ratio)" for t in counts))
    for model_name in ("mlp", "mlp-wide", "cnn"):
        for method_name in ("erm", "rrr"):
            base = statistics.median(results[(model_name, method_name, 1)])
            cells = []
            for t in counts:
                med = statistics.median(results[(model_name, method_name, t)])
                cells.append(f"{med * 1e3:8.2f} ({med / base:4.2f})")
            print(f"{model_name:<9} {method_name:<6} " + " ".join(cells))


if __name__ == "__main__":
    main()
