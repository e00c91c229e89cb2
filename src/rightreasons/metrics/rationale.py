"""Per-token saliency of a text model, its agreement with human rationales and its faithfulness (ERASER).

Per-token saliency s_t of a document, from the embedded input e (L, D + 1) of a text model (``models.text``):

- ``grad``: s_t = || d S / d e_t[1..D] ||_2 with S = sum_k log softmax(f(e))_k (Ross et al.'s explanation);
- ``ig``:   s_t = || IG_t[1..D] ||_2, integrated gradients of S (Sundararajan et al. 2017) from the zero
  embedding, the token flags held fixed (the path never turns a token into padding), ``ig_steps`` steps of
  the right Riemann sum.

Padding has saliency 0 and is never counted: everything below is over each document's tokens; ties in
the ranking go to the earlier token.

Agreement with the rationale R of a document (``TextDataset.rationale``, the tokens a person marked as the
evidence; documents with an empty rationale are left out, and with none at all both are NaN with a warning):

- ``token_f1``: F1 of the k = |R| most salient tokens (the document's own rationale length) against R (with
  |top k| = |R|, precision = recall = F1 = |top k & R| / |R|), averaged over documents;
- ``auprc``: average precision of the saliency against R, sum_n (R_n - R_{n-1}) P_n over the distinct saliency
  values as thresholds (as sklearn's ``average_precision_score``), averaged over documents.

Faithfulness (DeYoung et al., ACL 2020, ERASER; AOPC over the bins b in {1, 5, 10, 20, 50}%), with p the
probability of the class predicted on the whole document x and r_b its ceil(b n / 100) most salient of n
tokens, averaged over the documents that have a token:

- ``comprehensiveness`` = mean_b p(x) - p(x without r_b): high when the salient tokens were needed;
- ``sufficiency``       = mean_b p(x) - p(r_b alone):     low when they suffice.

Tokens are removed, the rest shifted left (padding at the end; as if deleted from the text), never replaced.
The share of the input-gradient mass on masked tokens is ``evaluate``'s ``mask_gradient_share`` (text models are
evaluated in embedding space, the L1 share of the embedding gradient); it is not repeated here.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..data.text.embedded import is_text_dataset
from ..data.text.tokenizer import PAD
from ..devices import model_device
from ..errors import UserError
from ..models.text import embeddings, is_text_model
from ..ops.input_gradients import input_gradients
from ..ops.integrated_gradients import integrated_gradients
from ..ops.modes import eval_mode
from .logits import check_logits, checked_outputs
from .token_replacement import remove_tokens

ATTRIBUTIONS = ("grad", "ig")
#: the AOPC bins of ERASER, in percent of a document's tokens
BINS = (1, 5, 10, 20, 50)


def attribution_name(attribution: str) -> str:
    """``grad`` or ``ig`` (``gradient`` is accepted for ``grad``, the name the saliency grids use)."""
    kind = "grad" if attribution == "gradient" else attribution
    if kind not in ATTRIBUTIONS:
        raise UserError(f"token saliency: attribution must be one of {', '.join(ATTRIBUTIONS)}, got {attribution!r}")
    return kind


def _log_prob_sum(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1).sum(1)


def token_saliency(model: nn.Module, ids: torch.Tensor, attribution: str = "grad", ig_steps: int = 50) -> torch.Tensor:
    """(B, L) per-token saliency of a text ``model`` on token ids (B, L) (see the module docstring), 0 on
    padding; computed in eval mode on the model's device, returned on the CPU."""
    if not is_text_model(model):
        raise UserError("token saliency: needs a text model (text-bag, text-cnn, text-transformer)")
    kind = attribution_name(attribution)
    ids = ids.to(model_device(model))
    with eval_mode(model):
        with torch.no_grad():
            x = model.embed(ids)
        if kind == "grad":
            grad = input_gradients(model.body, x, "log_prob_sum")[0]
        else:
            baseline = torch.cat([torch.zeros_like(embeddings(x)), x[..., -1:]], dim=-1)
            chunk = max(1, 128 // max(len(ids), 1))  # path points per pass: about 128 documents at once
            grad = integrated_gradients(model.body, x, baseline, _log_prob_sum, steps=ig_steps, chunk_size=chunk)
    return (embeddings(grad).norm(dim=-1) * (ids != PAD)).detach().cpu()


def ranks(saliency: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) each token's rank by decreasing saliency within its document (0 = most salient; ties: the earlier
    token first); padding ranks after every token."""
    score = saliency.masked_fill(~tokens, -math.inf)
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    out = torch.empty_like(order)
    out.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return out


def top_k_f1(saliency: torch.Tensor, rationale: torch.Tensor) -> float:
    """F1 of the k = |rationale| most salient tokens against the rationale, for one document's tokens (1-D,
    padding left out); NaN for an empty rationale."""
    rationale = rationale.bool()
    k = int(rationale.sum())
    if k == 0:
        return math.nan
    top = torch.sort(saliency, descending=True, stable=True).indices[:k]
    hits = float(rationale[top].sum())
    precision, recall = hits / k, hits / k
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)


def average_precision(saliency: torch.Tensor, rationale: torch.Tensor) -> float:
    """Average precision sum_n (R_n - R_{n-1}) P_n of ``saliency`` as scores for the ``rationale`` tokens, the
    distinct saliency values as thresholds (one document's tokens, 1-D); NaN for an empty rationale."""
    labels = rationale.bool()
    if not bool(labels.any()):
        return math.nan
    order = torch.sort(saliency.double(), descending=True, stable=True).indices
    scores, hits = saliency.double()[order], labels[order].double()
    tp, seen = hits.cumsum(0), torch.arange(1, len(hits) + 1, dtype=torch.float64)
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]  # the last token of each run of equal scores: one threshold
    precision, recall = tp[last] / seen[last], tp[last] / tp[-1]
    step = recall - torch.cat([recall.new_zeros(1), recall[:-1]])
    return float((step * precision).sum())


def aopc(model: nn.Module, ids: torch.Tensor, saliency: torch.Tensor, num_classes: int,
         where: str = "token ids") -> tuple[torch.Tensor, torch.Tensor]:
    """(comprehensiveness, sufficiency), each (B, len(BINS)): p(x) - p(x without r_b) and p(x) - p(r_b alone)
    per document and bin (see the module docstring); eval mode and no gradients are the caller's."""
    device = model_device(model)
    ids, saliency = ids.to(device), saliency.to(device)
    tokens = ids != PAD
    rank = ranks(saliency, tokens)
    n = tokens.sum(1, keepdim=True)

    def prob(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits = check_logits(model(x), num_classes, where, len(x))
        return F.softmax(logits.double(), dim=1).gather(1, index).squeeze(1)

    logits = check_logits(model(ids), num_classes, where, len(ids))
    pred = logits.argmax(1, keepdim=True)
    p = F.softmax(logits.double(), dim=1).gather(1, pred).squeeze(1)
    comp, suff = [], []
    for b in BINS:
        top = (rank < (b * n + 99) // 100) & tokens  # ceil(b n / 100) tokens
        comp.append(p - prob(remove_tokens(ids, top), pred))
        suff.append(p - prob(remove_tokens(ids, tokens & ~top), pred))
    return torch.stack(comp, 1).cpu(), torch.stack(suff, 1).cpu()


def rationale_agreement(model: nn.Module, dataset, attribution: str = "grad", batch_size: int = 64,
                        ig_steps: int = 50) -> dict:
    """Token F1 and AUPRC of a text ``model``'s per-token saliency against ``dataset``'s rationales, and
    ERASER's comprehensiveness and sufficiency (AOPC, also per bin), see the module docstring. Also the
    ``documents`` (with a token) and ``rationale_documents`` counted. Eval mode, restored."""
    if not (is_text_model(model) and is_text_dataset(dataset)):
        raise UserError("rationale agreement: needs a text model (text-bag, text-cnn, text-transformer) on text data")
    kind = attribution_name(attribution)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"rationale agreement: batch_size must be an integer >= 1, got {batch_size!r}")
    where = f"dataset {dataset.name!r}"
    f1s, aps, comps, suffs = [], [], [], []
    with checked_outputs(model.body, dataset.num_classes, where), eval_mode(model):
        for index in dataset.index_batches(batch_size):
            ids = dataset.ids[index]
            saliency = token_saliency(model, ids, kind, ig_steps)
            tokens = ids != PAD
            has_token = tokens.any(1)
            with torch.no_grad():
                comp, suff = aopc(model, ids, saliency, dataset.num_classes, where)
            comps += comp[has_token].tolist()
            suffs += suff[has_token].tolist()
            if dataset.rationale is None:
                continue
            rationale = dataset.rationale[index]
            for row in range(len(ids)):
                r = rationale[row][tokens[row]]
                if bool(r.any()):
                    s = saliency[row][tokens[row]].double()
                    f1s.append(top_k_f1(s, r))
                    aps.append(average_precision(s, r))
    if not f1s:
        warnings.warn(f"rationale agreement on {where}: no document with a rationale; token_f1 and auprc are NaN",
                      RuntimeWarning, stacklevel=2)
    if not comps:
        warnings.warn(f"rationale agreement on {where}: no document with a token; comprehensiveness and "
                      "sufficiency are NaN", RuntimeWarning, stacklevel=2)
    comp, suff = (torch.tensor(v, dtype=torch.float64).reshape(-1, len(BINS)) for v in (comps, suffs))

    def mean(values) -> float:
        return float(sum(values) / len(values)) if len(values) else math.nan

    return {"attribution": kind, "documents": len(comps), "rationale_documents": len(f1s),
            "token_f1": mean(f1s), "auprc": mean(aps),
            "comprehensiveness": mean(comp.flatten().tolist()), "sufficiency": mean(suff.flatten().tolist()),
            "comprehensiveness_by_bin": {f"{b}%": mean(comp[:, i].tolist()) for i, b in enumerate(BINS)},
            "sufficiency_by_bin": {f"{b}%": mean(suff[:, i].tolist()) for i, b in enumerate(BINS)}}
