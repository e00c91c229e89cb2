"""``rightreasons audit``: does a saved model rely on the annotated (masked) region?"""

from __future__ import annotations

import click

from .common import fmt, print_table, strict_json
from .options import data_override_options, device_option, split_option, trust_code_option

#: (result key, row label) of the audit table, in order
ROWS = (("accuracy", "accuracy"), ("worst_group_accuracy", "worst-group accuracy"),
        ("mask_gradient_share", "input-gradient share in mask"),
        ("wrong_reason", "wrong-reason score (salient features in mask)"), ("mask_area", "mask area"),
        ("annotated_examples", "annotated examples"), ("annotated_accuracy", "accuracy (annotated)"),
        ("randomised_accuracy", "accuracy, masked region randomised"),
        ("randomised_flip_rate", "predictions flipped by randomising"),
        ("unk_accuracy", "accuracy, masked tokens made unknown"), ("unk_flip_rate", "predictions flipped by unknown"),
        ("removed_accuracy", "accuracy, masked tokens removed"),
        ("removed_flip_rate", "predictions flipped by removing"),
        ("masked_pgd_accuracy", "accuracy under masked PGD"), ("ibp_certified_accuracy", "IBP-certified accuracy"))


@click.command(name="audit")
@click.argument("run_dir", type=click.Path())
@data_override_options
@split_option()
@click.option("--eps", type=float, help="Masked attack / certificate radius (default: the full data range).")
@click.option("--steps", type=click.IntRange(min=0), default=20, show_default=True, help="Masked PGD steps.")
@click.option("--draws", type=click.IntRange(min=1), default=5, show_default=True,
              help="Random fillings of the masked region.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random fillings.")
@trust_code_option()
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def audit_command(run_dir, data, data_options, split, eps, steps, draws, seed, as_json, trust_code, device):
    """Does a saved model rely on the annotated (masked) region? Prints the checks and a verdict."""
    from ..audit import audit
    from ..train.overrides import parse_assignments
    from ..train.run import load_run_on

    model, config, splits = load_run_on(run_dir, data, parse_assignments(data_options, "--data-option"),
                                         trust_code=trust_code, device=device)
    dataset = splits.split(split)
    result = audit(model, dataset, eps=eps, steps=steps, draws=draws, seed=seed)
    result["run"] = str(run_dir)
    result["split"] = split
    if as_json:
        click.echo(strict_json(result))
        return
    from rich.table import Table

    names = splits.info.get("groups")
    table = Table(title=f"audit of {run_dir} ({config.method}) on {dataset.name}, {split} split, "
                        f"{len(dataset)} examples")
    table.add_column("check")
    table.add_column("value", justify="right")
    for key, label in ROWS:
        if result.get("input") == "text":
            label = label.replace("masked region randomised", "masked tokens replaced by random words")
        if key in result:
            label = f"{label} (eps {result['eps']:g})" if key == "masked_pgd_accuracy" else label
            table.add_row(label, fmt(result[key]))
    for g, acc in result["group_accuracy"].items():
        name = names[int(g)] if isinstance(names, list) and int(g) < len(names) else g
        table.add_row(f"group {name}", fmt(acc))
    print_table(table)
    if result.get("ibp_not_applicable"):
        click.echo(f"IBP certificate: not applicable: {result['ibp_not_applicable']}")
    click.echo(result["summary"])
