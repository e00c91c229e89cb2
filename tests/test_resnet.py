"""Residual networks: torchvision's parameter names and shapes, forward shapes, fx tracing, options."""

import operator

import pytest
import torch
import torch.fx
from torch import nn

from rightreasons.errors import UserError
from rightreasons.models import create_model

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(blocks, channels=(64, 128, 256, 512), in_channels=3, num_classes=1000, stem=7):
    """(key, shape) of torchvision's ResNet state dict, in its order, from its naming rule: conv1, bn1, then
    per stage ``layer{s}`` and block ``b`` conv1/bn1/conv2/bn2 (and downsample.0/1 on a stage's first block
    when the stride or the channel count changes), then fc."""
    out = []

    def bn(prefix, c):
        out.extend((f"{prefix}.{p}", () if p == "num_batches_tracked" else (c,)) for p in BN)

    out.append(("conv1.weight", (channels[0], in_channels, stem, stem)))
    bn("bn1", channels[0])
    previous = channels[0]
    for s, (count, c) in enumerate(zip(blocks, channels), start=1):
        for b in range(count):
            prefix, cin = f"layer{s}.{b}", previous if b == 0 else c
            out.append((f"{prefix}.conv1.weight", (c, cin, 3, 3)))
            bn(f"{prefix}.bn1", c)
            out.append((f"{prefix}.conv2.weight", (c, c, 3, 3)))
            bn(f"{prefix}.bn2", c)
            if b == 0 and (s > 1 or cin != c):
                out.append((f"{prefix}.downsample.0.weight", (c, cin, 1, 1)))
                bn(f"{prefix}.downsample.1", c)
        previous = c
    out += [("fc.weight", (num_classes, channels[-1])), ("fc.bias", (num_classes,))]
    return out


def shapes(model):
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name, blocks, count", [("resnet18", (2, 2, 2, 2), 122), ("resnet34", (3, 4, 6, 3), 218)])
def test_resnet_state_dict_has_torchvisions_keys_and_shapes(name, blocks, count):
    expected = torchvision_keys(blocks, num_classes=7)
    assert len(expected) == count
    assert shapes(create_model(name, (3, 32, 32), 7)) == expected


def test_resnet18_spot_shapes_and_grayscale_stem():
    sd = create_model("resnet18", (1, 28, 28), 5).state_dict()
    assert sd["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["fc.weight"].shape == (5, 512)
    assert sd["conv1.weight"].shape == (64, 1, 7, 7)
    assert "layer1.0.downsample.0.weight" not in sd and "layer2.1.downsample.0.weight" not in sd


@pytest.mark.parametrize("blocks, width", [(1, 16), (3, 16), (2, 8)])
def test_resnet_small_uses_the_same_naming_with_three_stages(blocks, width):
    model = create_model("resnet-small", (3, 32, 32), 10, blocks=blocks, width=width)
    expected = torchvision_keys((blocks,) * 3, (width, 2 * width, 4 * width), num_classes=10, stem=3)
    assert shapes(model) == expected
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)


def test_resnet20_has_nineteen_3x3_convs_and_a_head():
    model = create_model("resnet-small", (3, 32, 32), 10, blocks=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 19 and isinstance(model.fc, nn.Linear)


@pytest.mark.parametrize("name, shape", [
    ("resnet-small", (3, 64, 64)), ("resnet-small", (1, 28, 28)), ("resnet-small", (3, 5, 7)),
    ("resnet18", (3, 64, 64)), ("resnet18", (1, 28, 28)), ("resnet18", (3, 224, 224)),
    ("resnet34", (3, 32, 32)),
])
def test_forward_gives_logits(name, shape):
    model = create_model(name, shape, 4)
    assert model(torch.rand(2, *shape)).shape == (2, 4)


ALLOWED_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear)


@pytest.mark.parametrize("name, options", [("resnet18", {}), ("resnet-small", {"blocks": 2})])
def test_fx_trace_uses_only_standard_layers_and_matches_eager(name, options):
    torch.manual_seed(0)
    model = create_model(name, (3, 32, 32), 3, **options)
    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    for node in traced.graph.nodes:
        if node.op == "call_module":
            assert isinstance(modules[node.target], ALLOWED_MODULES), node.target
        elif node.op == "call_function":
            assert node.target in (torch.flatten, operator.add), node.target
        else:
            assert node.op in ("placeholder", "output"), (node.op, node.target)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    adds = [n for n in traced.graph.nodes if n.target is operator.add]
    assert len(adds) == sum(1 for k in model.state_dict() if k.endswith(".conv2.weight"))
    x = torch.rand(4, 3, 32, 32)
    for train in (False, True):
        model.train(train), traced.train(train)
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


def test_init_kaiming_fan_out_and_zero_init_residual():
    torch.manual_seed(0)
    model = create_model("resnet18", (3, 32, 32), 10)
    w = model.layer4[0].conv1.weight
    assert abs(w.std().item() / (2 / (512 * 9)) ** 0.5 - 1) < 0.05
    assert torch.equal(model.layer1[0].bn2.weight, torch.ones(64)) and torch.equal(model.bn1.bias, torch.zeros(64))
    zeroed = create_model("resnet-small", (3, 8, 8), 2, blocks=2, zero_init_residual=True)
    assert all(not b.bn2.weight.any() for stage in (zeroed.layer1, zeroed.layer2, zeroed.layer3) for b in stage)
    assert zeroed.layer1[0].bn1.weight.all()


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet-small"])
@pytest.mark.parametrize("shape", [(784,), (1, 28), (1, 0, 28)])
def test_non_image_input_shape_is_one_line_naming_model_and_shape(name, shape):
    with pytest.raises(UserError) as info:
        create_model(name, shape, 10)
    message = str(info.value)
    assert "\n" not in message and repr(name) in message and str(tuple(shape)) in message


@pytest.mark.parametrize("options, pattern", [
    ({"blocks": 0}, "option blocks"), ({"blocks": [1, 2]}, "option blocks"), ({"blocks": True}, "option blocks"),
    ({"width": 0}, "option width"), ({"width": 1 << 15}, "option width"),
    ({"zero_init_residual": "yes"}, "zero_init_residual"), ({"depth": 3}, "bad arguments"),
])
def test_resnet_small_refuses_bad_options_in_one_line(options, pattern):
    with pytest.raises(UserError, match=pattern) as info:
        create_model("resnet-small", (3, 8, 8), 2, **options)
    assert "\n" not in str(info.value)
