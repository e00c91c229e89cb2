"""Chen et al. 2019 as a benchmark: the chen2019 presets (per-dataset radius and robustness settings), the
``robustness`` training setting (config field, ``train --robustness``, metrics.json, results.csv, summary.md),
the published numbers, and random restarts of the attribution attack."""

import json
import math

import pytest
import torch

from helpers import shortcut_splits, trained_tiny_mlp
from rightreasons.bench import plan_bench
from rightreasons.bench.presets import PRESETS
from rightreasons.bench.published import METRIC_LABELS, published_for
from rightreasons.bench.results import collect_rows, read_results_csv, write_results_csv
from rightreasons.cli import main
from rightreasons.errors import UserError
from rightreasons.metrics.attribution_robustness import attribution_robustness
from rightreasons.metrics.robustness import robustness_report
from rightreasons.report.summary import write_summary
from rightreasons.train import TrainConfig

RADIUS = {"mnist": 0.3, "fashion-mnist": 0.1}
ROBUST_METHODS = ("madry", "ig_norm", "ig_sum_norm")


# ---------------------------------------------------------------------------------------------------------
# the presets


def test_the_bench_command_plans_eight_single_seed_runs(tmp_path, capsys):
    assert main(["bench", "--preset", "chen2019", "--dry-run", "--out", str(tmp_path / "b")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("todo")]
    names = [line.split()[1] for line in lines]
    assert names == [f"{d}-{m}-seed0" for d in RADIUS for m in ("erm", "madry", "ig_norm", "ig_sum_norm")]
    assert not (tmp_path / "b").exists()  # a dry run writes nothing


@pytest.mark.parametrize("name, examples", [("chen2019", 200), ("chen2019-full", 1000)])
def test_refined_specs_have_each_datasets_radius_and_chen_et_als_evaluation(tmp_path, name, examples):
    preset = PRESETS[name]
    assert preset.seeds == 1 and preset.datasets == ("mnist", "fashion-mnist")
    specs = preset.refine(plan_bench(tmp_path, preset=name, threads=1).specs)
    assert len(specs) == 8
    for spec in specs:
        config, data = spec.config, spec.config.data
        if config.method in ROBUST_METHODS:
            assert config.params["eps"] == RADIUS[data]
        assert config.robustness == {"eps": RADIUS[data], "k": 100, "attack_k": 200 if data == "mnist" else 100,
                                     "attack_steps": 100, "step_size": 0.01, "restarts": 3, "ig_steps": 50,
                                     "examples": examples, "region": "all"}
        assert TrainConfig.from_dict(config.to_dict()) == config  # what the worker reads back
    assert all(n.startswith(("paper: ", "ours: ")) for n in preset.notes)


def test_a_given_param_beats_the_presets_per_dataset_radius(tmp_path):
    plan = plan_bench(tmp_path, preset="chen2019", params=("madry.eps=0.2",), threads=1)
    specs = PRESETS["chen2019"].refine(plan.specs, {"madry": {"eps": 0.2}})
    assert {s.config.params["eps"] for s in specs if s.config.method == "madry"} == {0.2}
    assert {s.config.params["eps"] for s in specs if s.config.method == "ig_norm"} == {0.3, 0.1}


def test_the_bench_command_applies_the_per_dataset_settings(tmp_path):
    specs = plan_bench(tmp_path, preset="chen2019", threads=1).specs
    assert {s.config.data: s.config.params["eps"] for s in specs if s.config.method == "madry"} == RADIUS
    assert all(s.config.robustness is not None for s in specs)


def test_published_numbers_of_table_rows():
    assert {p.metric for p in published_for("mnist")} == {"accuracy", "adversarial_accuracy", "topk_intersection",
                                                           "kendall"}
    assert all(m in METRIC_LABELS for m in ("adversarial_accuracy", "topk_intersection", "kendall"))
    got = {(p.method, p.metric): p.value for p in published_for("fashion-mnist")}
    assert got[("ig_sum_norm", "kendall")] == 0.6747 and got[("erm", "adversarial_accuracy")] == 0.0001
    assert len(published_for("mnist")) == len(published_for("fashion-mnist")) == 16


# ---------------------------------------------------------------------------------------------------------
# the robustness field


def test_robustness_field_validation():
    assert TrainConfig().robustness is None
    assert TrainConfig.from_dict({"method": "erm"}).robustness is None  # old configs load
    config = TrainConfig(method="madry", robustness={"eps": 1, "restarts": 2})
    assert config.robustness == {"eps": 1.0, "restarts": 2}
    assert TrainConfig(method="madry", robustness={}).robustness == {}  # eps: madry's training radius
    for bad, message in [({"nope": 1}, "unknown key 'nope'"), ({"eps": -0.1}, "robustness.eps"),
                         ({"eps": math.inf}, "robustness.eps"), ({"examples": 0}, "robustness.examples"),
                         ({"restarts": 1.5}, "robustness.restarts"), ({"step_size": 0}, "robustness.step_size"),
                         ({"region": "half"}, "robustness.region"), ({"ig_steps": True}, "robustness.ig_steps"),
                         ([1], "must be an object")]:
        with pytest.raises(UserError, match=message) as info:
            TrainConfig(method="madry", robustness=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="'robustness.eps': method 'erm' has no eps"):
        TrainConfig(method="erm", robustness={"examples": 8})
    with pytest.raises(UserError, match="config.json: config field 'robustness.k'"):
        TrainConfig.from_dict({"method": "erm", "robustness": {"eps": 0.1, "k": 0}}, where="config.json")


def test_train_with_robustness_writes_it_to_metrics_results_and_summary(tmp_path, capsys):
    bench = tmp_path / "bench"
    run = bench / "runs" / "toy-colors-madry-seed0"
    argv = ["train", "--data", "toy-colors", "--method", "madry", "--epochs", "1", "--threads", "1", "--out", str(run),
            "--quiet", "--robustness", "examples=8", "--robustness", "attack_steps=2", "--robustness", "restarts=2"]
    assert main(argv) == 0
    assert "Kendall" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["robustness"] == {"examples": 8, "attack_steps": 2, "restarts": 2}
    report = json.loads((run / "metrics.json").read_text())["test"]["robustness"]
    assert report["examples"] == 8 and report["restarts"] == 2 and report["eps"] == config["params"]["eps"]
    for key in ("natural_accuracy", "pgd_accuracy", "topk_intersection"):
        assert 0 <= report[key] <= 1
    assert report["pgd_accuracy"] <= report["natural_accuracy"]
    assert report["evaluated"] == 0 or -1 <= report["kendall"] <= 1

    write_results_csv(bench, collect_rows(bench))
    (row,) = read_results_csv(bench / "results.csv")
    assert row["test_robustness_natural_accuracy"] == report["natural_accuracy"]
    assert row["test_robustness_restarts"] == 2
    text = write_summary(bench).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    for label in ("natural acc.", "PGD acc.", "top-k inter.", "Kendall"):
        assert label in header
    assert f"{report['pgd_accuracy']:.3f}" in text


def test_train_robustness_flag_errors_are_one_line(tmp_path, capsys):
    argv = ["train", "--data", "toy-colors", "--method", "erm", "--epochs", "1", "--out", str(tmp_path / "r"),
            "--robustness", "examples=8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "robustness.eps" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------------------
# restarts: restart 0 starts at x (the deterministic attack), the others at seeded uniform points


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    splits = shortcut_splits(n_train=300, n_eval=60)
    return splits, trained_tiny_mlp(splits)


KWARGS = dict(attack_eps=0.3, attack_steps=5, k=5, step_size=0.05, ig_steps=8, max_examples=30)


def test_one_restart_is_the_deterministic_attack(setup):
    splits, model = setup
    state = torch.random.get_rng_state()
    assert attribution_robustness(model, splits.val, **KWARGS, restarts=1, seed=7) == \
        attribution_robustness(model, splits.val, **KWARGS)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_restarts_are_reproducible_and_never_report_a_higher_kendall(setup):
    splits, model = setup
    state = torch.random.get_rng_state()
    one = attribution_robustness(model, splits.val, **KWARGS)
    three = attribution_robustness(model, splits.val, **KWARGS, restarts=3, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is never used
    assert three == attribution_robustness(model, splits.val, **KWARGS, restarts=3, seed=0)
    assert three["evaluated"] == one["evaluated"] > 0
    assert three["kendall"] < one["kendall"]  # here the random restarts find a lower tau
    other = attribution_robustness(model, splits.val, **KWARGS, restarts=3, seed=1)
    assert other["kendall"] <= one["kendall"]


def test_robustness_report_passes_restarts_through(setup):
    splits, model = setup
    kwargs = dict(max_examples=20, pgd_steps=3, attack_steps=3, step_size=0.05, k=5, ig_steps=4, batch_size=8)
    one = robustness_report(model, splits.val, 0.3, **kwargs)
    two = robustness_report(model, splits.val, 0.3, **kwargs, restarts=2, seed=3)
    assert one["restarts"] == 1 and two["restarts"] == 2
    assert two == robustness_report(model, splits.val, 0.3, **kwargs, restarts=2, seed=3)
    assert two["kendall"] <= one["kendall"] and two["pgd_accuracy"] == one["pgd_accuracy"]
    with pytest.raises(UserError, match="restarts"):
        robustness_report(model, splits.val, 0.3, **kwargs, restarts=0)


def test_mnist_trains_the_cnn_with_an_eps_ramp_unless_a_flag_says_otherwise(tmp_path):
    specs = {(s.config.data, s.config.method): s.config for s in plan_bench(tmp_path, preset="chen2019",
                                                                             threads=1).specs}
    for method in ("erm", *ROBUST_METHODS):
        assert (specs["mnist", method].model, specs["mnist", method].epochs) == ("cnn-strided", 6)
        assert (specs["fashion-mnist", method].model, specs["fashion-mnist", method].epochs) == ("mlp", 15)
    for method in ROBUST_METHODS:
        assert (specs["mnist", method].params["warmup_epochs"], specs["mnist", method].params["ramp_epochs"]) == (1, 2)
        assert specs["fashion-mnist", method].params["ramp_epochs"] == 0
    given = plan_bench(tmp_path, preset="chen2019", model="mlp", epochs=3, threads=1).specs
    assert {(s.config.model, s.config.epochs) for s in given} == {("mlp", 3)}
