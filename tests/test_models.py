"""Model registry: built-in shapes, user factories by import path, clear errors."""

import sys

import pytest
import torch
from torch import nn

from rightreasons.errors import UserError
from rightreasons.models import MODELS, create_model


@pytest.mark.parametrize("name", ["mlp", "mlp-wide", "cnn", "cnn-strided"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 5, 5), (3, 28, 28), (1, 9, 13)])
def test_builtin_models_give_logits_of_the_right_shape(name, shape):
    model = create_model(name, shape, 7)
    assert model(torch.rand(4, *shape)).shape == (4, 7)


def test_ross_mlp_has_the_published_layer_sizes():
    model = create_model("mlp-ross", (1, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(784, 50), (50, 30), (30, 10)]


def test_default_mlp_has_two_hidden_layers_of_100():
    model = create_model("mlp", (1, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(784, 100), (100, 100), (100, 10)]


def test_strided_cnn_halves_the_image_twice_without_pooling():
    model = create_model("cnn-strided", (1, 28, 28), 10)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(32 * 7 * 7, 256), (256, 10)]


def test_user_factory_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n"
        "def tiny(input_shape, num_classes, width=3):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], width),"
        " nn.ReLU(), nn.Linear(width, num_classes))\n"
        "def not_a_model(input_shape, num_classes):\n"
        "    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("my_models:tiny", (1, 4, 4), 2, width=5)
    assert model[1].out_features == 5
    with pytest.raises(UserError, match="returned int, not an nn.Module"):
        create_model("my_models:not_a_model", (1, 4, 4), 2)
    with pytest.raises(UserError, match="has no callable 'missing'"):
        create_model("my_models:missing", (1, 4, 4), 2)
    with pytest.raises(UserError, match="cannot import module 'no_such_module_xyz'"):
        create_model("no_such_module_xyz:f", (1, 4, 4), 2)
    with pytest.raises(UserError, match="bad arguments"):
        create_model("my_models:tiny", (1, 4, 4), 2, depth=3)
    sys.modules.pop("my_models", None)


def test_unknown_model_and_bad_input_shape():
    with pytest.raises(UserError, match="unknown model 'resnet9000'; known: cnn, cnn-strided, mlp, mlp-ross, mlp-wide"):
        create_model("resnet9000", (1, 28, 28), 10)
    with pytest.raises(UserError, match=r"needs image inputs \(C, H, W\)"):
        create_model("cnn", (20,), 2)
    assert set(MODELS.names()) >= {"mlp", "mlp-wide", "cnn"}
