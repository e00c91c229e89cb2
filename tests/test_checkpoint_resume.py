"""Checkpoints: exact resume (bit for bit) for erm, rrr and a perturbation method, survival of a
kill -9 in the middle of a checkpoint write, and clear errors for corrupt or tampered checkpoints."""

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers import shortcut_splits
from rightreasons.methods import create_method
from rightreasons.train import NonFiniteLossError, TrainConfig, fit
from rightreasons.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from rightreasons.train.run import build_model

TESTS = Path(__file__).parent


class Interrupt(Exception):
    pass


def stop_after(epoch):
    def log(line):
        if line.startswith(f"epoch {epoch}/"):
            raise Interrupt(line)

    return log


def config_for(method, epochs=4):
    # a dropout model would also exercise the global RNG stream; the built-in MLP has none, so the
    # perturbation method's generator and the shuffling carry the randomness here
    return TrainConfig(method=method, epochs=epochs, batch_size=100, seed=7, params={})


def fresh(config, data):
    return build_model(config, data.input_shape, data.num_classes), create_method(config.method)


@pytest.mark.parametrize("method", ["erm", "rrr", "pgd_ex", "ibp_ex"])
def test_resume_is_exact(tmp_path, method):
    data = shortcut_splits(n_train=400, n_eval=100)
    config = config_for(method)
    model, m = fresh(config, data)
    straight = fit(model, m, data, config)

    ckpt = tmp_path / "ckpt"
    model2, m2 = fresh(config, data)
    with pytest.raises(Interrupt):
        fit(model2, m2, data, config, checkpoint_dir=ckpt, log=stop_after(2))
    assert latest_checkpoint(ckpt).name == "epoch-0002"
    model3, m3 = fresh(config, data)  # a new process would start from a fresh model
    resumed = fit(model3, m3, data, config, checkpoint_dir=ckpt, resume=True)
    for (name, p), q in zip(model.named_parameters(), model3.parameters()):
        assert torch.equal(p, q), f"{method}: parameter {name} differs after resume"
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    assert m3.state_dict() == m.state_dict()


def test_resume_exact_with_dropout_and_validation_selection(tmp_path):
    data = shortcut_splits(n_train=400, n_eval=100)
    config = TrainConfig(method="rrr", epochs=4, batch_size=100, seed=3, select="val_accuracy")

    def model_with_dropout():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.ReLU(),
                                   torch.nn.Dropout(0.3), torch.nn.Linear(16, 2))

    a = model_with_dropout()
    ra = fit(a, create_method("rrr"), data, config)
    b = model_with_dropout()
    with pytest.raises(Interrupt):
        fit(b, create_method("rrr"), data, config, checkpoint_dir=tmp_path, log=stop_after(3))
    c = model_with_dropout()
    rc = fit(c, create_method("rrr"), data, config, checkpoint_dir=tmp_path, resume=True)
    assert rc.selected_epoch == ra.selected_epoch
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    from helpers import shortcut_splits
    from rightreasons.methods import create_method
    from rightreasons.train import TrainConfig, fit
    from rightreasons.train import checkpoint
    from rightreasons.train.run import build_model

    real_save = torch.save
    def dying_save(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == {die_at}:
            with open(path, "wb") as fh:
                fh.write(b"half a checkpoint")
                fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, path, *args, **kwargs)
    checkpoint.torch.save = dying_save

    data = shortcut_splits(n_train=400, n_eval=100)
    config = TrainConfig(method="rrr", epochs=4, batch_size=100, seed=7)
    model = build_model(config, data.input_shape, data.num_classes)
    fit(model, create_method("rrr"), data, config, checkpoint_dir={ckpt!r})
""")


def test_kill_minus_9_during_a_checkpoint_write_then_resume(tmp_path):
    ckpt = tmp_path / "ckpt"
    script = KILLER.format(tests=str(TESTS), ckpt=str(ckpt), die_at=3)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert latest_checkpoint(ckpt).name == "epoch-0002"  # the previous complete checkpoint
    assert any(p.name.startswith(".epoch-0003") for p in ckpt.iterdir())  # the half-written one
    load_checkpoint(latest_checkpoint(ckpt))  # intact and verified

    data = shortcut_splits(n_train=400, n_eval=100)
    config = TrainConfig(method="rrr", epochs=4, batch_size=100, seed=7)
    resumed = build_model(config, data.input_shape, data.num_classes)
    fit(resumed, create_method("rrr"), data, config, checkpoint_dir=ckpt, resume=True)
    straight = build_model(config, data.input_shape, data.num_classes)
    fit(straight, create_method("rrr"), data, config)
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters()))
    assert latest_checkpoint(ckpt).name == "epoch-0004"
    assert not any(p.name.startswith(".epoch-") for p in ckpt.iterdir())  # stale temp cleaned


@pytest.fixture
def saved(tmp_path):
    data = shortcut_splits(n_train=200, n_eval=50)
    config = TrainConfig(method="erm", epochs=1, batch_size=100)
    model = build_model(config, data.input_shape, data.num_classes)
    fit(model, create_method("erm"), data, config, checkpoint_dir=tmp_path)
    return tmp_path, latest_checkpoint(tmp_path), data, config


def resume(saved, config=None):
    root, _, data, cfg = saved
    config = config or cfg.replace(epochs=2)
    model = build_model(config, data.input_shape, data.num_classes)
    fit(model, create_method(config.method), data, config, checkpoint_dir=root, resume=True)


def test_flipped_byte_is_detected(saved):
    path = saved[1] / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="model.safetensors: sha256 mismatch"):
        resume(saved)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_tampered_state_with_matching_hash_is_refused_without_unpickling(saved):
    ckpt = saved[1]
    (ckpt / "state.pt").write_bytes(pickle.dumps({"epoch": 1, "x": Evil()}))
    meta = json.loads((ckpt / "meta.json").read_text())
    import hashlib

    meta["sha256"]["state.pt"] = hashlib.sha256((ckpt / "state.pt").read_bytes()).hexdigest()
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        resume(saved)


def test_missing_extra_and_unreadable_files(saved):
    ckpt = saved[1]
    (ckpt / "stray.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="do not match the metadata"):
        resume(saved)
    (ckpt / "stray.bin").unlink()
    (ckpt / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable checkpoint metadata"):
        resume(saved)
    (saved[0] / "latest").write_text("epoch-0042\n")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        resume(saved)


def test_resuming_with_a_different_config_names_the_fields(saved):
    root, _, data, config = saved
    with pytest.raises(CheckpointError, match="different lr, seed"):
        resume(saved, config.replace(epochs=2, lr=0.5, seed=9))


def test_failed_step_keeps_the_last_good_checkpoint_and_skip_mode_continues(tmp_path):
    from test_trainer import ExplodesAtStep

    data = shortcut_splits(n_train=400, n_eval=100)  # 4 steps per epoch
    config = TrainConfig(method="erm", epochs=3, batch_size=100)
    model = build_model(config, data.input_shape, data.num_classes)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 5"):
        fit(model, ExplodesAtStep(5), data, config, checkpoint_dir=tmp_path)
    assert latest_checkpoint(tmp_path).name == "epoch-0001"
    load_checkpoint(latest_checkpoint(tmp_path))

    lines = []
    model = build_model(config, data.input_shape, data.num_classes)
    result = fit(model, ExplodesAtStep(5), data, config.replace(on_nonfinite="skip"), log=lines.append)
    assert [h.get("skipped_batches", 0) for h in result.history] == [0, 1, 0]
    assert any(line.startswith("skipped: non-finite loss at epoch 2, step 5") for line in lines)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_checkpoint_from_before_the_device_precision_augment_and_ema_fields_resumes(tmp_path):
    from rightreasons.train.resume import resume_differences

    data = shortcut_splits(n_train=200, n_eval=50)
    config = config_for("rrr", epochs=2)
    model, method = fresh(config, data)
    straight = fit(model, method, data, config)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupt):
        fit(*fresh(config, data), data, config, checkpoint_dir=ckpt, log=stop_after(1))
    meta_path = latest_checkpoint(ckpt) / "meta.json"
    meta = json.loads(meta_path.read_text())
    for field in ("device", "precision", "augment", "ema_decay"):  # what an older version wrote
        del meta["config"][field]
    meta_path.write_text(json.dumps(meta))
    model3, m3 = fresh(config, data)
    resumed = fit(model3, m3, data, config, checkpoint_dir=ckpt, resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    # a field that really differs is still named
    assert resume_differences({**meta["config"], "precision": "bf16"}, config) == ["precision"]
    assert resume_differences(meta["config"], config.replace(augment={"preset": "flip"})) == ["augment"]
