"""Saliency grids of saved runs (what ``rightreasons explain`` writes): the inputs with the mask outlined,
then one row per (attribution, run), all on the same images of the first run's data. For text runs, an
HTML page instead (``report.text_html``): the same documents' tokens highlighted by each run's saliency."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..data.registry import load_dataset
from ..data.text.embedded import is_text_dataset
from ..errors import UserError
from ..files import atomic_write_text
from ..train.config import TrainConfig
from ..train.run import load_run, load_run_on
from .png import write_png
from .saliency import attribution_kinds, input_row, pick_examples, saliency_row, tile, with_row_labels
from .text_html import TextRun, compute_rows, text_page


def explain_runs(run_dirs: Sequence[str | Path], out: str | Path, data: Optional[str] = None,
                 data_options: Optional[dict] = None, images: int = 8, attribution: str = "all",
                 split: str = "test", trust_code: bool = False, device: str = "cpu") -> tuple[list[str], int, str]:
    """Write the grid of ``run_dirs`` to the PNG file ``out`` (for text data: the HTML page, ``out`` a .html
    file, ``images`` documents); returns (row labels, images, dataset name).
    ``attribution`` is ``gradient``, ``ig`` or ``all``; ``data`` / ``data_options`` explain the runs on
    another dataset (default: the first run's own). ``trust_code``: build models that the runs name as
    ``package.module:factory`` (see ``load_run``); ``device``: where the models run."""
    kinds = attribution_kinds() if attribution == "all" else (attribution,)
    if any(k not in attribution_kinds() for k in kinds):
        raise UserError(f"attribution {attribution!r} is not available here; "
                        f"available: {', '.join(attribution_kinds())}")
    model, config, splits = load_run_on(run_dirs[0], data, data_options, trust_code=trust_code, device=device)
    dataset = splits.split(split)
    if is_text_dataset(dataset):
        return _explain_text(run_dirs, out, model, config, splits, data, data_options, images, kinds, split,
                             trust_code, device)
    if len(dataset.input_shape) != 3:
        raise UserError(f"{run_dirs[0]}: explain draws images (inputs of shape C x H x W), but {dataset.name} has "
                        f"inputs of shape {tuple(dataset.input_shape)}; for tables use `rightreasons audit` or "
                        "`rightreasons evaluate`, which report the gradient share in the mask")
    if Path(out).suffix.lower() != ".png":
        raise UserError(f"{out}: {dataset.name} has images: --out must name a .png file (.html pages are for text)")
    models = [model] + [load_run(r, data=splits, trust_code=trust_code, device=device)[0] for r in run_dirs[1:]]
    index = pick_examples(dataset, images)
    rows = [input_row(dataset, index)] + [saliency_row(m, dataset, index, k) for k in kinds for m in models]
    labels = [f"{k} {Path(r).name}" for k in kinds for r in run_dirs] if len(run_dirs) > 1 else list(kinds)
    write_png(out, with_row_labels(tile(rows), ["input"] + labels))
    return labels, len(index), dataset.name


def _data_spec(config: TrainConfig, data: Optional[str] = None, data_options: Optional[dict] = None) -> tuple:
    """(dataset, options, seed) that ``load_run_on`` builds for a run with these overrides."""
    options = {**(config.data_options if data in (None, config.data) else {}), **(data_options or {})}
    return data or config.data, sorted(options.items()), config.seed


def _check_vocabulary(run_dir, config: TrainConfig, shown: tuple, splits) -> None:
    """Refuse a run whose own data has another vocabulary than the data shown (its token ids would name other
    words); the run's data is only rebuilt when its dataset, options or seed differ from the shown data's."""
    own = _data_spec(config)
    if own == shown:
        return
    vocab = load_dataset(own[0], seed=own[2], **dict(own[1])).train.vocab
    if vocab.words != splits.train.vocab.words:
        raise UserError(f"{run_dir}: trained with another vocabulary ({len(vocab)} words) than that of the data "
                        f"shown ({len(splits.train.vocab)} words), so its token ids name other words; explain it "
                        "on its own data")


def _explain_text(run_dirs, out, model, config, splits, data, data_options, documents, kinds, split, trust_code,
                  device) -> tuple[list[str], int, str]:
    """The HTML page of text runs (``report.text_html``) on the same documents of the first run's data."""
    if Path(out).suffix.lower() != ".html":
        raise UserError(f"{out}: {splits.split(split).name} is text: --out must name a .html file")
    dataset = splits.split(split)
    shown = _data_spec(config, data, data_options)
    _check_vocabulary(run_dirs[0], config, shown, splits)
    runs = [TextRun(Path(run_dirs[0]).name, model, f"{config.method}, {config.model}")]
    for run_dir in run_dirs[1:]:
        other, other_config, _ = load_run(run_dir, data=splits, trust_code=trust_code, device=device)
        _check_vocabulary(run_dir, other_config, shown, splits)
        runs.append(TextRun(Path(run_dir).name, other, f"{other_config.method}, {other_config.model}"))
    index = pick_examples(dataset, documents)
    rows = compute_rows(runs, dataset, index, kinds)
    atomic_write_text(out, text_page(dataset, index, rows, split))
    labels = [f"{k} {r.name}" for k in kinds for r in runs] if len(runs) > 1 else list(kinds)
    return labels, len(index), dataset.name
