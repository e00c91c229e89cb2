"""The backbone step-cost benchmark at GPU scale: ERM, RRR, IBP-Ex and PGD-Ex (10 steps) on ``resnet18``,
batch 128 of 3 x 224 x 224, in fp32 and bf16, on the first CUDA device; prints milliseconds per step and
ratios to ERM (see benchmarks/backbone_step_cost.py, which this runs with other defaults; every flag of
that script may still be given).

    python benchmarks/gpu_step_cost.py [--device cuda:1] [--precisions fp32,bf16,fp16] [--batch 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backbone_step_cost import run  # noqa: E402

GPU = {"model": "resnet18", "size": 224, "batch": 128, "device": "cuda", "precisions": "fp32,bf16", "rounds": 5,
       "steps": 5, "classes": 1000}

if __name__ == "__main__":
    sys.exit(run(defaults=GPU))
