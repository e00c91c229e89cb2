"""Saliency grids of saved runs (what ``rightreasons explain`` writes): the inputs with the mask outlined,
then one row per (attribution, run), all on the same images of the first run's data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..errors import UserError
from ..train.run import load_run, load_run_on
from .png import write_png
from .saliency import attribution_kinds, input_row, pick_examples, saliency_row, tile, with_row_labels


def explain_runs(run_dirs: Sequence[str | Path], out: str | Path, data: Optional[str] = None,
                 data_options: Optional[dict] = None, images: int = 8, attribution: str = "all",
                 split: str = "test", trust_code: bool = False, device: str = "cpu") -> tuple[list[str], int, str]:
    """Write the grid of ``run_dirs`` to the PNG file ``out``; returns (row labels, images, dataset name).
    ``attribution`` is ``gradient``, ``ig`` or ``all``; ``data`` / ``data_options`` explain the runs on
    another dataset (default: the first run's own). ``trust_code``: build models that the runs name as
    ``package.module:factory`` (see ``load_run``); ``device``: where the models run."""
    kinds = attribution_kinds() if attribution == "all" else (attribution,)
    if any(k not in attribution_kinds() for k in kinds):
        raise UserError(f"attribution {attribution!r} is not available here; "
                        f"available: {', '.join(attribution_kinds())}")
    model, _, splits = load_run_on(run_dirs[0], data, data_options, trust_code=trust_code, device=device)
    dataset = splits.split(split)
    if len(dataset.input_shape) != 3:
        raise UserError(f"{run_dirs[0]}: explain draws images (inputs of shape C x H x W), but {dataset.name} has "
                        f"inputs of shape {tuple(dataset.input_shape)}; for tables use `rightreasons audit` or "
                        "`rightreasons evaluate`, which report the gradient share in the mask")
    models = [model] + [load_run(r, data=splits, trust_code=trust_code, device=device)[0] for r in run_dirs[1:]]
    index = pick_examples(dataset, images)
    rows = [input_row(dataset, index)] + [saliency_row(m, dataset, index, k) for k in kinds for m in models]
    labels = [f"{k} {Path(r).name}" for k in kinds for r in run_dirs] if len(run_dirs) > 1 else list(kinds)
    write_png(out, with_row_labels(tile(rows), ["input"] + labels))
    return labels, len(index), dataset.name
