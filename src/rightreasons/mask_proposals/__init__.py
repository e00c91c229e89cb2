"""Proposed masks (1 = ignore), written as a new image folder that a person can review
(``rightreasons annotate --proposals``) and that trains directly (``--data folder:DIR``). Three sources:

- **a model's own saliency** (:func:`propose_masks`, ``--source saliency``): the regions a (typically ERM)
  model relies on. Per example: saliency ``s = sum_c |d sum_k log p_k / dx_c|`` (or ``|integrated
  gradients|`` with ``attribution="ig"``), normalised by its maximum; the pixels with ``s >= threshold``
  (or the ``top_fraction`` most salient pixels) kept; their connected components under ``min_area``
  pixels dropped, each dilated by ``dilate`` pixels; of those, the ``components`` largest
  (``choose="largest"``, what :func:`postprocess` does on a given saliency map) or, of the ``candidates``
  largest, the ``components`` whose occlusion lowers the predicted class's log-probability most
  (``choose="occlusion"``). With ``select="relied"`` only examples where that drop is at least
  ``min_drop`` and the proposal covers at most ``max_fraction`` of the image get one (a rule on the model
  alone, never on true masks or groups; ``select="all"``: every example).
- **a teacher's saliency** (:func:`teacher_masks`, ``--source teacher``; Zhang et al., AAAI 2024): what a
  model that looks at the right things ignores, ``M = {s < Q_q(s)} | {s = min s}`` per example
  (:mod:`.teacher`).
- **a find-another-explanation run** (:func:`find_another_proposals`, ``--source find-another``; Ross et
  al. 2017): the union of the previous models' top-gradient masks that model K was trained with, or model
  K's own (:mod:`.find_another_masks`).

:func:`write_proposals` writes ``DIR/labels.csv`` (the source rows, with an explicit ``split``
column), ``DIR/images/`` (the source images, hard-linked or copied), ``DIR/masks/`` (proposals, white =
ignore), ``DIR/true_masks/`` (the source masks, binarised) and ``DIR/proposals.csv`` (per row: the
proposal, the source mask, their IoU, the occlusion drop). Rows of the proposal splits carry the proposal (or an
empty mask cell when none is proposed); rows of the other splits keep their source masks.

Modules: :mod:`.options` (settings, defaults, checks), :mod:`.saliency`, :mod:`.postprocess`,
:mod:`.own_saliency`, :mod:`.atypical` (candidates unusual for their position, label purity),
:mod:`.consensus` (the proposals that models of other seeds agree on), :mod:`.teacher`,
:mod:`.find_another_masks`, :mod:`.agreement` (IoU), :mod:`.folder` (the written folder).
"""

from .agreement import _flat, iou_summary, mask_iou
from .atypical import atypical_candidates, atypicality, label_purity, reference_statistics
from .consensus import agreement, keep_agreed
from .find_another_masks import (
    WHICH,
    FindAnotherProposal,
    find_another_model,
    find_another_models,
    find_another_proposals,
    read_train_mask,
)
from .folder import (
    _csv_text,
    _fmt,
    _is_inside,
    _place_file,
    _write_mask_png,
    folder_rows,
    train_command,
    write_proposals,
)
from .options import (
    ATTRIBUTIONS,
    CANDIDATE_SOURCES,
    CHOICES,
    DEFAULTS,
    SELECTIONS,
    SOURCES,
    TEACHER_DEFAULTS,
    _check_number,
    _check_postprocess,
    _image_shape,
)
from .own_saliency import occluded, occlusion_drops, propose_masks
from .postprocess import (
    _neighbour_max,
    candidate_components,
    connected_components,
    largest_components,
    postprocess,
    saliency_share,
)
from .saliency import _log_prob_sum, saliency
from .teacher import quantile_masks, teacher_masks

__all__ = [
    "ATTRIBUTIONS", "CANDIDATE_SOURCES", "CHOICES", "DEFAULTS", "SELECTIONS", "SOURCES", "TEACHER_DEFAULTS",
    "WHICH", "FindAnotherProposal", "agreement", "atypical_candidates", "atypicality", "candidate_components",
    "connected_components", "find_another_model", "find_another_models", "find_another_proposals", "folder_rows",
    "iou_summary", "keep_agreed", "label_purity", "largest_components", "mask_iou", "occluded", "occlusion_drops",
    "postprocess", "propose_masks", "quantile_masks", "read_train_mask", "reference_statistics", "saliency",
    "saliency_share", "teacher_masks", "train_command", "write_proposals",
]
# private helpers kept importable from here, as they were from the single module
_PRIVATE = (_check_number, _check_postprocess, _csv_text, _flat, _fmt, _image_shape, _is_inside, _log_prob_sum,
            _neighbour_max, _place_file, _write_mask_png)
