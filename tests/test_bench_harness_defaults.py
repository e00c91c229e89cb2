"""A benchmark run finished by an older version (its config.json lacks fields added since) still counts as
finished for the same plan: a missing field is its default, not a difference."""

import json

from rightreasons.bench.harness import RunSpec, run_state
from rightreasons.train import TrainConfig
from rightreasons.train.config import with_field_defaults


def test_a_config_without_the_newer_fields_is_the_same_config(tmp_path, monkeypatch):
    config = TrainConfig(data="toy-colors", method="erm", epochs=1)
    old = config.to_dict()
    for field in ("device", "precision", "augment"):
        del old[field]
    assert with_field_defaults(old) == config.to_dict()
    assert with_field_defaults({**old, "precision": "bf16"})["precision"] == "bf16"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(old))
    (run / "metrics.json").write_text("{}")  # read_finished_run is replaced below
    import rightreasons.bench.harness as harness

    monkeypatch.setattr(harness, "read_finished_run", lambda d: (old, {"test": {}}))
    assert run_state(RunSpec(config, run)) == "finished"
    assert run_state(RunSpec(config.replace(precision="bf16"), run)) == "conflict"
