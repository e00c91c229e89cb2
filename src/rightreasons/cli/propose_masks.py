"""``rightreasons propose-masks``: masks proposed from a trained model's saliency, written as a folder."""

from __future__ import annotations

import click

from ..errors import UserError
from ..mask_proposals import ATTRIBUTIONS, CHOICES, DEFAULTS, SELECTIONS
from .common import fmt, use_threads
from .options import data_override_options, device_option, trust_code_option


@click.command(name="propose-masks")
@click.argument("run_dir", type=click.Path())
@data_override_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder dataset to write.")
@click.option("--splits", default="train", show_default=True,
              help="Comma-separated splits that get proposals (the others keep their source masks).")
@click.option("--threshold", type=float, default=DEFAULTS["threshold"], show_default=True,
              help="Keep pixels with saliency >= this fraction of the example's maximum.")
@click.option("--top-fraction", type=float, default=None, help="Keep this share of the most salient pixels instead.")
@click.option("--dilate", type=click.IntRange(min=0), default=DEFAULTS["dilate"], show_default=True)
@click.option("--min-area", type=click.IntRange(min=0), default=DEFAULTS["min_area"], show_default=True,
              help="Drop connected components with fewer pixels (at the data's size).")
@click.option("--components", type=click.IntRange(min=1), default=DEFAULTS["components"], show_default=True)
@click.option("--connectivity", type=click.Choice(["4", "8"]), default=str(DEFAULTS["connectivity"]),
              show_default=True)
@click.option("--choose", type=click.Choice(CHOICES), default=DEFAULTS["choose"], show_default=True,
              help="Keep the largest components, or those whose occlusion changes the prediction most.")
@click.option("--candidates", type=click.IntRange(min=1), default=DEFAULTS["candidates"], show_default=True,
              help="Components compared by occlusion (--choose occlusion).")
@click.option("--select", type=click.Choice(SELECTIONS), default=DEFAULTS["select"], show_default=True,
              help="Propose on every example, or only where occluding the proposal lowers the predicted "
                   "class's log-probability by >= --min-drop (and it is compact: --max-fraction).")
@click.option("--min-drop", type=float, default=DEFAULTS["min_drop"], show_default=True)
@click.option("--max-fraction", type=float, default=DEFAULTS["max_fraction"], show_default=True,
              help="--select relied: propose only where the proposal covers at most this share of the image.")
@click.option("--attribution", type=click.Choice(ATTRIBUTIONS), default=DEFAULTS["attribution"], show_default=True)
@click.option("--saliency-batch-size", "batch_size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Examples per batch when computing saliency.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads (default: OMP_NUM_THREADS, else all cores).")
@trust_code_option()
@device_option()
def propose_masks_command(run_dir, data, data_options, out, splits, threshold, top_fraction, dilate, min_area,
                          components, connectivity, choose, candidates, select, min_drop, max_fraction, attribution,
                          batch_size, overwrite, threads, trust_code, device):
    """Propose masks (white = ignore) where the model of RUN_DIR looks, on an image folder (default: the
    run's own data), and write them with the folder's images as a new folder dataset to review or train on."""
    import torch

    from ..data.dataset import SPLITS
    from ..mask_proposals import iou_summary, propose_masks, train_command, write_proposals
    from ..train.overrides import parse_assignments
    from ..train.run import load_run_on, read_finished_run

    use_threads(threads)
    chosen = tuple(dict.fromkeys(s.strip() for s in splits.split(",") if s.strip()))
    bad = [s for s in chosen if s not in SPLITS]
    if not chosen or bad:
        raise UserError(f"--splits: expected comma-separated names among {', '.join(SPLITS)}, got {splits!r}")
    overrides = parse_assignments(data_options, "--data-option")
    saved, _ = read_finished_run(run_dir)
    name = data or str(saved.get("data"))
    if not name.startswith("folder:"):
        raise UserError(f"{run_dir}: trained on {name!r}, not an image folder; pass --data folder:PATH")
    options = {**(saved.get("data_options") or {} if data in (None, saved.get("data")) else {}), **overrides}
    model, config, splits_data = load_run_on(run_dir, data, overrides, trust_code=trust_code, device=device)
    masks, selected, drops = {}, {}, {}
    lines = []
    for split in chosen:
        dataset = splits_data.split(split)
        m, sel, drop = propose_masks(model, dataset, threshold=threshold, top_fraction=top_fraction, dilate=dilate,
                                     min_area=min_area, components=components, attribution=attribution,
                                     batch_size=batch_size, connectivity=int(connectivity), choose=choose,
                                     candidates=candidates, select=select, min_drop=min_drop,
                                     max_fraction=max_fraction, return_details=True)
        masks[split], selected[split], drops[split] = m, sel, drop
        line = f"{split}: {int(sel.sum())} proposals on {len(dataset)} examples"
        batches = list(dataset.batches(batch_size))
        has_mask = torch.cat([b.has_mask for b in batches])
        if bool(has_mask.any()):
            s = iou_summary(m, torch.cat([b.mask.bool() for b in batches]), has_mask)
            line += (f"; against the true masks: mean IoU {fmt(s['mean_iou'])} over the {s['with_true_mask']} "
                     f"with a non-empty mask, recall {fmt(s['recall'])}, precision {fmt(s['precision'])}, "
                     f"{s['proposed_on_empty']} proposals on the {s['empty_true_masks']} with an empty mask")
        lines.append(line)
    write_proposals(out, name.removeprefix("folder:"), chosen, masks, seed=config.seed, data_options=options,
                    overwrite=overwrite, selected=selected, drop=drops)
    for line in lines:
        click.echo(line)
    for split in SPLITS:
        if split not in chosen:
            click.echo(f"{split}: source masks kept")
    click.echo(f"wrote {out} (labels.csv, images/, masks/, true_masks/, proposals.csv); train on it: "
               f"{train_command(out, options)}")
