"""Distributed data parallel training: two processes started by torchrun give the parameters of a
single-process run on the same global batches (rrr and ibp_ex, 20 steps, to 1e-6), and the
static_graph guard refuses the setting that silently breaks input-gradient penalties."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from data_fixtures import make_idx_dir
from helpers import shortcut_splits, tiny_mlp
from rightreasons.errors import UserError
from rightreasons.methods import create_method
from rightreasons.train import TrainConfig, fit
from rightreasons.train.distributed import shard, wrap


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=240, n_test=60)[0]


def cli(args, tmp_path, nproc=None):
    env = {**os.environ, "RIGHTREASONS_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m"] \
        if nproc else [sys.executable, "-m"]
    return subprocess.run(prefix + ["rightreasons", *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


@pytest.mark.parametrize("method", ["rrr", "ibp_ex"])
def test_two_processes_match_one_after_20_steps(tmp_path, idx_dir, method):
    # 200 training images (5/6 of 240), global batch 40 -> 5 steps per epoch, 4 epochs = 20 steps.
    # SGD, because Adam divides by sqrt(v) and so magnifies float32 summation-order noise (~1e-9) on
    # parameters whose gradient is ~0 to ~1e-6 after 20 steps; the gradients themselves agree.
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": "decoy-mnist", "data_options": {"source": str(idx_dir)}, "method": method,
                                  "epochs": 4, "batch_size": 40, "optimizer": "sgd", "lr": 0.05}))
    common = ["train", "--config", config, "--quiet"]
    single = cli(common + ["--out", tmp_path / "single"], tmp_path)
    assert single.returncode == 0, single.stderr
    double = cli(common + ["--out", tmp_path / "ddp"], tmp_path, nproc=2)
    assert double.returncode == 0, double.stderr[-2000:]
    a = load_file(str(tmp_path / "single" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), f"{method}: {key} differs by " \
            f"{(a[key] - b[key]).abs().max().item():.3g}"
    assert (tmp_path / "ddp" / "checkpoints" / "latest").read_text().strip() == "epoch-0004"


def test_shards_cover_the_global_batch_exactly_once():
    index = torch.randperm(37)
    parts = [shard(index, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), index)
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1


@pytest.fixture
def single_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_static_graph_is_refused(single_process_group):
    model = tiny_mlp()
    with pytest.raises(UserError, match="static_graph=True silently breaks input-gradient penalties"):
        wrap(model, create_method("rrr"), static_graph=True)
    wrapped = torch.nn.parallel.DistributedDataParallel(model, static_graph=True)
    data = shortcut_splits(n_train=100, n_eval=20)
    with pytest.raises(UserError, match="static_graph=True"):
        fit(wrapped, create_method("rrr"), data, TrainConfig(method="rrr", epochs=1, batch_size=50))
    fine = torch.nn.parallel.DistributedDataParallel(tiny_mlp(in_shape=(1, 6, 6), classes=2))
    fit(fine, create_method("rrr"), data, TrainConfig(method="rrr", epochs=1, batch_size=50))
