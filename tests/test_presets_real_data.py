"""Presets of the downloaded datasets (Heo et al.'s ISIC and plant comparisons, Rieger et al.'s ISIC comparison):
their runs, the origin of every setting, a one-line error without the data, the published numbers beside
ours; and ``bench`` on every dataset spec (``folder:``, ``csv:``, ``PREFIX:PATH``), paths checked up front."""

import csv
import json
import shlex

import pytest

from own_data_fixtures import make_folder, make_table
from replicas_isic_plant import write_isic, write_plant
from rightreasons.bench import plan_bench
from rightreasons.bench.presets import HEO_METHODS, PRESETS, path_presets
from rightreasons.bench.published import SOURCES, published_for
from rightreasons.cli import main
from rightreasons.errors import UserError
from rightreasons.methods import METHODS
from rightreasons.report.summary import render_markdown, shared_data_options, summarize

REAL = {"heo2023-isic": "isic", "heo2023-plant": "plant", "rieger2020-isic": "isic"}
#: the settings each real-data preset must say the origin of
SETTINGS = ("model", "epochs", "optimizer", "lr", "batch_size", "image_size")


@pytest.fixture(scope="module")
def isic_heo(tmp_path_factory):
    return write_isic(tmp_path_factory.mktemp("isic") / "isic", "heo")


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    return write_plant(tmp_path_factory.mktemp("plant") / "plant")


def test_the_real_data_presets_and_their_origins():
    assert path_presets() == sorted(REAL)
    for name, prefix in REAL.items():
        preset = PRESETS[name]
        assert preset.path_prefix == prefix and preset.datasets == () and preset.needs_path
        assert all(m in METHODS.names() for m in preset.methods)
        for setting in SETTINGS:
            assert preset.origins[setting] in ("paper", "paper's code", "ours"), (name, setting)
        assert all(n.startswith(("paper: ", "paper's code: ", "ours: ")) for n in preset.notes)
        assert preset.download and preset.data_title
    assert PRESETS["heo2023-isic"].methods == PRESETS["heo2023-plant"].methods == HEO_METHODS == (
        "erm", "group_dro", "rrr", "cdep", "avg_ex", "pgd_ex", "ibp_ex", "pgd_ex+rrr", "ibp_ex+rrr")
    assert PRESETS["rieger2020-isic"].methods == ("erm", "rrr", "cdep")


@pytest.mark.parametrize("name, options, settings", [
    ("heo2023-isic", {"layout": "heo", "size": 299},
     dict(epochs=50, lr=3e-4, optimizer="adamw", weight_decay=1e-4, batch_size=16, select="val_worst_group_accuracy",
          lr_schedule="constant", model="cnn")),
    ("heo2023-plant", {"fold": 0, "size": 224},
     dict(epochs=50, lr=3e-5, optimizer="adamw", weight_decay=1e-5, batch_size=16, select="val_worst_group_accuracy",
          lr_schedule="constant", model="cnn")),
    ("rieger2020-isic", {"layout": "rieger", "dilate": 20, "size": 299},
     dict(epochs=10, lr=1e-3, optimizer="adam", weight_decay=1e-3, batch_size=32, select="last",
          lr_schedule="constant", model="cnn")),
])
def test_a_preset_with_its_path_resolves_to_the_papers_runs(name, options, settings, tmp_path, isic_heo, plant):
    path = str(plant.root if REAL[name] == "plant" else isic_heo.root)
    plan = plan_bench(tmp_path / "b", preset=name, data_path=path, seeds=1, threads=1)
    spec = f"{REAL[name]}:{path}"
    assert plan.datasets == [spec] and plan.methods == list(PRESETS[name].methods)
    assert plan.preset.data_path == path and plan.preset.datasets == (spec,)
    label = f"{REAL[name]}-{REAL[name]}"  # the replicas' folders are named isic and plant
    assert [s.name for s in plan.specs] == [f"{label}-{m}-seed0" for m in PRESETS[name].methods]
    for s in plan.specs:
        assert s.config.data == spec and s.config.data_options == options
        assert {k: getattr(s.config, k) for k in settings} == settings
    if name == "rieger2020-isic":
        cdep = next(s.config.params for s in plan.specs if s.config.method == "cdep")
        assert (cdep["score"], cdep["activation_rule"], cdep["bias_rule"]) == ("softmax", "cd", "proportional")
    # --data with the preset's prefix is the same plan; the command line reproduces it
    again = plan_bench(tmp_path / "b", preset=name, data=spec, seeds=1, threads=1)
    assert [(s.name, s.config) for s in again.specs] == [(s.name, s.config) for s in plan.specs]
    words = shlex.split(plan.command)
    assert words[2:6] == ["--preset", name, "--data-path", path]
    flags = {"--epochs": 2, "--batch-size": 4}
    given = plan_bench(tmp_path / "b", preset=name, data_path=path, seeds=1, threads=1, epochs=2, batch_size=4)
    assert {(s.config.epochs, s.config.batch_size) for s in given.specs} == {tuple(flags.values())}


def test_a_preset_without_its_data_names_the_dataset_and_where_to_get_it(tmp_path, capsys):
    for name in REAL:
        with pytest.raises(UserError) as info:
            plan_bench(tmp_path, preset=name, threads=1)
        message = str(info.value)
        assert "\n" not in message and f"preset {name} needs" in message and "--data-path PATH" in message
        assert ("robust_mlx" if name.startswith("heo") else "ISIC archive") in message
    code = main(["bench", "--preset", "heo2023-plant", "--out", str(tmp_path / "b"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "plant phenotyping" in err
    code = main(["bench", "--preset", "heo2023-isic", "--data-path", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "b"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'nowhere'}: no such directory" in err and "ISIC" in err
    assert not (tmp_path / "b").exists()
    with pytest.raises(UserError, match="--data-path is for the presets of downloaded datasets"):
        plan_bench(tmp_path, preset="ross2017", data_path=str(tmp_path), threads=1)


def test_published_numbers_of_heo_et_al_on_plant_and_isic():
    isic = {p.method: (p.value, p.std) for p in published_for("isic:/any/path", data_options={"layout": "heo"})}
    plant = {p.method: (p.value, p.std) for p in published_for("plant:/x")}
    assert set(isic) == set(plant) == set(HEO_METHODS)
    assert isic["erm"] == (0.559, 0.023) and isic["pgd_ex+rrr"] == (0.675, 0.011)
    assert plant["ibp_ex+rrr"] == (0.801, 0.003) and plant["cdep"] == (0.542, 0.247)
    assert all(p.source == "heo2023" and p.metric == "robust_accuracy" for p in published_for("plant:/x"))
    # Heo et al.'s ISIC numbers are for their layout only; a bare prefix is no dataset
    assert published_for("isic:/x", data_options={"layout": "rieger"}) == published_for("isic:/x") == []
    assert published_for("isic:") == [] and published_for("plant") == []
    assert "ISIC" in SOURCES["heo2023"].where


def test_the_summary_matches_published_numbers_by_prefix_and_shared_options():
    rows = [{"dataset": "isic:/d/isic", "method": "erm", "test_worst_group_accuracy": 0.5,
             "data_options": json.dumps({"layout": "heo", "size": 8})},
            {"dataset": "isic:/d/isic", "method": "erm", "test_worst_group_accuracy": 0.7,
             "data_options": json.dumps({"layout": "heo", "size": 16})},
            {"dataset": "isic:/d/other", "method": "erm", "test_worst_group_accuracy": 0.6,
             "data_options": json.dumps({"layout": "rieger", "dilate": 20})}]
    assert shared_data_options(rows) == {"isic:/d/isic": {"layout": "heo"},
                                         "isic:/d/other": {"layout": "rieger", "dilate": 20}}
    text = render_markdown(summarize(rows), None, shared_data_options(rows))
    heo, rieger = text.split("## isic:/d/other")
    assert "| erm | 2 | 0.600 ± 0.141 |" in heo and "0.559 +- 0.023 robust acc. [heo2023] |" in heo
    assert "[heo2023]" not in rieger.split("## Sources")[0]


def test_bench_runs_a_tiny_preset_end_to_end_with_the_published_number_beside_ours(tmp_path, isic_heo, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--preset", "heo2023-isic", "--data-path", str(isic_heo.root), "--methods", "erm", "--seeds",
            "1", "--epochs", "1", "--data-option", "size=8", "--threads", "1", "--no-report", "--quiet", "--out",
            str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    (run,) = (out / "runs").iterdir()
    assert run.name == "isic-isic-erm-seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == f"isic:{isic_heo.root}"  # the path as given
    assert config["data_options"] == {"layout": "heo", "size": 8}
    assert (config["optimizer"], config["batch_size"], config["epochs"]) == ("adamw", 16, 1)
    with open(out / "results.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    ours = float(row["test_worst_group_accuracy"])
    line = next(x for x in (out / "summary.md").read_text().splitlines() if x.startswith("| erm |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == f"{ours:.3f}" and cells[-1] == "0.559 +- 0.023 robust acc. [heo2023]"
    assert "[heo2023] Heo, Piratla, Wicker & Weller" in (out / "summary.md").read_text()
    assert main(argv) == 0  # resumed: nothing to redo
    assert "1 runs (1 reused, 0 trained)" in capsys.readouterr().out


def test_bench_accepts_folder_csv_and_downloaded_dataset_specs(tmp_path, isic_heo, plant, capsys):
    folder = make_folder(tmp_path / "my images", n=16)
    table = make_table(tmp_path / "rows.csv")
    plan = plan_bench(tmp_path / "b", data=f"folder:{folder},csv:{table},isic:{isic_heo.root},plant:{plant.root}",
                      methods="erm", seeds=1, data_options=("isic.size=8", f"plant:{plant.root}.size=12"), threads=1)
    assert [s.name for s in plan.specs] == ["folder-my_images-erm-seed0", "csv-rows.csv-erm-seed0",
                                            "isic-isic-erm-seed0", "plant-plant-erm-seed0"]
    assert [s.config.data for s in plan.specs] == [f"folder:{folder}", f"csv:{table}", f"isic:{isic_heo.root}",
                                                   f"plant:{plant.root}"]
    assert [s.config.data_options for s in plan.specs] == [{}, {}, {"size": 8}, {"size": 12}]
    # two specs that would share a run name get a hash each
    other = make_folder(tmp_path / "b2" / "my images", n=16)
    names = [s.name for s in plan_bench(tmp_path / "b", data=f"folder:{folder},folder:{other}", methods="erm",
                                        seeds=1, threads=1).specs]
    assert len(set(names)) == 2 and all(n.startswith("folder-my_images-") and len(n) > 30 for n in names)
    for spec, message in ((f"folder:{tmp_path / 'nope'}", f"{tmp_path / 'nope'}: no such file or directory"),
                          ("csv:", "give a path after 'csv:'"), ("isic:", "give a path after 'isic:'")):
        with pytest.raises(UserError, match="bench: dataset") as info:
            plan_bench(tmp_path / "b", data=spec, methods="erm", threads=1)
        assert message in str(info.value)
    # a folder benchmark trains end to end
    out = tmp_path / "bench"
    assert main(["bench", "--data", f"folder:{folder}", "--methods", "erm", "--seeds", "1", "--epochs", "1",
                 "--threads", "1", "--no-report", "--quiet", "--out", str(out)]) == 0
    assert "| erm | 1 |" in capsys.readouterr().out
    assert (out / "runs" / "folder-my_images-erm-seed0" / "metrics.json").is_file()
