"""report.html: one self-contained page (no external resources, no script) with, per dataset, the
summary table, training curves (inline SVG) and saliency grids (PNG inlined as base64).

Saliency rows use each method's lowest-seed run and the same test images (those of that dataset's
first run's data); the grids are also written as PNG files under ``DIR/saliency/``.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import platform
from html import escape
from pathlib import Path
from typing import Callable, Optional

from ..bench.axes import label, read_axes
from ..bench.published import SOURCES, published_for
from ..bench.results import read_results_csv
from ..data.text.embedded import is_text_dataset
from ..errors import UserError
from ..files import atomic_write_text, read_json
from . import saliency
from .png import encode_png, write_png
from .summary import MethodSummary, published_cell, shared_data_options, summarize, table_columns, unmatched_published
from .svg import line_chart

CURVES = (("val_worst_group_accuracy", "validation worst-group accuracy", (0.0, 1.0)),
          ("val_accuracy", "validation accuracy", (0.0, 1.0)),
          ("loss", "training loss (total)", None))

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th{background:#f4f4f4}
.grid td{border:none;padding:1px 6px}.grid img{display:block;image-rendering:pixelated}
.curves{display:flex;flex-wrap:wrap;gap:8px}.note{color:#555;font-size:13px}code{background:#f4f4f4}"""


def _img(rgb) -> str:
    data = base64.b64encode(encode_png(rgb)).decode()
    return f'<img alt="saliency row" src="data:image/png;base64,{data}" width="{rgb.shape[1]}" height="{rgb.shape[0]}">'


def _table(dataset: str, items, data_options: Optional[dict] = None) -> str:
    cols = table_columns(items)
    keys = list(items[0].axes) if items else []
    head = "".join(f"<th>{escape(h)}</th>"
                   for h in ["method", *keys, "runs"] + [h for _, h, _ in cols] + ["published"])
    body = []
    for item in items:
        cells = [f"<td>{escape(item.method)}</td>"]
        cells += [f"<td>{escape('unset' if v is None else v)}</td>" for v in item.axes.values()]
        cells.append(f'<td class="num">{item.runs}</td>')
        cells += [f'<td class="num">{escape(item.stats[c].format(d))}</td>' for c, _, d in cols]
        cells.append(f"<td>{escape(published_cell(dataset, item.method, data_options))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    extra = unmatched_published(dataset, {i.method for i in items}, data_options)
    note = f'<p class="note">Published, no matching run here: {escape("; ".join(extra))}.</p>' if extra else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _curves(out: Path, rows: list[dict], methods: list[str], axes: tuple = ()) -> str:
    """The training-curve charts, a series per entry of ``methods`` (a method, with its values of the axis keys
    ``axes``: the summary rows' names)."""
    histories: dict[str, list[list[dict]]] = {}
    for row in rows:
        try:
            metrics = read_json(out / "runs" / row["run"] / "metrics.json", "run metrics")
        except UserError:  # the run went away or is being rewritten: no curve for it
            continue
        if not isinstance(metrics, dict):
            continue
        values = {k: None if row.get(k) is None else label(row.get(k)) for k in axes}
        name = MethodSummary(row["method"], 0, {}, values).name
        histories.setdefault(name, []).append(metrics.get("history") or [])
    charts = []
    for key, title, y_range in CURVES:
        series = {}
        for method in methods:
            runs = histories.get(method, [])
            epochs = sorted({rec["epoch"] for h in runs for rec in h if key in rec})
            series[method] = [(e, _mean(rec[key] for h in runs for rec in h if rec["epoch"] == e and key in rec))
                              for e in epochs]
        charts.append(line_chart(series, title + " (mean over seeds)", key, y_range))
    protocols = {json.loads(r.get("data_options") or "{}").get("val", "default") for r in rows}
    shortcut = any(str(r["dataset"]).startswith(("decoy-mnist", "color-mnist")) for r in rows)  # have a val option
    note = ("" if protocols == {"decorrelated"} or not shortcut else
            '<p class="note">The validation split here is drawn like the training split (the dataset\'s default), '
            "so a model that uses the shortcut still scores well on it; "
            "<code>--data-option val=decorrelated</code> gives curves that show shortcut use.</p>")
    return '<div class="curves">' + "".join(charts) + "</div>" + note


def _mean(values) -> float:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else math.nan


def _saliency(out: Path, dataset: str, rows: list[dict], methods: list[str], images: int) -> str:
    from ..data import load_dataset
    from ..train.config import TrainConfig
    from ..train.run import load_run

    first = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        first.setdefault(row["method"], out / "runs" / row["run"])
    try:
        cfg = TrainConfig.load(next(iter(first.values())) / "config.json")
        data = load_dataset(cfg.data, seed=cfg.seed, **cfg.data_options)
        # trusted: a finished run is reused only when its config equals the plan built from this command's flags
        models = {m: load_run(first[m], data=data, trust_code=True)[0] for m in methods if m in first}
    except UserError as exc:
        return f'<p class="note">No saliency grid: {escape(str(exc))}</p>'
    test = data.test
    index = saliency.pick_examples(test, images)
    if is_text_dataset(test):
        return _token_page(out, dataset, test, index, models, first, cfg.seed)
    parts = []
    for kind in saliency.attribution_kinds():
        strips = [("input (mask outlined)", saliency.input_row(test, index))]
        strips += [(m, saliency.saliency_row(model, test, index, kind)) for m, model in models.items()]
        write_png(out / "saliency" / f"{dataset}-{kind}.png",
                  saliency.with_row_labels(saliency.tile([s for _, s in strips]), [label for label, _ in strips]))
        rows_html = "".join(f"<tr><td>{escape(label)}</td><td>{_img(saliency.tile([strip]))}</td></tr>"
                            for label, strip in strips)
        what = "input gradient" if kind == "gradient" else "integrated gradients (zero baseline)"
        parts.append(f"<h4>{what} of sum<sub>k</sub> log p<sub>k</sub>, |attribution| per pixel</h4>"
                     f'<table class="grid">{rows_html}</table>')
    seeds = ", ".join(f"{m}: {first[m].name}" for m in models)
    return "".join(parts) + f'<p class="note">Test images of seed {cfg.seed}\'s data; models: {escape(seeds)}. ' \
        "Cyan outline: the mask (the region the model should ignore). Bright = large attribution.</p>"


def _token_page(out: Path, dataset: str, test, index, models: dict, first: dict, seed: int) -> str:
    """For text: the documents' tokens highlighted by each method's saliency (``report.text_html``), as a page
    of its own under ``DIR/saliency/`` shown in the report in a frame."""
    from .text_html import TextRun, compute_rows, text_page

    runs = [TextRun(m, model, first[m].name) for m, model in models.items()]
    page = text_page(test, index, compute_rows(runs, test, index, ["grad"]),
                     title=f"What each method reads: {dataset}, test split (seed {seed})")
    name = f"{dataset}-tokens.html"
    atomic_write_text(out / "saliency" / name, page)
    return (f'<p class="note">Test documents of seed {seed}\'s data, tokens coloured by each method\'s input-gradient '
            f'saliency (blue outline: the masked tokens). <a href="saliency/{escape(name)}">Open the page</a>.</p>'
            f'<iframe src="saliency/{escape(name)}" title="token saliency" style="width:100%;height:640px;'
            'border:1px solid #d0d7de;border-radius:6px"></iframe>')


def render_report(out: str | Path, command: Optional[str] = None, images: int = 8,
                  log: Optional[Callable[[str], None]] = None) -> str:
    """The report page for the benchmark directory ``out`` (reads results.csv and the run directories)."""
    import torch

    from .. import __version__

    out = Path(out)
    rows = read_results_csv(out / "results.csv")
    summary = summarize(rows, read_axes(out))
    options = shared_data_options(rows)
    sections = []
    for dataset, items in summary.items():
        if log:
            log(f"report: {dataset}")
        mine = [r for r in rows if r["dataset"] == dataset]
        methods = list(dict.fromkeys(i.method for i in items))
        axes = tuple(items[0].axes) if items else ()
        sections.append(f"<section><h2>{escape(dataset)}</h2>{_table(dataset, items, options.get(dataset))}"
                        f"<h3>Training curves</h3>{_curves(out, mine, [i.name for i in items], axes)}"
                        f"<h3>Saliency</h3>{_saliency(out, dataset, mine, methods, images)}</section>")
    used = [k for k in SOURCES
            if any(p.source == k for d in summary for p in published_for(d, data_options=options.get(d)))]
    sources = "".join(f"<li>[{k}] {escape(SOURCES[k].citation)}. {escape(SOURCES[k].where)}.</li>" for k in used)
    meta = (f"rightreasons {__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    cmd = f"<p>Command: <code>{escape(command)}</code></p>" if command else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>rightreasons benchmark</title>'
            f"<style>{STYLE}</style></head><body><h1>rightreasons benchmark</h1>{cmd}"
            f'<p class="note">{escape(meta)}. {len(rows)} finished runs. Tables: test split, mean ± sample std '
            "over seeds, computed from results.csv (as summary.md).</p>"
            + "".join(sections) + (f"<h2>Sources</h2><ul>{sources}</ul>" if sources else "") + "</body></html>\n")


def write_report(out: str | Path, command: Optional[str] = None, images: int = 8,
                 log: Optional[Callable[[str], None]] = None) -> Path:
    """Write ``out/report.html`` atomically."""
    path = Path(out) / "report.html"
    atomic_write_text(path, render_report(out, command, images, log))
    return path
