"""bench --axis: data options (mask budgets, corruptions, any other) as axes beside seeds and thread counts:
the plan's runs, names and configs, values checked before any run (exit 2, one line), a tiny real bench whose
runs trained with the budgets asked for, resume, results.csv's axis column and summary.md's rows per value."""

import csv
import json
import re
import statistics
import sys

import click
import pytest
from click.testing import CliRunner

from data_fixtures import make_idx_dir
from rightreasons import load_dataset
from rightreasons.bench import RunSpec, plan_bench, run_state
from rightreasons.bench.axes import merge_axes, parse_axes, read_axes
from rightreasons.cli import main
from rightreasons.errors import UserError
from test_bench_plan import parse_command

AXES = ("annotated_count=10,all", "mask_corruption=none,dilate:2")


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return make_idx_dir(tmp_path_factory.mktemp("mnist"), n_train=200, n_test=60)[0]


@pytest.fixture(autouse=True)
def no_real_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGHTREASONS_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------------ the plan


def test_a_two_axis_plan_is_the_product_with_stable_names(tmp_path):
    plan = plan_bench(tmp_path, data="decoy-mnist", methods="erm,rrr", seeds=2, threads=1, axes=AXES)
    expected = [(m, s, c, k) for m in ("erm", "rrr") for s in (0, 1) for c in ("10", "all")
                for k in ("none", "dilate:2")]
    assert [s.name for s in plan.specs] == [
        f"decoy-mnist-{m}-seed{s}-annotated_count={c}-mask_corruption={k.replace(':', '_')}" for m, s, c, k in expected]
    for spec, (method, seed, count, kind) in zip(plan.specs, expected):
        assert (spec.config.method, spec.config.seed) == (method, seed)
        assert spec.axes == {"annotated_count": count, "mask_corruption": kind}
        # the config records exactly the options set: "all" and "none" are the options left out
        assert spec.config.data_options == {**({"annotated_count": 10} if count == "10" else {}),
                                            **({"mask_corruption": "dilate:2"} if kind != "none" else {})}
    assert plan.axes == {"annotated_count": ["10", "all"], "mask_corruption": ["none", "dilate:2"]}
    assert "--axis annotated_count=10,all --axis mask_corruption=none,dilate:2" in plan.command

    # the command plans the same runs
    out, kwargs = parse_command(plan.command)
    again = plan_bench(out, **kwargs)
    assert again.command == plan.command
    assert [(s.dir, s.config, s.axes) for s in again.specs] == [(s.dir, s.config, s.axes) for s in plan.specs]


def test_without_an_axis_names_and_configs_are_as_before(tmp_path):
    plain = plan_bench(tmp_path, data="decoy-mnist", methods="rrr", seeds=1, threads=1)
    assert [s.name for s in plain.specs] == ["decoy-mnist-rrr-seed0"] and plain.specs[0].axes == {}
    assert plain.axes == {} and "--axis" not in plain.command
    every = plan_bench(tmp_path, data="decoy-mnist", methods="rrr", seeds=1, threads=1, axes=("annotated_count=all",))
    assert [s.name for s in every.specs] == ["decoy-mnist-rrr-seed0-annotated_count=all"]
    assert every.specs[0].config == plain.specs[0].config  # "all": the option not set


def test_axes_after_thread_counts_and_values_normalised(tmp_path):
    plan = plan_bench(tmp_path, data="decoy-mnist", methods="rrr", seeds=1, threads="1,2",
                      axes=("annotated_fraction=0.50,0.5,1", "mask_corruption=dilate,dilate:1,none"))
    assert [s.name for s in plan.specs] == [
        f"decoy-mnist-rrr-seed0-threads{t}-annotated_fraction={f}-mask_corruption={k}"
        for t in (1, 2) for f in ("0.5", "1") for k in ("dilate", "none")]
    assert [s.config.data_options.get("annotated_fraction") for s in plan.specs[:4]] == [0.5, 0.5, 1, 1]
    # any other data option is passed through; values that would share a name get a hash
    (axis,) = parse_axes(["minority=0.1,a:b,a_b"])
    assert axis.labels == ["0.1", "a:b", "a_b"] and axis.part("0.1") == "minority=0.1"
    assert re.fullmatch(r"minority=a_b-[0-9a-f]{8}", axis.part("a:b")) and axis.part("a:b") != axis.part("a_b")
    other = plan_bench(tmp_path, data="decoy-mnist", methods="erm", seeds=1, threads=1, axes=("minority=0.1,0.2",))
    assert [s.config.data_options for s in other.specs] == [{"minority": 0.1}, {"minority": 0.2}]


def test_a_finished_run_with_another_axis_value_in_its_config_is_a_conflict(tmp_path, idx_dir):
    plan = plan_bench(tmp_path, data="decoy-mnist", methods="erm", seeds=1, epochs=1, threads=1,
                      data_options=(f"source={idx_dir}",), axes=("annotated_count=5",))
    (spec,) = plan.specs
    from rightreasons.train import run_training, save_run

    save_run(spec.dir, run_training(spec.config))
    assert run_state(spec) == "finished"
    other = spec.config.replace(data_options={**spec.config.data_options, "annotated_count": 6})
    assert run_state(RunSpec(other, spec.dir)) == "conflict"


def test_marker_axes_merge_in_the_new_order(tmp_path):
    assert read_axes(tmp_path) == {}
    assert merge_axes({"annotated_count": ["5", "40", "all"]}, {"annotated_count": ["5", "20", "40"], "k": ["x"]}) == {
        "annotated_count": ["5", "20", "40", "all"], "k": ["x"]}
    (tmp_path / "bench.json").write_text("not json")
    assert read_axes(tmp_path) == {}


# ------------------------------------------------------------------------------------------------ refusals


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def entry(args):
    """The console script: ``sys.exit(main())``."""
    sys.exit(main(list(args)))


@pytest.mark.parametrize("args, message", [
    (["--axis", "annotated_count=ten"],
     "bench: --axis annotated_count=ten: option annotated_count must be a whole number >= 0, got 'ten'"),
    (["--axis", "annotated_count=10,-3"], "bench: --axis annotated_count=-3: option annotated_count must be"),
    (["--axis", "annotated_fraction=0.5,2"], "bench: --axis annotated_fraction=2: option annotated_fraction must be"),
    (["--axis", "mask_corruption=none,blur:1"], "bench: --axis mask_corruption=blur:1: option mask_corruption: unknown "
                                                "kind 'blur'"),
    (["--axis", "mask_corruption=shift:x"], "bench: --axis mask_corruption=shift:x: option mask_corruption: shift"),
    (["--axis", "annotated_cnt=5"], "bench: --axis annotated_cnt=5: unknown option annotated_cnt"),
    (["--axis", "annotated_count=5", "--data-option", "annotated_count=3"],
     "bench: --axis annotated_count and --data-option annotated_count=3: give annotated_count as an axis or"),
    (["--axis", "mask_corruption=drop", "--data-option", "decoy-mnist.mask_corruption=dilate"],
     "--data-option decoy-mnist.mask_corruption=dilate"),
    (["--axis", "annotated_count=5", "--axis", "annotated_count=6"], "bench: --axis annotated_count is given twice"),
    (["--axis", "annotated_count=5,all", "--axis", "annotated_fraction=0.5"],
     "bench: decoy-mnist with --axis annotated_count=5, annotated_fraction=0.5: give annotated_fraction or "
     "annotated_count, not both"),
    (["--axis", "annotated_count=5", "--data-option", "annotated_fraction=0.5"], "give annotated_fraction or"),
    (["--axis", "annotated_count"], "bench: --axis 'annotated_count': expected KEY=V1,V2,..."),
    (["--axis", "annotated_count=,"], "bench: --axis annotated_count=: give at least one value"),
    (["--axis", "decoy-mnist.annotated_count=5"], "KEY must be the name of a data option"),
    (["--axis", "seed=1,2"], "'seed' is a column of results.csv"),
])
def test_bad_axes_are_one_line_errors_before_any_run(tmp_path, args, message):
    out = tmp_path / "b"
    result = CliRunner().invoke(entry, ["bench", "--data", "decoy-mnist", "--methods", "rrr", "--threads", "1",
                                        "--out", str(out), "--no-report", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ a real bench


def read_csv(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def run_files(out):
    return {str(p): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*")) if p.is_file()
            and p.name != "train.log"}


def table(text):
    """summary.md's table rows as dicts of header -> cell."""
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("| method"))
    header = [h.strip() for h in head.split("|")[1:-1]]
    return [dict(zip(header, [c.strip() for c in line.split("|")[1:-1]])) for line in lines
            if line.startswith("| rrr")]


def test_a_budget_curve_bench(tmp_path, idx_dir, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--data", "decoy-mnist", "--methods", "rrr", "--seeds", "1", "--epochs", "1", "--threads", "1",
            "--data-option", f"source={idx_dir}", "--out", str(out)]
    names = {c: f"decoy-mnist-rrr-seed0-annotated_count={c}" for c in ("5", "20", "40", "all", "1000")}

    # the dry run lists the runs with their axis values, and writes nothing
    assert main([*args, "--axis", "annotated_count=5,40,all", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1:3] for line in lines[:-1]] == [[names[c], f"annotated_count={c}"]
                                                          for c in ("5", "40", "all")]
    assert "--axis annotated_count=5,40,all" in lines[-1] and not out.exists()

    assert main([*args, "--axis", "annotated_count=5,40,all", "--images", "2"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(names[c] for c in ("5", "40", "all"))
    everything = int(load_dataset("decoy-mnist", seed=0, source=str(idx_dir)).train.has_mask.sum())
    assert everything == 167
    for count, wanted in (("5", 5), ("40", 40), ("all", everything)):
        run = out / "runs" / names[count]
        config = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert config["data_options"].get("annotated_count") == (None if count == "all" else wanted)
        assert metrics["train_annotated"] == wanted  # what the run trained with
        data = load_dataset(config["data"], seed=config["seed"], **config["data_options"])
        assert int(data.train.has_mask.sum()) == wanted  # and what its config gives, loaded here

    header, rows = read_csv(out / "results.csv")
    assert header[:4] == ["dataset", "method", "annotated_count", "seed"]
    assert [(r["annotated_count"], r["train_annotated"], r["run"]) for r in rows] == [
        ("5", "5", names["5"]), ("40", "40", names["40"]), ("all", "167", names["all"])]

    summary = table((out / "summary.md").read_text())
    assert [(r["annotated_count"], r["runs"]) for r in summary] == [("5", "1"), ("40", "1"), ("all", "1")]
    for cells, row in zip(summary, rows):
        assert cells["worst-group acc."] == f"{float(row['test_worst_group_accuracy']):.3f}"
        assert cells["worst-group min"] == f"{float(row['test_worst_group_accuracy']):.3f}"
    html = (out / "report.html").read_text()
    assert "<th>annotated_count</th>" in html and "<td>40</td>" in html and "rrr annotated_count=40" in html

    # resume: nothing redone
    before = run_files(out)
    assert main([*args, "--axis", "annotated_count=5,40,all", "--no-report"]) == 0
    assert "3 finished, 0 to do" in capsys.readouterr().err
    assert run_files(out) == before

    # more values: only the new ones run; one that fails (more than the data has) skips no other value
    assert main([*args, "--axis", "annotated_count=5,1000,20,40,all", "--no-report", "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "3 finished, 2 to do" in err and f"FAILED {names['1000']}" in err and "has only 167 annotated" in err
    assert f"{names['20']}: worst-group" in err
    assert all(before[f] == stamp for f, stamp in run_files(out).items() if f in before)
    _, rows = read_csv(out / "results.csv")
    assert [(r["annotated_count"], r["train_annotated"]) for r in rows] == [
        ("5", "5"), ("20", "20"), ("40", "40"), ("all", "167")]
    assert [r["annotated_count"] for r in table((out / "summary.md").read_text())] == ["5", "20", "40", "all"]
    assert read_axes(out) == {"annotated_count": ["5", "1000", "20", "40", "all"]}


# ------------------------------------------------------------------------------------------------ summary


def test_summary_rows_per_axis_value_in_the_order_given():
    from rightreasons.report.summary import render_markdown, summarize

    rows = [{"dataset": "d", "method": "a", "annotated_count": 100, "test_worst_group_accuracy": 0.9},
            {"dataset": "d", "method": "a", "annotated_count": 10, "test_worst_group_accuracy": 0.5},
            {"dataset": "d", "method": "a", "annotated_count": 10, "test_worst_group_accuracy": 0.7},
            {"dataset": "d", "method": "a", "annotated_count": "all", "test_worst_group_accuracy": 0.95},
            {"dataset": "d", "method": "b", "annotated_count": 10, "test_worst_group_accuracy": 0.2},
            {"dataset": "d", "method": "b", "annotated_count": None, "test_worst_group_accuracy": 0.3}]
    items = summarize(rows, {"annotated_count": ["10", "100", "all"]})["d"]
    assert [(i.method, i.axes["annotated_count"], i.runs) for i in items] == [
        ("a", "10", 2), ("a", "100", 1), ("a", "all", 1), ("b", "10", 1), ("b", None, 1)]  # best method first
    ten = items[0].stats
    assert ten["test_worst_group_accuracy"].mean == pytest.approx(0.6)
    assert ten["test_worst_group_accuracy"].std == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert ten["test_worst_group_accuracy_min"].mean == 0.5
    text = render_markdown({"d": items})
    assert "| method | annotated_count | runs | worst-group acc. | worst-group min |" in text
    assert "| a | 10 | 2 | 0.600 ± 0.141 | 0.500 |" in text and "| b | unset | 1 | 0.300 | 0.300 |" in text
    assert [m.method for m in summarize(rows)["d"]] == ["a", "b"]  # no axes: one row per method, as before


def test_user_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="given twice"):
        parse_axes(["annotated_count=1", "annotated_count=2"])
