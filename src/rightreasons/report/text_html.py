"""The text counterpart of the saliency grids (what ``rightreasons explain`` writes for text runs): one
self-contained HTML page (no external resource, no script) showing, for each chosen document, its tokens
highlighted by each run's per-token saliency (``metrics.rationale.token_saliency``, of
s = sum_k log softmax(f(x))_k, as the grids).

In each row (a run and an attribution) a token's background intensity is proportional to its share of the
document's saliency, the row's most salient token in full colour; masked tokens (mask = 1: to be ignored)
are outlined, the tokens of a human rationale underlined. Documents longer than ``FULL`` tokens are shown in
windows of +-``context`` tokens around each row's ``top`` most salient tokens and around every masked
token, "…" marking the text left out; the page says so. Every word (from the data) is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.text.tokenizer import PAD
from ..devices import model_device
from ..errors import UserError
from ..metrics.logits import check_logits, checked_outputs
from ..metrics.rationale import attribution_name, token_saliency
from ..ops.modes import eval_mode

#: documents of at most this many tokens are shown whole
FULL = 80
CONTEXT, TOP = 15, 3
#: tokens written without a space before them (after them, for OPENING), as in running text
CLOSING = frozenset(".,;:!?)]}%")
OPENING = frozenset("([{$£")
#: the background of the most salient token of a row (intensity 1); intensity 0 is white
HOT = (232, 89, 12)
KIND_NAMES = {"grad": "gradient", "ig": "integrated gradients"}

STYLE = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1100px;
color:#1f2328;padding:0 1em}h1{font-size:22px;margin:0 0 .3em}h2{font-size:16px;margin:0 0 .6em}
.note{color:#57606a;font-size:13px;line-height:1.5;margin:.3em 0}.legend{display:flex;flex-wrap:wrap;gap:18px;
align-items:center;font-size:13px;margin:.8em 0 1.2em}.ramp{display:inline-flex;vertical-align:middle}
.ramp i{display:inline-block;width:22px;height:14px}section{border:1px solid #d0d7de;border-radius:8px;
padding:12px 16px;margin:16px 0;background:#fff}.meta{color:#57606a;font-weight:normal;font-size:13px}
.row{margin:10px 0 4px}.head{font-size:13px;margin-bottom:3px}.run{font-weight:600}.kind{color:#57606a}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.top{color:#57606a}
.text{font-size:14.5px;line-height:2.05;margin:0;padding:4px 6px;background:#fcfcfd;border-radius:6px;
word-wrap:break-word}.t{padding:1px 1px;border-radius:3px}.m{outline:2px solid #0969da;outline-offset:0}
.r{text-decoration:underline;text-decoration-color:#1a7f37;text-decoration-thickness:3px;
text-underline-offset:4px}.gap{color:#8c959f;padding:0 4px}.chip{padding:1px 5px;border-radius:3px;
font-family:ui-monospace,monospace;font-size:12.5px;border:1px solid #e1e4e8}code{background:#f6f8fa;padding:0 3px}"""


@dataclass(frozen=True)
class TextRun:
    """A model to show: its row label (e.g. the run directory's name), ``about`` it (method, model)."""

    name: str
    model: nn.Module
    about: str = ""


@dataclass
class Row:
    """One run's attribution on the chosen documents: saliency (n, L) and class probabilities (n, K)."""

    run: TextRun
    kind: str
    saliency: torch.Tensor
    probs: torch.Tensor


def compute_rows(runs: Sequence[TextRun], dataset, index: torch.Tensor, kinds: Sequence[str],
                 ig_steps: int = 50) -> list[Row]:
    """The rows of the page, kind by kind, run by run: per-token saliency and predicted probabilities."""
    ids = dataset.ids[index]
    where = f"dataset {dataset.name!r}"
    rows = []
    for kind in kinds:
        kind = attribution_name(kind)
        for run in runs:
            with checked_outputs(run.model.body, dataset.num_classes, where), eval_mode(run.model):
                saliency = token_saliency(run.model, ids, kind, ig_steps).double()
                with torch.no_grad():
                    logits = check_logits(run.model(ids.to(model_device(run.model))), dataset.num_classes,
                                          where, len(ids))
            rows.append(Row(run, kind, saliency, F.softmax(logits.double(), 1).cpu()))
    return rows


def shown_windows(length: int, saliencies: Sequence[torch.Tensor], marked: Sequence[int],
                  context: int = CONTEXT, top: int = TOP, full: int = FULL) -> list[tuple[int, int]]:
    """The token ranges ``[start, end)`` to show of a document of ``length`` tokens: all of it up to ``full``
    tokens, else +-``context`` around each saliency's ``top`` largest tokens and each ``marked`` position,
    merged, in order."""
    if length <= full:
        return [(0, length)] if length else []
    centres = set(marked)
    for s in saliencies:
        centres.update(torch.sort(s[:length], descending=True, stable=True).indices[:top].tolist())
    windows: list[tuple[int, int]] = []
    for c in sorted(centres):
        start, end = max(0, c - context), min(length, c + context + 1)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], end))
        else:
            windows.append((start, end))
    return windows


def colour(intensity: float) -> str:
    """#rrggbb between white (0) and HOT (1), linear in ``intensity``."""
    a = min(max(float(intensity), 0.0), 1.0)
    return "#" + "".join(f"{round(255 + a * (c - 255)):02x}" for c in HOT)


def _token(word: str, share: float, intensity: float, masked: bool, rationale: bool) -> str:
    classes = "t" + (" m" if masked else "") + (" r" if rationale else "")
    notes = [f"{share:.1%} of this row's saliency", *(["masked"] if masked else []),
             *(["rationale"] if rationale else [])]
    style = f' style="background:{colour(intensity)}"' if intensity >= 0.01 else ""
    return f'<span class="{classes}"{style} title="{escape(word)}: {escape(", ".join(notes))}">{escape(word)}</span>'


def _class_name(dataset, k: int) -> str:
    names = getattr(dataset, "class_names", None)
    return str(names[k]) if names and 0 <= k < len(names) else str(k)


def _row_html(row: Row, i: int, words: list[str], n: int, masked: torch.Tensor, rationale: Optional[torch.Tensor],
              windows: list[tuple[int, int]], label: int, dataset) -> str:
    s = row.saliency[i, :n]
    total = float(s.sum())
    share = s / total if total > 0 else torch.zeros_like(s)
    peak = float(share.max()) if n else 0.0
    intensity = share / peak if peak > 0 else share
    pred = int(row.probs[i].argmax())
    verdict = "ok" if pred == label else "bad"
    top = torch.sort(share, descending=True, stable=True).indices[:TOP].tolist() if total > 0 else []
    chips = " · ".join(f'<span class="chip" style="background:{colour(float(intensity[t]))}">{escape(words[t])}</span> '
                       f"{float(share[t]):.0%}" for t in top)
    on_mask = f" · on masked tokens: {float(share[masked[:n]].sum()):.0%}" if bool(masked[:n].any()) else ""
    head = (f'<div class="head"><span class="run">{escape(row.run.name)}</span> <span class="kind">'
            f'{escape(KIND_NAMES[row.kind])}</span> — predicts <span class="{verdict}">'
            f'{escape(_class_name(dataset, pred))}</span> (p = {float(row.probs[i, pred]):.2f}'
            f'{", correct" if pred == label else ", wrong"}) · <span class="top">most salient: </span>'
            f'{chips if chips else "none (zero saliency)"}<span class="top">{on_mask}</span></div>')
    parts, last = [], 0
    for start, end in windows:
        if start > last:
            parts.append(' <span class="gap">…</span> ')
        for t in range(start, end):
            glue = t == start or words[t] in CLOSING or words[t - 1] in OPENING
            parts.append(("" if glue else " ") + _token(words[t], float(share[t]), float(intensity[t]),
                                                        bool(masked[t]), rationale is not None and bool(rationale[t])))
        last = end
    if last < n:
        parts.append(' <span class="gap">…</span>')
    return f'<div class="row">{head}<p class="text">{"".join(parts)}</p></div>'


def text_page(dataset, index: torch.Tensor, rows: Sequence[Row], split: str = "test", context: int = CONTEXT,
              top: int = TOP, title: Optional[str] = None) -> str:
    """The HTML page of ``rows`` (:func:`compute_rows`) on the documents ``index`` of ``dataset``."""
    if not rows:
        raise UserError("text explanation: no run to show")
    sections = []
    cut = False
    for i, doc in enumerate(index.tolist()):
        ids = dataset.ids[doc]
        n = int((ids != PAD).sum())
        words = list(dataset.words[doc][:n]) + [""] * max(0, n - len(dataset.words[doc]))
        masked = dataset.mask[doc] & bool(dataset.has_mask[doc])
        rationale = None if dataset.rationale is None else dataset.rationale[doc]
        marked = torch.nonzero(masked[:n]).flatten().tolist()
        windows = shown_windows(n, [r.saliency[i] for r in rows], marked, context, top)
        shown = sum(e - s for s, e in windows)
        cut |= shown < n
        label = int(dataset.y[doc])
        masked_words = ", ".join(escape(words[t]) for t in marked)
        meta = (f"label <b>{escape(_class_name(dataset, label))}</b> · {n} tokens"
                + (f" (showing {shown})" if shown < n else "")
                + (f" · masked: <code>{masked_words}</code>" if marked else ""))
        body = "".join(_row_html(r, i, words, n, masked, rationale, windows, label, dataset) for r in rows)
        sections.append(f'<section><h2>Document {doc} <span class="meta">{meta}</span></h2>{body}</section>')
    ramp = "".join(f'<i style="background:{colour(a / 8)}"></i>' for a in range(9))
    legend = (f'<div class="legend"><span>saliency share: 0 <span class="ramp">{ramp}</span> the row\'s largest'
              '</span><span><span class="t m">word</span> masked (the model should ignore it)</span>'
              + ('<span><span class="t r">word</span> human rationale</span>' if dataset.rationale is not None else "")
              + "</div>")
    runs = "; ".join(f"<b>{escape(r.name)}</b>{' (' + escape(r.about) + ')' if r.about else ''}"
                     for r in dict.fromkeys(row.run for row in rows))
    kinds = sorted({row.kind for row in rows}, key=list(KIND_NAMES).index)
    how = {"grad": "gradient: the L2 norm over a token's embedding values of the input gradient of "
                   "sum<sub>k</sub> log p<sub>k</sub>",
           "ig": "integrated gradients: the same norm of the integrated gradients of that score from the zero "
                 "embedding"}
    notes = [f"Runs: {runs}. {len(index)} documents of the {escape(split)} split of <code>{escape(dataset.name)}"
             "</code>, with the label, each row's predicted class and its probability.",
             "Per-token saliency, " + "; ".join(how[k] for k in kinds) + ". A token's colour intensity is "
             "proportional to its share of the document's saliency (hover for the share); each row's most salient "
             "token is in full colour."]
    if cut:
        notes.append(f"Documents longer than {FULL} tokens are truncated: shown are windows of ±{context} tokens "
                     f"around each row's {top} most salient tokens and around every masked token; “…” marks text "
                     "left out. Shares are of the whole document.")
    heading = escape(title or f"What the models read: {dataset.name}, {split} split")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{heading}</title>'
            f"<style>{STYLE}</style></head><body><h1>{heading}</h1>"
            + "".join(f'<p class="note">{n}</p>' for n in notes) + legend + "".join(sections) + "</body></html>\n")
