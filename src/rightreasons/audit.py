"""Audit any model: does it rely on the annotated (masked) region?

:func:`audit` runs every applicable check on one dataset split and returns the numbers and a verdict:

- accuracy, worst-group / mean-group and per-group accuracy, and the share of input-gradient mass
  inside the mask (metrics.evaluate), over all examples;
- on the examples with a non-empty mask (the "annotated" ones): clean accuracy; **randomised**
  accuracy and flip rate (every masked feature replaced by uniform noise in the data range, ``draws``
  seeded draws; flip rate = share of predictions that change); accuracy under **masked PGD** (the
  attack may only move masked features, by up to ``eps``, default the full data range); and
  **IBP-certified** accuracy over the same box, where interval bounds support the model's layers
  (otherwise "not applicable" with the reason).

Verdict (thresholds below, on the annotated examples):
- ``relies``: randomising the masked region flips >= 10% of predictions, or masked PGD lowers
  accuracy by >= 0.30;
- ``does_not_rely``: it flips <= 5% and masked PGD lowers accuracy by <= 0.10;
- ``partly``: in between; ``cannot_audit``: no example of the split has a non-empty mask.
The gradient share is reported beside the mask's area (a model that ignores the mask has a share
near 0; one that looks everywhere alike, a share near the area). The global RNG is never touched.
A model whose outputs are not finite (batch, num_classes) logits, on the data or with the masked region
randomised, gets a one-line ``UserError`` naming the dataset, never a verdict.

Text (a text model on a text dataset, ``data.text``): the masked tokens are replaced, not perturbed in
embedding space (metrics.token_replacement): ``randomised_*`` are with them replaced by random vocabulary
words (``draws`` seeded draws), ``unk_*`` by ``<unk>``, ``removed_*`` with them deleted; ``mask_area`` is
the share of the tokens that are masked (padding left out) and the gradient share is that of the embedding
gradient (metrics.evaluate). Masked PGD and IBP do not apply (embeddings have no box; ``eps`` is refused).
The verdict uses the same thresholds with flip = the largest of the three flip rates and drop = the
largest accuracy drop among them (no PGD drop).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch
from torch import nn

from .data.dataset import ExplanationDataset, capped_batch_size
from .data.text.embedded import explanation_space, is_text_dataset
from .devices import model_device, rand_like
from .errors import UserError
from .metrics.evaluate import evaluate, predict
from .metrics.logits import check_logits, checked_outputs
from .metrics.robust import ibp_certified_accuracy, masked_pgd_accuracy
from .metrics.token_replacement import KINDS as TOKEN_REPLACEMENTS
from .metrics.token_replacement import token_replacement
from .ops.modes import eval_mode

RELIES_FLIP, RELIES_PGD_DROP = 0.10, 0.30
CLEAN_FLIP, CLEAN_PGD_DROP = 0.05, 0.10
HEADLINES = {"relies": "RELIES ON THE MASKED REGION", "partly": "PARTLY RELIES ON THE MASKED REGION",
             "does_not_rely": "DOES NOT RELY ON THE MASKED REGION", "cannot_audit": "CANNOT AUDIT"}


def randomised_predictions(model: nn.Module, dataset: ExplanationDataset, generator: torch.Generator,
                           batch_size: int = 500) -> torch.Tensor:
    """Predictions with every masked feature replaced by uniform noise in ``dataset.input_range``."""
    lo, hi = dataset.input_range
    preds = []
    where = f"dataset {dataset.name!r} with its masked region randomised"
    with checked_outputs(model, dataset.num_classes, where), eval_mode(model), torch.no_grad():
        for batch in dataset.batches(capped_batch_size(dataset, batch_size)):
            batch = batch.to(model_device(model))
            noise = lo + (hi - lo) * rand_like(batch.x, generator)
            m = batch.effective_mask.bool()
            logits = check_logits(model(torch.where(m, noise, batch.x)), dataset.num_classes, where, len(batch))
            preds.append(logits.argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def _decide(flip: float, drop: float) -> str:
    if flip >= RELIES_FLIP or drop >= RELIES_PGD_DROP:
        return "relies"
    if flip <= CLEAN_FLIP and drop <= CLEAN_PGD_DROP:
        return "does_not_rely"
    return "partly"


def summary(r: dict) -> str:
    """The verdict in plain words, with the numbers that justify it."""
    if r.get("input") == "text":
        return text_summary(r)
    head = HEADLINES[r["verdict"]]
    if r["verdict"] == "cannot_audit":
        return (f"{head}: no example in this split has a mask, so nothing says which region to check "
                f"(annotate some examples, e.g. a mask column in labels.csv)")
    parts = [f"replacing only the masked features by random values flips {r['randomised_flip_rate']:.0%} of "
             f"predictions (accuracy {r['annotated_accuracy']:.2f} -> {r['randomised_accuracy']:.2f})",
             f"attacking only them (masked PGD, eps {r['eps']:g}) takes accuracy from {r['annotated_accuracy']:.2f} "
             f"to {r['masked_pgd_accuracy']:.2f}"]
    certified = r["ibp_certified_accuracy"]
    if certified is not None and certified >= 0.005:
        parts.append(f"IBP certifies {certified:.2f} over that box")
    elif certified is not None:
        parts.append("IBP certifies none (its bounds are loose unless the model was trained with them)")
    share = r["mask_gradient_share"]
    if share is not None and not math.isnan(share):
        parts.append(f"{share:.0%} of the input-gradient mass is inside the mask, which covers "
                     f"{r['mask_area']:.0%} of the input")
    wrong = r.get("wrong_reason")
    if wrong is not None and not math.isnan(wrong):
        parts.append(f"{wrong:.0%} of the most salient features (|gradient| > 0.67 max) are in the mask")
    return f"{head}: " + "; ".join(parts) + f" ({r['annotated_examples']} annotated examples)"


def audit(model: nn.Module, dataset: ExplanationDataset, eps: Optional[float] = None, steps: int = 20,
          draws: int = 5, seed: int = 0, batch_size: int = 500) -> dict:
    """All applicable checks of ``model`` on ``dataset`` and the verdict (see the module docstring)."""
    if is_text_dataset(dataset):
        return audit_text(model, dataset, eps=eps, draws=draws, seed=seed, batch_size=batch_size)
    lo, hi = dataset.input_range
    if not (math.isfinite(lo) and math.isfinite(hi) and hi >= lo):
        raise UserError(f"audit: dataset {dataset.name!r} has no finite input_range ({lo}, {hi})")
    eps = float(hi - lo) if eps is None else eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise UserError(f"audit: eps must be a finite number >= 0, got {eps!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise UserError(f"audit: draws must be an integer >= 1, got {draws!r}")
    annotated = dataset.annotated(batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no annotation: NaN share, reported as cannot_audit
        base = evaluate(model, dataset, batch_size=batch_size)
    out = {"dataset": dataset.name, "examples": len(dataset), "annotated_examples": int(annotated.sum()),
           **{k: base[k] for k in ("accuracy", "worst_group_accuracy", "mean_group_accuracy", "group_accuracy")},
           "mask_gradient_share": None if math.isnan(base.get("mask_gradient_share", math.nan))
           else base["mask_gradient_share"],
           "wrong_reason": None if math.isnan(base.get("wrong_reason", math.nan)) else base["wrong_reason"],
           "eps": float(eps), "pgd_steps": steps, "random_draws": draws, "seed": seed,
           "thresholds": {"relies_flip": RELIES_FLIP, "relies_pgd_drop": RELIES_PGD_DROP,
                          "clean_flip": CLEAN_FLIP, "clean_pgd_drop": CLEAN_PGD_DROP}}
    if not annotated.any():
        out["verdict"] = "cannot_audit"
        out["summary"] = summary(out)
        return out
    sub = dataset.subset(torch.nonzero(annotated).flatten())
    generator = torch.Generator().manual_seed(seed)
    clean = predict(model, sub, batch_size)
    flips, accs = [], []
    for _ in range(draws):
        pred = randomised_predictions(model, sub, generator, batch_size)
        flips.append((pred != clean).float().mean().item())
        accs.append((pred == sub.y).float().mean().item())
    out["mask_area"] = sub.mask.float().mean().item()
    out["annotated_accuracy"] = (clean == sub.y).float().mean().item()
    out["randomised_accuracy"] = sum(accs) / draws
    out["randomised_flip_rate"] = sum(flips) / draws
    out["masked_pgd_accuracy"] = masked_pgd_accuracy(model, sub, eps, steps=steps, batch_size=batch_size)
    try:
        out["ibp_certified_accuracy"] = ibp_certified_accuracy(model, sub, eps, batch_size=batch_size)
        out["ibp_not_applicable"] = None
    except UserError as exc:
        out["ibp_certified_accuracy"] = None
        out["ibp_not_applicable"] = str(exc)
    drop = out["annotated_accuracy"] - out["masked_pgd_accuracy"]
    out["verdict"] = _decide(out["randomised_flip_rate"], drop)
    out["summary"] = summary(out)
    return out


def text_summary(r: dict) -> str:
    """The verdict of a text audit in plain words, with the numbers that justify it."""
    head = HEADLINES[r["verdict"]]
    if r["verdict"] == "cannot_audit":
        return (f"{head}: no document in this split has masked tokens, so nothing says which words to check "
                f"(mark the tokens to ignore in the mask)")
    before = r["annotated_accuracy"]
    parts = [f"replacing only the masked tokens by random words flips {r['randomised_flip_rate']:.0%} of "
             f"predictions (accuracy {before:.2f} -> {r['randomised_accuracy']:.2f})",
             f"by <unk> {r['unk_flip_rate']:.0%} (-> {r['unk_accuracy']:.2f})",
             f"removing them {r['removed_flip_rate']:.0%} (-> {r['removed_accuracy']:.2f})"]
    share = r["mask_gradient_share"]
    if share is not None and not math.isnan(share):
        parts.append(f"{share:.0%} of the embedding-gradient mass is on the masked tokens, which are "
                     f"{r['mask_area']:.1%} of the tokens")
    wrong = r.get("wrong_reason")
    if wrong is not None and not math.isnan(wrong):
        parts.append(f"{wrong:.0%} of the most salient embedding values (|gradient| > 0.67 max) are on masked tokens")
    return f"{head}: " + "; ".join(parts) + f" ({r['annotated_examples']} annotated documents)"


def audit_text(model: nn.Module, dataset, eps: Optional[float] = None, draws: int = 5, seed: int = 0,
               batch_size: int = 500) -> dict:
    """The audit of a text model on a text dataset: its masked tokens replaced and removed (see the module
    docstring)."""
    explanation_space(model, dataset)  # a one-line error unless a text model meets text data
    if eps is not None:
        raise UserError(f"audit: dataset {dataset.name!r} is text: its masked tokens are replaced, not perturbed, "
                        "so eps does not apply")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise UserError(f"audit: draws must be an integer >= 1, got {draws!r}")
    annotated = dataset.annotated(batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no annotation: NaN share, reported as cannot_audit
        base = evaluate(model, dataset, batch_size=batch_size)
    out = {"dataset": dataset.name, "input": "text", "examples": len(dataset),
           "annotated_examples": int(annotated.sum()),
           **{k: base[k] for k in ("accuracy", "worst_group_accuracy", "mean_group_accuracy", "group_accuracy")},
           "mask_gradient_share": None if math.isnan(base.get("mask_gradient_share", math.nan))
           else base["mask_gradient_share"],
           "wrong_reason": None if math.isnan(base.get("wrong_reason", math.nan)) else base["wrong_reason"],
           "random_draws": draws, "seed": seed,
           "thresholds": {"relies_flip": RELIES_FLIP, "relies_pgd_drop": RELIES_PGD_DROP,
                          "clean_flip": CLEAN_FLIP, "clean_pgd_drop": CLEAN_PGD_DROP}}
    if not annotated.any():
        out["verdict"] = "cannot_audit"
        out["summary"] = summary(out)
        return out
    sub = dataset.subset(torch.nonzero(annotated).flatten())
    replaced = token_replacement(model, sub, draws, torch.Generator().manual_seed(seed), batch_size)
    out["mask_area"] = replaced["masked_tokens"] / max(replaced["tokens"], 1)
    out["annotated_accuracy"] = replaced["accuracy"]
    out["randomised_accuracy"] = replaced["random_accuracy"]
    out["randomised_flip_rate"] = replaced["random_flip_rate"]
    for kind in ("unk", "removed"):
        out[f"{kind}_accuracy"], out[f"{kind}_flip_rate"] = replaced[f"{kind}_accuracy"], replaced[f"{kind}_flip_rate"]
    flip = max(replaced[f"{kind}_flip_rate"] for kind in TOKEN_REPLACEMENTS)
    drop = max(replaced["accuracy"] - replaced[f"{kind}_accuracy"] for kind in TOKEN_REPLACEMENTS)
    out["verdict"] = _decide(flip, drop)
    out["summary"] = summary(out)
    return out
