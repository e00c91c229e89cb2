"""``rightreasons train``: train one run and write its directory."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .common import fmt, stderr_log, use_threads
from .options import split_fields, training_options


@click.command(name="train")
@training_options("data", "method")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@training_options("model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "threads", "select", "params",
                  "data_options", "model_options", "config_file")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--quiet", is_flag=True, help="No per-epoch log or progress bar.")
def train_command(out, config_file, overwrite, resume, quiet, **flags):
    """Train a model and write DIR/model.safetensors, DIR/config.json and DIR/metrics.json."""
    from ..train import distributed
    from ..train.checkpoint import latest_checkpoint, read_meta
    from ..train.config import TrainConfig
    from ..train.overrides import apply_overrides
    from ..train.run import CHECKPOINTS, check_out_dir, resolved_config, run_training, save_run

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other")
    latest = latest_checkpoint(Path(out) / CHECKPOINTS) if resume else None
    if latest is not None and not config_file:
        config = TrainConfig.from_dict(read_meta(latest)["config"], where=str(latest))
    else:
        config = TrainConfig.load(config_file) if config_file else TrainConfig()
    config = resolved_config(apply_overrides(config, *split_fields(flags)))
    distributed.init_from_env()  # under torchrun: join the process group (gloo on CPU)
    try:
        use_threads(config.threads)
        main_process = distributed.is_main_process()
        if main_process:
            check_out_dir(out, overwrite, resume)
        distributed.barrier()
        out = Path(out)
        log = stderr_log(quiet) if main_process else None
        output = run_training(config, log=log, progress=not quiet, checkpoint_dir=out / CHECKPOINTS, resume=resume)
        if main_process:
            save_run(out, output)
        distributed.barrier()
    finally:
        distributed.destroy()
    if not main_process:
        return
    test = output.metrics["test"]
    click.echo(f"{config.method} on {config.data}: test accuracy {fmt(test['accuracy'])}, "
               f"worst-group {fmt(test['worst_group_accuracy'])} (of {len(test.get('group_accuracy', {}))} groups), "
               f"mask gradient share {fmt(test.get('mask_gradient_share'))}, "
               f"wrong reason {fmt(test.get('wrong_reason'))}, "
               f"{output.metrics['train_seconds']:.1f}s -> {out}")
