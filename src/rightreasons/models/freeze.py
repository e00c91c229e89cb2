"""Freezing a model for fine-tuning: ``freeze=none|all-but-head|all-but-last-stage`` (a model option of
every model).

The head is a child module named ``fc``, ``head`` or ``classifier`` that holds the last ``nn.Linear`` (else
the last ``nn.Linear``); the last stage is the last module with parameters before the head among its siblings
(``layer4`` of ``resnet18`` / ``resnet34``, ``layer3`` of ``resnet-small``). Frozen BatchNorm layers still
update their running statistics in train mode; ``freeze_bn`` keeps them in eval mode (a forward pre-hook).
"""

from __future__ import annotations

from torch import nn

from ..errors import UserError

FREEZE_MODES = ("none", "all-but-head", "all-but-last-stage")
#: names of a child module taken as the head
HEAD_NAMES = ("fc", "head", "classifier")


def _inside(name: str, module: str) -> bool:
    return module == "" or name == module or name.startswith(module + ".")


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def head_name(model: nn.Module, name: str = "model") -> str:
    """The qualified name of the head of ``model``: a child named ``fc``, ``head`` or ``classifier`` that
    holds the last ``nn.Linear`` (or, without any ``nn.Linear``, has parameters); else the last ``nn.Linear``."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    children = dict(model.named_children())
    for child in HEAD_NAMES:
        if child in children and _has_parameters(children[child]) and (
                not linears or _inside(linears[-1], child)):
            return child
    if not linears or linears[-1] == "":
        raise UserError(f"model {name!r}: option freeze cannot tell its head (no nn.Linear below the model, and "
                        f"no child module named {', '.join(HEAD_NAMES)})")
    return linears[-1]


def last_stage_name(model: nn.Module, head: str, name: str = "model") -> str:
    """The module before the head: among the head's siblings, the last one before it that has parameters
    (looking among the siblings of its parent, and so on up, when there is none)."""
    path = head
    while path:
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name)
        before = []
        for sibling, module in parent.named_children():
            if sibling == child:
                break
            if _has_parameters(module):
                before.append(sibling)
        if before:
            return f"{parent_name}.{before[-1]}" if parent_name else before[-1]
        path = parent_name
    raise UserError(f"model {name!r}: option freeze=all-but-last-stage cannot tell its last stage (no module with "
                    f"parameters before its head {head!r})")


def _eval_mode(module: nn.Module, args) -> None:
    """Forward pre-hook of a frozen BatchNorm layer: always in eval mode (running statistics kept)."""
    module.training = False


def freeze(model: nn.Module, mode: str, name: str = "model", freeze_bn: bool = False) -> list[str]:
    """Set ``requires_grad=False`` on every parameter of ``model`` outside its head (``all-but-head``) or its
    head and last stage (``all-but-last-stage``); returns the names of the modules left trainable.
    ``freeze_bn``: keep the frozen BatchNorm layers in eval mode, so they stop updating running statistics."""
    if mode not in FREEZE_MODES:
        raise UserError(f"model {name!r}: option freeze must be one of {', '.join(FREEZE_MODES)}, got {mode!r}")
    if mode == "none":
        return [""]
    head = head_name(model, name)
    keep = [head] if mode == "all-but-head" else [last_stage_name(model, head, name), head]
    trainable = {id(p) for k in keep for p in model.get_submodule(k).parameters()}
    for p in model.parameters():
        if id(p) not in trainable:
            p.requires_grad_(False)
    if freeze_bn:
        for module_name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(_inside(module_name, k) for k in keep):
                module.register_forward_pre_hook(_eval_mode)
                module.eval()
    return keep
