"""Data-parallel training with PyTorch's DistributedDataParallel (gloo on CPU, nccl on GPUs).

Start it with ``torchrun --nproc_per_node=N -m rightreasons train ...``: every process builds the
same data and model, walks the same seeded global batch order, and takes its contiguous share of
each global batch. The whole method loss (clean pass, attacks, bounds, input-gradient penalties) runs
inside one DDP forward, so every model call is seen by DDP and gradients are averaged once per step;
each share's loss is scaled by ``world * n_local / n_global``, so the averaged gradient equals the
single-process gradient of the global batch for every per-example-mean loss.

``static_graph=True`` is refused here, also on a model the user wrapped themselves (measured:
static_graph=True with an input-gradient penalty gives silently wrong gradients).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from ..batch import Batch
from ..devices import model_device, resolve_device
from ..errors import UserError
from ..methods.base import LossOutput, Method, StepContext


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside distributed training."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return world()[0] == 0


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (no-op otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":  # one GPU per process: the local rank's
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def training_device(name: str) -> torch.device:
    """The device ``name`` resolves to; under torchrun a CUDA device without an index is the local rank's GPU."""
    device = resolve_device(name)
    if device.type == "cuda" and world()[1] > 1 and (name.strip() in ("auto", "cuda")):
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_cores() -> int:
    """Threads per process: ``OMP_NUM_THREADS`` if set, else the cores shared out among the processes
    of one run on this machine."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def check_static_graph(model: nn.Module) -> None:
    """Refuse a model wrapped in DDP with ``static_graph=True`` (wrong input-gradient penalties)."""
    for module in model.modules():
        if isinstance(module, nn.parallel.DistributedDataParallel) and getattr(module, "static_graph", False):
            raise UserError("DistributedDataParallel(static_graph=True) silently breaks input-gradient penalties; "
                            "wrap the model without static_graph")


class MethodStep(nn.Module):
    """The method's loss as a module, so that DDP sees every model call of one training step."""

    def __init__(self, model: nn.Module, method: Method):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, batch: Batch, ctx: StepContext) -> LossOutput:
        return self.method.loss(self.model, batch, ctx)


def wrap(model: nn.Module, method: Method, static_graph: bool = False) -> nn.Module:
    """DDP around the method's loss. ``static_graph`` exists only to be refused."""
    if static_graph:
        raise UserError("static_graph=True silently breaks input-gradient penalties; refusing to use it")
    check_static_graph(model)
    device = model_device(model)
    return nn.parallel.DistributedDataParallel(MethodStep(model, method), static_graph=False,
                                               find_unused_parameters=False,
                                               device_ids=[device.index] if device.type == "cuda" else None)


def shard(index: torch.Tensor, rank: int, size: int) -> torch.Tensor:
    """This process's contiguous share of a global batch's indices (as even as possible)."""
    return torch.tensor_split(index, size)[rank]


def loss_scale(n_local: int, n_global: int, size: int) -> float:
    """Factor that turns DDP's average of per-process means into the global per-example mean."""
    return size * n_local / n_global if n_global else 0.0


def all_reduce_mean(value: float, weight: float) -> float:
    """Weighted mean of ``value`` over processes (for logging)."""
    if world()[1] == 1:
        return value
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value * weight, weight], dtype=torch.float64, device=on)
    dist.all_reduce(t)
    return (t[0] / t[1]).item() if t[1] else float("nan")


def destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["MethodStep", "available_cores", "barrier", "check_static_graph", "destroy", "init_from_env",
           "is_main_process", "local_cores", "loss_scale", "shard", "training_device", "world", "wrap"]
