"""``rightreasons train``: train one run and write its directory."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .common import fmt, stderr_log, use_threads
from .options import split_fields, training_options, trust_code_option, with_augment, with_robustness


@click.command(name="train")
@training_options("data", "method")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@training_options("model", "epochs", "seed", "batch_size", "lr", "lr_schedule", "threads", "device", "precision",
                  "select", "val_break", "compare_selections", "ema_decay", "workers", "augment", "augment_options",
                  "params", "data_options", "model_options", "robustness", "config_file")
@click.option("--overwrite", is_flag=True, help="Replace a run already in --out (the old run stays until the new one "
              "is complete).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint (with --epochs N "
              "for more epochs than it had).")
@trust_code_option(help="With --resume: build a model that the checkpoint names as package.module:factory "
                        "(imports and runs that module).")
@click.option("--quiet", is_flag=True, help="No per-epoch log or progress bar.")
def train_command(out, config_file, overwrite, resume, quiet, trust_code, **flags):
    """Train a model and write DIR/model.safetensors, DIR/config.json and DIR/metrics.json."""
    from contextlib import ExitStack

    from ..data import load_dataset
    from ..train import distributed
    from ..train import run as runs
    from ..train.checkpoint import latest_checkpoint, read_meta
    from ..train.config import TrainConfig
    from ..train.overrides import apply_overrides

    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other")
    if not str(out).strip():
        raise UserError("--out is empty; name the run directory to write")
    out = Path(out)
    runs.check_out_dir(out, overwrite=True)  # not a file, not inside a run's checkpoints (checked again when locked)
    latest = latest_checkpoint(out / runs.CHECKPOINTS) if resume and out.is_dir() else None
    if resume and latest is None:
        raise UserError(f"{out}: nothing to resume (no checkpoint in {out / runs.CHECKPOINTS}); train without --resume "
                        "to start a run there")
    if latest is not None and not config_file:
        config = TrainConfig.from_dict(read_meta(latest)["config"], where=str(latest / "meta.json"))
    else:
        config = TrainConfig.load(config_file) if config_file else TrainConfig()
    config = apply_overrides(config, *split_fields(flags))
    config = with_augment(with_robustness(config, flags.get("robustness")), flags.get("augment"),
                          flags.get("augment_options"))
    config = runs.resolved_config(config)
    if latest is not None and not config_file and flags.get("model") is None:  # the model named by a file
        runs.check_trusted_model(config.model, f"{out}: its checkpoint", trust_code)
    if resume:  # refused before any data is loaded: nothing to resume, fewer epochs, another config
        runs.check_resume(out, config)
    data = load_dataset(config.data, seed=config.seed, **config.data_options)  # bad data: refused before --out
    distributed.init_from_env()  # under torchrun: join the process group (gloo on CPU)
    try:
        use_threads(config.threads)
        main_process = distributed.is_main_process()
        with ExitStack() as stack:
            dirs = None

            def prepare():
                nonlocal dirs
                stack.enter_context(runs.run_lock(out))
                dirs = runs.prepare_training(out, config, overwrite=overwrite, resume=resume)
                stack.callback(dirs.abort)

            _on_main(prepare, main_process)  # only the first process locks and writes --out
            log = stderr_log(quiet) if main_process else None
            checkpoint_dir = dirs.checkpoint_dir if dirs is not None else (out / runs.CHECKPOINTS if resume else None)
            output = runs.run_training(config, log=log, progress=not quiet, data=data,
                                       checkpoint_dir=checkpoint_dir, resume=resume)
            _on_main(lambda: runs.save_run(out, output, checkpoints=dirs.checkpoint_dir, staging=dirs.staging),
                     main_process)
        # every process is done with the group's collectives before any of them tears it down (a process
        # leaving first made the other abort at exit, now and then, with "terminate called without an
        # active exception")
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
               + (f"robustness at eps {fmt(robust['eps'])}: PGD acc. {fmt(robust['pgd_accuracy'])}, top-k inter. "
                  f"{fmt(robust['topk_intersection'])}, Kendall {fmt(robust['kendall'])}, "
                  if (robust := test.get("robustness")) else "")
               + f"{output.metrics['train_seconds']:.1f}s -> {out}")


def _on_main(step, main_process: bool) -> None:
    """Run ``step`` on the first process only; under torchrun every process then learns whether it failed
    and with which one-line error, so that the others stop with the same line instead of a lost peer."""
    import torch.distributed as dist

    failure = None
    if main_process:
        try:
            step()
        except UserError as exc:
            failure = exc
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = [str(failure) if failure is not None else None]
        dist.broadcast_object_list(shared, src=0)
        if shared[0] is not None and not main_process:
            raise UserError(shared[0])
    if failure is not None:
        raise failure
