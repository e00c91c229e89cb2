"""``rightreasons propose-masks``: masks proposed from a trained model's saliency, a teacher's saliency or a
find-another run, written as a folder."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from ..mask_proposals import (
    ATTRIBUTIONS,
    CANDIDATE_SOURCES,
    CHOICES,
    DEFAULTS,
    SELECTIONS,
    SOURCES,
    TEACHER_DEFAULTS,
    WHICH,
)
from .common import fmt, use_threads
from .options import data_override_options, device_option, trust_code_option

#: the options that only some sources read (the others refuse them when given)
APPLIES = {
    "threshold": ("saliency",), "top_fraction": ("saliency",), "components": ("saliency",), "choose": ("saliency",),
    "candidates": ("saliency",), "select": ("saliency",), "min_drop": ("saliency",), "max_fraction": ("saliency",),
    "dilate": ("saliency", "teacher"), "min_area": ("saliency", "teacher"), "connectivity": ("saliency", "teacher"),
    "attribution": ("saliency", "teacher"), "candidates_from": ("saliency",), "atypical_threshold": ("saliency",),
    "min_purity": ("saliency",), "purity_k": ("saliency",), "agree_with": ("saliency",), "min_agreement": ("saliency",),
    "quantile": ("teacher",), "smooth": ("teacher",),
    "model_index": ("find-another",), "which": ("find-another",),
}


def _check_applicable(ctx: click.Context, source: str) -> None:
    for name, sources in APPLIES.items():
        if source not in sources and ctx.get_parameter_source(name) not in (
                click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP, None):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag}: applies to --source {' or '.join(sources)} only, not --source {source}")


def _summary(split: str, dataset, masks, selected, batch_size: int, share: bool) -> str:
    import torch

    from ..mask_proposals import iou_summary

    line = f"{split}: {int(selected.sum())} proposals on {len(dataset)} examples"
    if share:
        line += f", masking {fmt(masks.float().mean().item())} of the pixels"
    batches = list(dataset.batches(batch_size))
    has_mask = torch.cat([b.has_mask for b in batches]) if batches else torch.zeros(0, dtype=torch.bool)
    if bool(has_mask.any()):
        s = iou_summary(masks, torch.cat([b.mask.bool() for b in batches]), has_mask)
        line += (f"; against the true masks: mean IoU {fmt(s['mean_iou'])} over the {s['with_true_mask']} "
                 f"with a non-empty mask, recall {fmt(s['recall'])}, precision {fmt(s['precision'])}, "
                 f"{s['proposed_on_empty']} proposals on the {s['empty_true_masks']} with an empty mask")
    return line


def _folder(name: str, where) -> str:
    if not name.startswith("folder:"):
        raise UserError(f"{where}: trained on {name!r}, not an image folder; pass --data folder:PATH")
    return name.removeprefix("folder:")


@click.command(name="propose-masks")
@click.argument("run_dir", type=click.Path())
@data_override_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder dataset to write.")
@click.option("--source", type=click.Choice(SOURCES), default="saliency", show_default=True,
              help="saliency: where the model of RUN_DIR looks (an ERM model's shortcuts); teacher: what the "
                   "model of RUN_DIR (a teacher that looks at the right things) ignores; find-another: the masks "
                   "of the `rightreasons find-another` output RUN_DIR.")
@click.option("--splits", default="train", show_default=True,
              help="Comma-separated splits that get proposals (the others keep their source masks; find-another: "
                   "train only).")
@click.option("--threshold", type=float, default=DEFAULTS["threshold"], show_default=True,
              help="saliency: keep pixels with saliency >= this fraction of the example's maximum.")
@click.option("--top-fraction", type=float, default=None,
              help="saliency: keep this share of the most salient pixels instead.")
@click.option("--dilate", type=click.IntRange(min=0), default=None,
              help=f"Dilate the masks by this many pixels [default: {DEFAULTS['dilate']} for saliency, "
                   f"{TEACHER_DEFAULTS['dilate']} for teacher].")
@click.option("--min-area", type=click.IntRange(min=0), default=None,
              help=f"Drop connected components with fewer pixels (at the data's size) [default: "
                   f"{DEFAULTS['min_area']} for saliency, {TEACHER_DEFAULTS['min_area']} for teacher].")
@click.option("--components", type=click.IntRange(min=1), default=DEFAULTS["components"], show_default=True)
@click.option("--connectivity", type=click.Choice(["4", "8"]), default=str(DEFAULTS["connectivity"]),
              show_default=True)
@click.option("--choose", type=click.Choice(CHOICES), default=DEFAULTS["choose"], show_default=True,
              help="saliency: keep the largest components, or those whose occlusion changes the prediction most.")
@click.option("--candidates", type=click.IntRange(min=1), default=DEFAULTS["candidates"], show_default=True,
              help="Components compared by occlusion (--choose occlusion).")
@click.option("--select", type=click.Choice(SELECTIONS), default=DEFAULTS["select"], show_default=True,
              help="saliency: propose on every example, or only where occluding the proposal lowers the predicted "
                   "class's log-probability by >= --min-drop (and it is compact: --max-fraction).")
@click.option("--min-drop", type=float, default=DEFAULTS["min_drop"], show_default=True)
@click.option("--max-fraction", type=float, default=DEFAULTS["max_fraction"], show_default=True,
              help="--select relied: propose only where the proposal covers at most this share of the image.")
@click.option("--attribution", type=click.Choice(ATTRIBUTIONS), default=DEFAULTS["attribution"], show_default=True)
@click.option("--candidates-from", type=click.Choice(CANDIDATE_SOURCES), default=DEFAULTS["candidates_from"],
              show_default=True,
              help="saliency: candidate regions from the model's saliency; atypical: from the pixels unusual for "
                   "their position (per-pixel robust z-score over the split >= --atypical-threshold).")
@click.option("--atypical-threshold", type=click.FloatRange(0, min_open=True), default=DEFAULTS["atypical_threshold"],
              show_default=True, help="--candidates-from atypical: the z-score a candidate's pixels reach.")
@click.option("--min-purity", type=click.FloatRange(0, 1), default=DEFAULTS["min_purity"], show_default=True,
              help="Choose only candidates whose --purity-k nearest candidates of other examples (by mean colour) "
                   "mostly have the same label: a shortcut looks alike within one class (0: off).")
@click.option("--purity-k", type=click.IntRange(min=1), default=DEFAULTS["purity_k"], show_default=True)
@click.option("--agree-with", "agree_with", multiple=True, type=click.Path(),
              help="saliency: another run trained on the same data (another seed; repeatable). Each proposes with "
                   "the same settings, and a proposal is kept only where every one of them proposes a region "
                   "overlapping it by --min-agreement: a shortcut is what every model takes.")
@click.option("--min-agreement", type=click.FloatRange(0, 1, min_open=True), default=0.3, show_default=True,
              help="--agree-with: the IoU each other run's proposal must reach with the kept one.")
@click.option("--quantile", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=TEACHER_DEFAULTS["quantile"], show_default=True,
              help="teacher: mask the pixels whose teacher saliency is below this per-example quantile.")
@click.option("--smooth", type=click.IntRange(min=0), default=TEACHER_DEFAULTS["smooth"], show_default=True,
              help="teacher: average the saliency over K x K pixel windows before thresholding (0: no smoothing).")
@click.option("--model-index", type=click.IntRange(min=1), default=None,
              help="find-another: the model K (RUN_DIR/model-K) whose mask to propose [default: the last].")
@click.option("--which", type=click.Choice(WHICH), default="train", show_default=True,
              help="find-another: the mask model K was trained with (train: the union of its predecessors' "
                   "top-gradient masks and the data's masks) or model K's own top-gradient mask (top).")
@click.option("--saliency-batch-size", "batch_size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Examples per batch when computing saliency.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads (default: OMP_NUM_THREADS, else all cores).")
@trust_code_option()
@device_option()
@click.pass_context
def propose_masks_command(ctx, run_dir, data, data_options, out, source, splits, threshold, top_fraction, dilate,
                          min_area, components, connectivity, choose, candidates, select, min_drop, max_fraction,
                          attribution, candidates_from, atypical_threshold, min_purity, purity_k, agree_with,
                          min_agreement, quantile, smooth, model_index, which, batch_size, overwrite, threads,
                          trust_code, device):
    """Propose masks (white = ignore) on an image folder (default: the run's own data) and write them with the
    folder's images as a new folder dataset to review or train on. --source saliency: where the model of
    RUN_DIR looks; teacher: what the teacher RUN_DIR ignores (its saliency below a per-example quantile);
    find-another: the masks of a `rightreasons find-another` output RUN_DIR, for the train split."""
    from ..data.dataset import SPLITS
    from ..mask_proposals import (
        find_another_model,
        find_another_proposals,
        keep_agreed,
        propose_masks,
        teacher_masks,
        train_command,
        write_proposals,
    )
    from ..train.overrides import parse_assignments
    from ..train.run import load_run, load_run_on, read_finished_run

    use_threads(threads)
    _check_applicable(ctx, source)
    chosen = tuple(dict.fromkeys(s.strip() for s in splits.split(",") if s.strip()))
    bad = [s for s in chosen if s not in SPLITS]
    if not chosen or bad:
        raise UserError(f"--splits: expected comma-separated names among {', '.join(SPLITS)}, got {splits!r}")
    overrides = parse_assignments(data_options, "--data-option")
    masks, selected, drops, agreements, lines = {}, {}, {}, {}, []
    if source == "find-another":
        if chosen != ("train",):
            raise UserError(f"--splits: --source find-another has masks of the training inputs only, so it proposes "
                            f"for the train split alone, got {splits!r}")
        _, _, model_dir, saved = find_another_model(run_dir, model_index)
        folder = _folder(data or saved.data, model_dir)
        proposal = find_another_proposals(run_dir, data, overrides, model_index, which, trust_code=trust_code,
                                          device=device, batch_size=batch_size)
        seed, options = proposal.config.seed, proposal.data_options
        masks["train"] = proposal.masks
        selected["train"] = proposal.masks.flatten(1).any(1)
        lines.append(f"find-another: the {which} mask of model {proposal.index} of {proposal.n_models} "
                     f"({proposal.model_dir})")
        lines.append(_summary("train", proposal.data.train, proposal.masks, selected["train"], batch_size, True))
        drops = None
    else:
        saved, _ = read_finished_run(run_dir)
        name = data or str(saved.get("data"))
        folder = _folder(name, run_dir)
        options = {**(saved.get("data_options") or {} if data in (None, saved.get("data")) else {}), **overrides}
        model, config, splits_data = load_run_on(run_dir, data, overrides, trust_code=trust_code, device=device)
        seed = config.seed
        defaults = DEFAULTS if source == "saliency" else TEACHER_DEFAULTS
        dilate = defaults["dilate"] if dilate is None else dilate
        min_area = defaults["min_area"] if min_area is None else min_area
        if any(Path(other).resolve() == Path(run_dir).resolve() for other in agree_with):
            raise UserError(f"--agree-with: {run_dir} is the run that proposes; give runs of other seeds")
        others = [load_run(other, data=splits_data, trust_code=trust_code, device=device)[0] for other in agree_with]
        settings = dict(threshold=threshold, top_fraction=top_fraction, dilate=dilate, min_area=min_area,
                        components=components, attribution=attribution, batch_size=batch_size,
                        connectivity=int(connectivity), choose=choose, candidates=candidates, select=select,
                        min_drop=min_drop, max_fraction=max_fraction, candidates_from=candidates_from,
                        atypical_threshold=atypical_threshold, min_purity=min_purity, purity_k=purity_k)
        for split in chosen:
            dataset = splits_data.split(split)
            if source == "saliency":
                m, sel, drop = propose_masks(model, dataset, return_details=True, **settings)
                drops[split] = drop
                if others:
                    before = int(sel.sum())
                    m, sel, agreements[split] = keep_agreed(m, [propose_masks(o, dataset, **settings) for o in others],
                                                            min_agreement)
                    lines.append(f"{split}: {int(sel.sum())} of {before} proposals agreed on by the {len(others)} "
                                 f"other run(s) (IoU >= {fmt(min_agreement)})")
            else:
                m = teacher_masks(model, dataset, quantile=quantile, smooth=smooth, dilate=dilate, min_area=min_area,
                                  connectivity=int(connectivity), attribution=attribution, batch_size=batch_size)
                sel = m.flatten(1).any(1)
            masks[split], selected[split] = m, sel
            lines.append(_summary(split, dataset, m, sel, batch_size, source == "teacher"))
        if source == "teacher":
            drops = None
    write_proposals(out, folder, chosen, masks, seed=seed, data_options=options, overwrite=overwrite,
                    selected=selected, drop=drops, agreement=agreements or None)
    for line in lines:
        click.echo(line)
    for split in SPLITS:
        if split not in chosen:
            click.echo(f"{split}: source masks kept")
    click.echo(f"wrote {out} (labels.csv, images/, masks/, true_masks/, proposals.csv); train on it: "
               f"{train_command(out, options)}")
