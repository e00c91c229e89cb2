"""bench.plan_bench: preset settings under the flags, scoped and unscoped --param / --data-option, one-line
errors for a scope or parameter the benchmark does not have, and a command line that plans the same runs."""

import shlex
import warnings

import pytest

from rightreasons.bench import BenchPlan, plan_bench
from rightreasons.bench.presets import PRESETS, Preset
from rightreasons.cli import main
from rightreasons.errors import UserError
from rightreasons.train import TrainConfig


def by_name(plan: BenchPlan) -> dict:
    return {s.name: s.config for s in plan.specs}


def test_preset_settings_with_a_flag_overriding_them(tmp_path):
    plan = plan_bench(tmp_path, preset="ross2017", epochs=3, lr_schedule="cosine", threads=1)
    preset = PRESETS["ross2017"]
    assert plan.preset is preset
    assert plan.datasets == list(preset.datasets) and plan.methods == ["erm", "rrr"]
    assert plan.seeds == preset.seeds and (plan.jobs, plan.threads) == (1, 1)
    assert len(plan.specs) == len(preset.datasets) * 2 * preset.seeds
    for config in by_name(plan).values():
        assert (config.model, config.lr) == ("mlp-ross", 1e-3)  # the preset's
        assert (config.epochs, config.lr_schedule) == (3, "cosine")  # the flags'
    rrr = by_name(plan)["decoy-mnist-rrr-seed0"].params
    assert (rrr["lam"], rrr["target"], rrr["norm"]) == (10.0, "log_prob_sum", "squared_l2")  # the preset's params


def test_flags_replace_the_presets_datasets_methods_and_seeds(tmp_path):
    plan = plan_bench(tmp_path, preset="heo2023", data="decoy-mnist", methods="erm, rrr", seeds=1, lr=0.01,
                      params=("rrr.lam=4",), threads=1)
    assert [s.name for s in plan.specs] == ["decoy-mnist-erm-seed0", "decoy-mnist-rrr-seed0"]
    assert all(s.config.lr == 0.01 for s in plan.specs)
    assert plan.specs[1].config.params["lam"] == 4.0
    assert plan.specs[0].config.data_options == {}  # the preset's options are for decoy-mnist-half only


def test_without_a_preset_the_training_config_defaults(tmp_path):
    plan = plan_bench(tmp_path, data="decoy-mnist,decoy-mnist-half", methods="erm", threads=1)
    default = TrainConfig()
    assert plan.preset is None and plan.seeds == 3 and plan.methods == ["erm"]
    assert [s.config.model for s in plan.specs if s.config.seed == 0] == ["mlp", "cnn-strided"]
    assert all((s.config.lr, s.config.lr_schedule) == (default.lr, default.lr_schedule) for s in plan.specs)
    assert "erm" in plan_bench(tmp_path, data="decoy-mnist", seeds=1, threads=1).methods  # the 'mask' set


def test_scoped_and_unscoped_params_and_data_options(tmp_path):
    plan = plan_bench(tmp_path, data="decoy-mnist,decoy-mnist-half", methods="erm,rrr,cdep,pgd_ex", seeds=1,
                      params=("lam=2", "rrr.lam=7", "pgd_ex.eps=0.2"),
                      data_options=("val=decorrelated", "decoy-mnist.minority=0.1"), threads=1)
    configs = by_name(plan)
    for data in ("decoy-mnist", "decoy-mnist-half"):
        assert configs[f"{data}-rrr-seed0"].params["lam"] == 7.0  # its own scope, given after the unscoped one
        assert configs[f"{data}-cdep-seed0"].params["lam"] == 2.0  # unscoped: every method that has lam
        assert configs[f"{data}-pgd_ex-seed0"].params["eps"] == 0.2
        assert "lam" not in configs[f"{data}-pgd_ex-seed0"].params and configs[f"{data}-erm-seed0"].params == {}
        assert all(configs[f"{data}-{m}-seed0"].data_options["val"] == "decorrelated" for m in plan.methods)
    assert configs["decoy-mnist-erm-seed0"].data_options["minority"] == 0.1
    assert "minority" not in configs["decoy-mnist-half-erm-seed0"].data_options


@pytest.mark.parametrize("kwargs, message", [
    (dict(params=("cdep.lam=1",)),
     "--param cdep.lam=1: 'cdep' is not one of the methods of this benchmark (erm, rrr)"),
    (dict(data_options=("toy-colors.n_train=5",)),
     "--data-option toy-colors.n_train=5: 'toy-colors' is not one of the datasets of this benchmark (decoy-mnist)"),
    (dict(params=("eta=1",)), "--param eta=1: no method of this benchmark has a parameter 'eta'"),
    (dict(params=("lam",)), "--param 'lam': expected KEY=VALUE"),
    (dict(data=None), "bench: give --data (comma-separated datasets) or --preset"),
    (dict(data="nope"), "unknown dataset 'nope'"),
    (dict(methods="erm,nope"), "unknown method 'nope'"),
    (dict(preset="nope"), "unknown preset 'nope'"),
    (dict(jobs=0), "bench: jobs must be a whole number of at least 1, got 0"),
])
def test_user_errors_are_one_line(tmp_path, kwargs, message):
    with pytest.raises(UserError) as info:
        plan_bench(tmp_path, **{"data": "decoy-mnist", "methods": "erm,rrr", "threads": 1, **kwargs})
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not tmp_path.joinpath("runs").exists()


def test_unregistered_preset_methods_are_skipped_with_a_warning(tmp_path):
    preset = Preset(name="mine", title="t", datasets=("decoy-mnist",), methods=("erm", "not-a-method"), seeds=1)
    with pytest.warns(UserWarning, match="preset mine: not registered here, skipped: not-a-method"):
        plan = plan_bench(tmp_path, preset=preset, threads=1)
    assert plan.methods == ["erm"] and plan.preset is preset
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_bench(tmp_path, preset=preset, methods="erm", threads=1)  # methods given: the preset's not read


def test_threads_default_to_the_cores_over_the_jobs(tmp_path, monkeypatch):
    from rightreasons.bench import plan as plan_module

    monkeypatch.setattr(plan_module, "available_cores", lambda: 8)
    assert plan_bench(tmp_path, data="decoy-mnist", methods="erm", jobs=3).threads == 2
    assert plan_bench(tmp_path, data="decoy-mnist", methods="erm", jobs=16).threads == 1
    assert all(s.config.threads == 1 for s in plan_bench(tmp_path, data="decoy-mnist", methods="erm", jobs=16).specs)


def parse_command(command: str) -> tuple[str, dict]:
    """``rightreasons bench --flag value ...`` -> (out, plan_bench keyword arguments)."""
    words = shlex.split(command)
    assert words[:2] == ["rightreasons", "bench"] and len(words) % 2 == 0
    kwargs: dict = {"params": (), "data_options": (), "axes": ()}
    numbers = {"seeds": int, "epochs": int, "batch_size": int, "jobs": int, "threads": int, "lr": float}
    for flag, value in zip(words[2::2], words[3::2]):
        key = flag.removeprefix("--").replace("-", "_")
        if key in ("param", "data_option"):
            kwargs[key + "s"] += (value,)
        elif key == "axis":
            kwargs["axes"] += (value,)
        else:
            assert key not in kwargs, flag
            kwargs[key] = numbers.get(key, str)(value)
    return kwargs.pop("out"), kwargs


def test_the_command_plans_the_same_runs(tmp_path):
    out = tmp_path / "my bench"  # a space: the command must quote it
    plan = plan_bench(out, preset="ross2017", methods="rrr", seeds=2, epochs=4, batch_size=32, lr=0.002,
                      params=("lam=3", "rrr.norm=l1"), data_options=("toy-colors.n_train=50",), jobs=2, threads=1)
    assert plan.command.startswith("rightreasons bench --preset ross2017 --data decoy-mnist,toy-colors --methods rrr ")
    again_out, kwargs = parse_command(plan.command)
    assert again_out == str(out)
    again = plan_bench(again_out, **kwargs)
    assert again.command == plan.command
    assert [(s.name, s.dir, s.config) for s in again.specs] == [(s.name, s.dir, s.config) for s in plan.specs]
    assert (again.datasets, again.methods, again.seeds, again.jobs, again.threads) == (
        plan.datasets, plan.methods, plan.seeds, plan.jobs, plan.threads)
    assert not out.exists()


def test_the_bench_command_prints_the_same_command_line(tmp_path, capsys):
    plan = plan_bench(tmp_path / "b", preset="heo2023", methods="erm,rrr", seeds=1, epochs=2,
                      params=("rrr.lam=3",), data_options=("val=train",), threads=1)
    assert main(shlex.split(plan.command)[1:] + ["--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == plan.command
    assert [line.split()[1] for line in lines[:-1]] == [s.name for s in plan.specs]
    assert not (tmp_path / "b").exists()


def test_threads_as_an_axis_beside_the_seeds(tmp_path):
    from rightreasons.bench.plan import plan_bench, thread_counts

    plan = plan_bench(tmp_path, data="decoy-mnist", methods="rrr", seeds=2, threads="1,2")
    assert [s.name for s in plan.specs] == ["decoy-mnist-rrr-seed0-threads1", "decoy-mnist-rrr-seed0-threads2",
                                            "decoy-mnist-rrr-seed1-threads1", "decoy-mnist-rrr-seed1-threads2"]
    assert [s.config.threads for s in plan.specs] == [1, 2, 1, 2]
    assert "--threads 1,2" in plan.command
    single = plan_bench(tmp_path, data="decoy-mnist", methods="rrr", seeds=1, threads=2)
    assert [s.name for s in single.specs] == ["decoy-mnist-rrr-seed0"]  # one count: names as before
    assert thread_counts("2, 1,2") == [2, 1] and thread_counts(None) == []
    for bad in ("1,x", "0", [True]):
        with pytest.raises(UserError):
            plan_bench(tmp_path, data="decoy-mnist", methods="rrr", seeds=1, threads=bad)
