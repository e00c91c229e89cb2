"""``rightreasons robustness`` and ``metrics.robustness.robustness_report``: natural and PGD accuracy and
attribution robustness of saved runs at their training radius (or --eps), as a table or strict JSON;
runs without a radius and missing runs are one-line errors with exit code 2."""

import json

import pytest
import torch

from helpers import shortcut_splits, tiny_mlp
from rightreasons.cli import main
from rightreasons.metrics import robustness_report
from rightreasons.metrics.robustness import training_eps

DATA = ["--data", "toy-colors", "--data-option", "n_train=300", "--data-option", "n_val=50",
        "--data-option", "n_test=100"]
FAST = ["--examples", "12", "--attack-steps", "3", "--pgd-steps", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method, params in (("madry", ["--param", "eps=0.05", "--param", "steps=2"]), ("erm", [])):
        out[method] = str(root / method)
        assert main(["train", *DATA, "--method", method, *params, "--epochs", "1", "--threads", "1",
                     "--out", out[method], "--quiet"]) == 0
    return out


def _json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_json_on_two_runs_has_every_field_in_range(runs, capsys):
    rows = _json(capsys, ["robustness", runs["madry"], runs["erm"], "--eps", "0.05", *FAST, "--json"])
    assert [r["method"] for r in rows] == ["madry", "erm"] and [r["run"] for r in rows] == [runs["madry"], runs["erm"]]
    for r in rows:
        assert r["eps"] == 0.05 and r["region"] == "all" and r["examples"] == 12 and r["attack_steps"] == 3
        assert 0 <= r["pgd_accuracy"] <= r["natural_accuracy"] <= 1
        assert r["evaluated"] == round(r["natural_accuracy"] * 12) and r["misclassified"] == 12 - r["evaluated"]
        assert r["k"] == 6  # a quarter of the 25 pixels of a 5x5 image
        if r["evaluated"]:
            assert 0 <= r["topk_intersection"] <= 1 and -1 <= r["kendall"] <= 1


def test_the_default_radius_is_the_runs_own_and_the_table_has_one_row_per_run(runs, capsys):
    rows = _json(capsys, ["robustness", runs["madry"], *FAST, "--json"])
    assert rows[0]["eps"] == 0.05  # the run's --param eps=0.05
    assert main(["robustness", runs["madry"], runs["erm"], "--eps", "0.1", *FAST]) == 0
    out = capsys.readouterr().out
    assert "madry" in out and "erm" in out and "0.100" in out


def test_region_mask_moves_only_masked_features(runs, capsys):
    (row,) = _json(capsys, ["robustness", runs["madry"], "--region", "mask", *FAST, "--json"])
    assert row["region"] == "mask" and 0 <= row["pgd_accuracy"] <= row["natural_accuracy"]


def test_a_run_without_a_radius_needs_eps(runs, capsys):
    capsys.readouterr()
    assert main(["robustness", runs["madry"], runs["erm"], *FAST]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "--eps" in captured.err and "'erm'" in captured.err
    assert captured.out == ""  # refused before any run is evaluated


def test_a_missing_run_is_one_line(tmp_path, capsys):
    capsys.readouterr()
    assert main(["robustness", str(tmp_path / "nothing"), "--eps", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing" in err


def test_training_eps_reads_the_method_parameter_or_its_default():
    assert training_eps("madry", {}) == 0.1 and training_eps("madry", {"eps": "0.3"}) == 0.3
    assert training_eps("ig_sum_norm", {}) == 0.1 and training_eps("pgd_ex", {}) == 1.0
    assert training_eps("erm", {}) is None and training_eps("rrr", {}) is None


def test_report_library_function_progress_and_eps_zero():
    dataset = shortcut_splits(n_train=10, n_eval=30).test
    model = tiny_mlp(classes=2)
    model.train()
    calls = []
    report = robustness_report(model, dataset, 0.0, max_examples=25, batch_size=10, attack_steps=2, k=4,
                               progress=lambda done, total: calls.append((done, total)))
    assert calls == [(10, 25), (20, 25), (25, 25)]
    assert model.training  # mode restored
    assert report["pgd_accuracy"] == report["natural_accuracy"]  # eps 0: the attack cannot move
    if report["evaluated"]:
        assert report["topk_intersection"] == 1.0  # nor can the attribution attack
    strong = robustness_report(model, dataset, 0.5, max_examples=25, attack_steps=2, k=4)
    assert strong["pgd_accuracy"] <= strong["natural_accuracy"] == report["natural_accuracy"]
    assert torch.equal(dataset.x, shortcut_splits(n_train=10, n_eval=30).test.x)  # inputs untouched


def test_region_mask_moves_only_the_masked_features(monkeypatch):
    import rightreasons.metrics.robustness as module
    from rightreasons.ops.masked_pgd import masked_pgd

    moved = []

    def spy(model, x, *args, **kwargs):
        x_adv = masked_pgd(model, x, *args, **kwargs)
        moved.append((x_adv != x).flatten(1))
        return x_adv

    monkeypatch.setattr(module, "masked_pgd", spy)
    dataset = shortcut_splits(n_train=10, n_eval=30).test
    model = tiny_mlp(classes=2)
    for region in ("mask", "all"):
        moved.clear()
        report = robustness_report(model, dataset, 0.5, region=region, max_examples=20, attack_steps=2, k=4)
        assert 0 <= report["pgd_accuracy"] <= report["natural_accuracy"] and report["region"] == region
        changed = torch.cat(moved)
        patch = dataset.mask[:20].flatten(1)
        if region == "mask":
            assert changed.any() and not (changed & ~patch).any()
        else:
            assert (changed & ~patch).any()
