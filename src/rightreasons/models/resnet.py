"""Residual networks (He et al. 2016, "Deep residual learning for image recognition"): ``resnet18`` and
``resnet34`` (ImageNet layout) and ``resnet-small`` (the CIFAR layout, ResNet-8/20/32/...).

The parameter names and shapes of ``resnet18`` / ``resnet34`` are torchvision's (``conv1``, ``bn1``,
``layer1.0.conv1``, ..., ``layer2.0.downsample.0``, ``fc``), so a torchvision state dict loads with
``--model-option weights=PATH``. ``resnet-small`` uses the same names with three stages.

The forward pass is a plain graph of standard layers (``Conv2d``, ``BatchNorm2d``, ``ReLU``,
``MaxPool2d``, ``AdaptiveAvgPool2d``, ``torch.flatten``, ``Linear`` and ``out + identity``), with no
in-place operation and no data-dependent branch, so ``torch.fx.symbolic_trace`` reads it.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import UserError
from .builtin import MAX_WIDTH, widths
from .registry import register_model

#: the most blocks a stage of ``resnet-small`` takes
MAX_BLOCKS = 512


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a shortcut: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), the
    shortcut a 1x1 conv + BN (``downsample``) when the stride or the channel count changes, else x."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu2(out)


class ResNet(nn.Module):
    """A stem (``conv1``, ``bn1``, ``relu``, and ``maxpool`` in the ImageNet layout), stages ``layer1`` ..
    ``layerN`` of :class:`BasicBlock` (the first block of every stage but the first halves the image),
    global average pooling (``avgpool``) and a linear head (``fc``).

    Parameters: ``in_channels``, ``num_classes``; ``blocks`` and ``channels``: blocks and channels per stage;
    ``imagenet_stem``: a 7x7 stride-2 conv and a 3x3 stride-2 max pool, else a 3x3 stride-1 conv;
    ``zero_init_residual``: start every block's last BN at weight 0, so each block begins as the identity.
    """

    def __init__(self, in_channels: int, num_classes: int, blocks: Sequence[int], channels: Sequence[int],
                 imagenet_stem: bool = True, zero_init_residual: bool = False):
        super().__init__()
        first = channels[0]
        if imagenet_stem:
            self.conv1 = nn.Conv2d(in_channels, first, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, first, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if imagenet_stem else None
        self.stages: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(blocks)))
        width = first
        for i, (name, count, out) in enumerate(zip(self.stages, blocks, channels)):
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(width, out, stride)] + [BasicBlock(out, out) for _ in range(count - 1)]
            setattr(self, name, nn.Sequential(*layers))
            width = out
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def _in_channels(name: str, input_shape) -> int:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise UserError(f"model {name!r} needs image inputs (C, H, W), got input shape {shape}")
    return shape[0]


def _flag(name: str, option: str, value) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"model {name!r}: option {option} must be true or false, got {value!r}")
    return value


@register_model("resnet18")
def resnet18(input_shape, num_classes, zero_init_residual: bool = False) -> ResNet:
    """ResNet-18 (He et al. 2016), ImageNet layout: 7x7 stride-2 conv, max pool, 4 stages of [2, 2, 2, 2]
    basic blocks with 64/128/256/512 channels, average pool, linear head; torchvision's parameter names."""
    c = _in_channels("resnet18", input_shape)
    return ResNet(c, num_classes, (2, 2, 2, 2), (64, 128, 256, 512), True,
                  _flag("resnet18", "zero_init_residual", zero_init_residual))


@register_model("resnet34")
def resnet34(input_shape, num_classes, zero_init_residual: bool = False) -> ResNet:
    """ResNet-34 (He et al. 2016), ImageNet layout: as ``resnet18`` with [3, 4, 6, 3] blocks per stage."""
    c = _in_channels("resnet34", input_shape)
    return ResNet(c, num_classes, (3, 4, 6, 3), (64, 128, 256, 512), True,
                  _flag("resnet34", "zero_init_residual", zero_init_residual))


@register_model("resnet-small")
def resnet_small(input_shape, num_classes, blocks=1, width: int = 16,
                 zero_init_residual: bool = False) -> ResNet:
    """A CIFAR-style ResNet (He et al. 2016, section 4.2): 3x3 stride-1 conv, 3 stages of basic blocks with
    ``width``, 2 x ``width`` and 4 x ``width`` channels (16/32/64), average pool, linear head. ``blocks``:
    blocks per stage (1 = ResNet-8, 3 = ResNet-20, 5 = ResNet-32), or a list of three. Shortcuts that change
    shape are 1x1 convs (the paper's option B), named ``downsample`` as in ``resnet18``."""
    name = "resnet-small"
    c = _in_channels(name, input_shape)
    counts = blocks if isinstance(blocks, (list, tuple)) else [blocks] * 3
    if len(counts) != 3 or not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= MAX_BLOCKS
                                   for b in counts):
        raise UserError(f"model {name!r}: option blocks must be an integer in [1, {MAX_BLOCKS}] or a list of three, "
                        f"got {blocks!r}")
    (width,) = widths(name, "width", width)
    if 4 * width > MAX_WIDTH:
        raise UserError(f"model {name!r}: option width must be at most {MAX_WIDTH // 4} (the last stage has "
                        f"4 x width channels), got {width}")
    return ResNet(c, num_classes, tuple(counts), (width, 2 * width, 4 * width), False,
                  _flag(name, "zero_init_residual", zero_init_residual))
