"""Options of every model (weights=PATH, freeze, freeze_bn) and the optional timm: / torchvision: specs."""

import sys
import types
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from rightreasons.errors import UserError
from rightreasons.models import create_model, load_weights
from rightreasons.models.registry import imports_code
from rightreasons.train import TrainConfig, build_model

SHAPE = (3, 16, 16)


def trained_state(model, seed=0):
    """Change every weight and the BN running statistics, so that a load is visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    model.train()
    model(torch.rand(8, *SHAPE, generator=g))
    model.eval()
    return {k: v.clone().contiguous() for k, v in model.state_dict().items()}


def one_line(info, *parts):
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("form", ["safetensors", "pt", "state_dict", "model", "ddp"])
def test_weights_round_trip_gives_identical_outputs(tmp_path, form):
    source = create_model("resnet-small", SHAPE, 4)
    state = trained_state(source)
    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pt")
    if form == "safetensors":
        save_file(state, str(path))
    else:
        obj = {"pt": state, "state_dict": {"state_dict": state, "epoch": 3},
               "model": {"model": state, "optimizer": {"lr": 0.1}},
               "ddp": {f"module.{k}": v for k, v in state.items()}}[form]
        torch.save(obj, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model("resnet-small", SHAPE, 4, weights=str(path)).eval()
    x = torch.rand(3, *SHAPE)
    torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)
    assert torch.equal(model.layer2[0].bn1.running_var, state["layer2.0.bn1.running_var"])


def test_a_head_of_another_shape_is_skipped_and_reported(tmp_path):
    state = trained_state(create_model("resnet-small", SHAPE, 10))
    path = tmp_path / "imagenet.safetensors"
    save_file(state, str(path))
    with pytest.warns(UserWarning, match=r"2 tensor\(s\).*fc\.weight \(file \(10, 64\), model \(3, 64\)\)") as rec:
        model = create_model("resnet-small", SHAPE, 3, weights=str(path))
    assert str(path) in str(rec[0].message)
    assert torch.equal(model.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert model.fc.weight.shape == (3, 64)
    fresh = create_model("resnet-small", SHAPE, 3)
    assert load_weights(fresh, path) == {"fc.weight": (10, 64), "fc.bias": (10,)}


def test_files_without_num_batches_tracked_load(tmp_path):
    """torchvision's own ImageNet files predate the counters."""
    state = {k: v for k, v in trained_state(create_model("resnet-small", SHAPE, 2)).items()
             if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = create_model("resnet-small", SHAPE, 2, weights=str(tmp_path / "old.pth"))
    assert torch.equal(model.bn1.running_mean, state["bn1.running_mean"])


def test_weights_work_for_every_kind_of_model(tmp_path, monkeypatch):
    (tmp_path / "weights_models.py").write_text(
        "from torch import nn\n"
        "def net(input_shape, num_classes, width=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.ReLU(),\n"
        "                         nn.Linear(width, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, shape, options in (("mlp", (1, 4, 4), {"hidden": [5]}), ("cnn", (1, 8, 8), {}),
                                 ("weights_models:net", (6,), {"width": 3})):
        source = create_model(name, shape, 2, **options)
        path = tmp_path / "w.safetensors"
        save_file({k: v + 1 for k, v in source.state_dict().items()}, str(path))
        model = create_model(name, shape, 2, weights=str(path), **options)
        x = torch.rand(2, *shape)
        assert not torch.equal(model(x), source(x))
        assert all(torch.equal(v, source.state_dict()[k] + 1) for k, v in model.state_dict().items())


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    text = tmp_path / "notes.pt"
    text.write_text("hello world")
    truncated = tmp_path / "cut.pt"
    torch.save(create_model("resnet-small", SHAPE, 2).state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    mixed = tmp_path / "mixed.pt"
    torch.save({"a": torch.zeros(1), "b": [1, 2]}, mixed)
    for path, part in ((bad, "cannot read it as safetensors"), (text, "cannot read it as a torch file"),
                       (truncated, "cannot read it as a torch file"), (tensor, "holds no state dict"),
                       (mixed, "entry 'b' is a list, not a tensor"),
                       (tmp_path / "absent.safetensors", "cannot read it"), (tmp_path, "not a regular file")):
        with pytest.raises(UserError) as info:
            create_model("resnet-small", SHAPE, 2, weights=str(path))
        one_line(info, str(path), part)


class Payload:
    """Unpickling this would run ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_needs_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    for i, obj in enumerate([Payload(str(marker)), {"conv1.weight": torch.zeros(1), "x": Payload(str(marker))}]):
        path = tmp_path / f"evil{i}.pt"
        torch.save(obj, path)
        with pytest.raises(UserError) as info:
            create_model("resnet-small", SHAPE, 2, weights=str(path))
        one_line(info, str(path), "refused", "weights_only")
    assert not marker.exists()
    custom = tmp_path / "custom.pt"
    torch.save({"state_dict": create_model("mlp", (4,), 2).state_dict(), "cls": Payload}, custom)
    with pytest.raises(UserError, match="Payload") as info:
        create_model("mlp", (4,), 2, weights=str(custom))
    one_line(info, str(custom))


def test_wrong_keys_name_up_to_five_and_the_file(tmp_path):
    path = tmp_path / "mlp.safetensors"
    save_file(create_model("mlp", SHAPE, 2).state_dict(), str(path))
    with pytest.raises(UserError) as info:
        create_model("resnet-small", SHAPE, 2, weights=str(path))
    one_line(info, str(path), "does not fit model 'resnet-small'", "missing conv1.weight, bn1.weight", "more",
             "unexpected 1.bias, 1.weight, 3.bias, 3.weight, 5.bias and 1 more")
    partial = dict(create_model("resnet-small", SHAPE, 2).state_dict())
    del partial["layer1.0.conv2.weight"]
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(UserError) as info:
        create_model("resnet-small", SHAPE, 2, weights=str(tmp_path / "partial.pt"))
    one_line(info, "missing layer1.0.conv2.weight; unexpected extra.weight")


def test_non_finite_weights_are_refused(tmp_path):
    state = create_model("resnet-small", SHAPE, 2).state_dict()
    state["layer1.0.bn1.running_var"][0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    with pytest.raises(UserError) as info:
        create_model("resnet-small", SHAPE, 2, weights=str(tmp_path / "nan.safetensors"))
    one_line(info, "layer1.0.bn1.running_var", "not finite")


@pytest.mark.parametrize("options, part", [
    ({"weights": 3}, "option weights"), ({"weights": ""}, "option weights"),
    ({"freeze": "head"}, "option freeze must be one of none, all-but-head, all-but-last-stage"),
    ({"freeze_bn": "yes"}, "option freeze_bn"), ({"freeze_bn": True}, "needs freeze=all-but-head"),
])
def test_bad_generic_options_are_one_line(options, part):
    with pytest.raises(UserError) as info:
        create_model("resnet-small", SHAPE, 2, **options)
    one_line(info, "'resnet-small'", part)


def trainable(model):
    return [k for k, p in model.named_parameters() if p.requires_grad]


def test_freeze_leaves_exactly_the_head_or_the_head_and_last_stage():
    full = create_model("resnet18", (3, 32, 32), 5)
    assert len(trainable(full)) == 62
    assert trainable(create_model("resnet18", (3, 32, 32), 5, freeze="none")) == trainable(full)
    assert trainable(create_model("resnet18", (3, 32, 32), 5, freeze="all-but-head")) == ["fc.weight", "fc.bias"]
    last = trainable(create_model("resnet18", (3, 32, 32), 5, freeze="all-but-last-stage"))
    assert len(last) == 17 and all(k.startswith(("layer4.", "fc.")) for k in last)  # 9 + 6 in layer4, 2 in fc
    small = trainable(create_model("resnet-small", SHAPE, 5, freeze="all-but-last-stage"))
    assert len(small) == 11 and all(k.startswith(("layer3.", "fc.")) for k in small)
    assert trainable(create_model("mlp", (1, 4, 4), 2, freeze="all-but-head")) == ["5.weight", "5.bias"]
    assert trainable(create_model("mlp", (1, 4, 4), 2, freeze="all-but-last-stage")) == [
        "3.weight", "3.bias", "5.weight", "5.bias"]
    assert trainable(create_model("cnn", (1, 8, 8), 2, freeze="all-but-last-stage")) == [
        "6.weight", "6.bias", "8.weight", "8.bias"]


def test_a_head_named_classifier_is_taken_whole(tmp_path, monkeypatch):
    (tmp_path / "freeze_models.py").write_text(
        "from torch import nn\n"
        "class Named(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1))\n"
        "        self.pool = nn.AdaptiveAvgPool2d(1)\n"
        "        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))\n"
        "    def forward(self, x):\n"
        "        return self.classifier(self.pool(self.body(x)))\n"
        "def named(input_shape, num_classes):\n    return Named()\n"
        "def convs(input_shape, num_classes):\n    return nn.Sequential(nn.Conv2d(1, num_classes, 3), nn.Flatten())\n"
        "def linear(input_shape, num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("freeze_models:named", (1, 4, 4), 2, freeze="all-but-head")
    assert trainable(model) == ["classifier.1.weight", "classifier.1.bias", "classifier.3.weight", "classifier.3.bias"]
    model = create_model("freeze_models:named", (1, 4, 4), 2, freeze="all-but-last-stage")
    assert trainable(model)[:2] == ["body.0.weight", "body.0.bias"] and len(trainable(model)) == 8
    with pytest.raises(UserError) as info:
        create_model("freeze_models:convs", (1, 4, 4), 2, freeze="all-but-head")
    one_line(info, "'freeze_models:convs'", "cannot tell its head")
    with pytest.raises(UserError) as info:
        create_model("freeze_models:linear", (1, 4, 4), 2, freeze="all-but-last-stage")
    one_line(info, "'freeze_models:linear'", "cannot tell its last stage")


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_a_training_step_changes_only_trainable_parameters(freeze_bn):
    from rightreasons.train.trainer import make_optimizer

    torch.manual_seed(0)
    model = create_model("resnet-small", SHAPE, 3, freeze="all-but-last-stage", freeze_bn=freeze_bn)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    optimizer = make_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1))
    x, y = torch.rand(6, *SHAPE), torch.randint(0, 3, (6,))
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    after = model.state_dict()
    names = dict(model.named_parameters())
    for k, p in names.items():
        assert torch.equal(after[k], before[k]) != p.requires_grad, k
    frozen_stats = [k for k in after if k.endswith("running_mean") and not k.startswith("layer3.")]
    assert all(torch.equal(after[k], before[k]) == freeze_bn for k in frozen_stats)
    assert not torch.equal(after["layer3.0.bn1.running_mean"], before["layer3.0.bn1.running_mean"])
    assert model.training and model.layer3.training and (model.bn1.training != freeze_bn)


def test_options_flow_through_a_config_to_build_model(tmp_path):
    path = tmp_path / "w.safetensors"
    state = trained_state(create_model("resnet-small", SHAPE, 2, blocks=2))
    save_file(state, str(path))
    config = TrainConfig(data="folder:unused", model="resnet-small",
                         model_options={"blocks": 2, "weights": str(path), "freeze": "all-but-head"})
    model = build_model(TrainConfig.from_dict(config.to_dict()), SHAPE, 2)  # as config.json is read back
    assert trainable(model) == ["fc.weight", "fc.bias"]
    assert torch.equal(model.layer2[1].conv1.weight, state["layer2.1.conv1.weight"])


# -- timm: and torchvision: ---------------------------------------------------------------------------


def test_missing_optional_packages_are_one_line_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(UserError) as info:
        create_model("timm:resnet50", SHAPE, 2)
    one_line(info, "'timm:resnet50'", "optional package timm", "pip install timm", "weights=PATH")


def test_a_torchvision_that_fails_at_import_is_one_line(tmp_path, monkeypatch):
    package = tmp_path / "torchvision"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    (package / "models" / "__init__.py").write_text("")
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError) as info:
        create_model("torchvision:resnet50", SHAPE, 2)
    one_line(info, "optional package torchvision", "torchvision::nms", "download.pytorch.org/whl/cpu", "weights=PATH")
    assert "torchvision" not in sys.modules


def fake_package(monkeypatch, name, function):
    calls = []

    def build(model_name, **kwargs):
        calls.append((model_name, kwargs))
        in_chans = kwargs.get("in_chans", 3)
        return create_model("resnet-small", (in_chans, 8, 8), kwargs["num_classes"], width=kwargs.get("width", 16))

    module = types.ModuleType(name)
    setattr(module, function, build)
    monkeypatch.setitem(sys.modules, name, module)
    return module, calls


def test_timm_models_are_built_without_pretrained_weights(monkeypatch, tmp_path):
    _, calls = fake_package(monkeypatch, "timm", "create_model")
    model = create_model("timm:resnet50", (1, 8, 8), 3, width=8)
    assert calls == [("resnet50", {"pretrained": False, "num_classes": 3, "in_chans": 1, "width": 8})]
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    path = tmp_path / "w.safetensors"
    save_file({k: v + 1 for k, v in model.state_dict().items()}, str(path))
    loaded = create_model("timm:resnet50", (1, 8, 8), 3, width=8, weights=str(path), freeze="all-but-head")
    assert torch.equal(loaded.conv1.weight, model.conv1.weight + 1) and trainable(loaded) == ["fc.weight", "fc.bias"]
    assert calls[-1][1] == {"pretrained": False, "num_classes": 3, "in_chans": 1, "width": 8}
    for option in ("pretrained", "checkpoint_path"):
        with pytest.raises(UserError) as info:
            create_model("timm:resnet50", (1, 8, 8), 3, **{option: True})
        one_line(info, f"option {option} is not available", "weights=PATH")
    with pytest.raises(UserError) as info:
        create_model("timm:", (1, 8, 8), 3)
    one_line(info, "expected timm:NAME")
    with pytest.raises(UserError) as info:
        create_model("timm:resnet50", (64,), 3)
    one_line(info, "needs image inputs")


def test_torchvision_models_are_built_without_weights(monkeypatch):
    torchvision = types.ModuleType("torchvision")
    models, calls = fake_package(monkeypatch, "torchvision.models", "get_model")
    torchvision.models = models
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    model = create_model("torchvision:resnet18", (3, 8, 8), 4)
    assert calls == [("resnet18", {"weights": None, "num_classes": 4})]
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 4)
    with pytest.raises(UserError) as info:
        create_model("torchvision:resnet18", (1, 8, 8), 4)
    one_line(info, "3-channel images", "(1, 8, 8)")


def test_only_package_module_factory_names_import_code():
    assert imports_code("my_models:net") and not imports_code("timm:resnet50")
    assert not imports_code("torchvision:resnet18") and not imports_code("resnet18")


def test_a_saved_run_loads_without_the_weights_file_it_started_from(tmp_path):
    from rightreasons.train import load_run, run_training, save_run

    start = create_model("mlp", (1, 6, 6), 2)
    save_file({k: v.contiguous() for k, v in start.state_dict().items()}, str(tmp_path / "start.safetensors"))
    from helpers import shortcut_splits

    data = shortcut_splits(n_train=64, n_eval=32)
    config = TrainConfig(data="toy-colors", model="mlp", method="erm", epochs=1,
                         model_options={"weights": str(tmp_path / "start.safetensors")})
    output = run_training(config, data=data)
    save_run(tmp_path / "run", output)
    (tmp_path / "start.safetensors").unlink()
    model, loaded, _ = load_run(tmp_path / "run", data=data)
    assert loaded.model_options["weights"].endswith("start.safetensors")  # the config still says where it began
    for (name, a), b in zip(output.model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
