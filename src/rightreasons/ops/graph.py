"""A model as a list of steps, for interval bounds and contextual decomposition (one walker, two rule tables).

:func:`program` turns ``model`` into a :class:`Program`: its steps in execution order, each of one kind

* ``input``: the model's input x; ``output``: the value returned (one tensor);
* ``module``: a layer, called on one tensor: a submodule (``call_module``), or a functional activation or
  max pooling mapped to the equivalent ``nn`` layer (``F.relu``, ``torch.relu``, ``Tensor.relu``,
  ``sigmoid``, ``tanh``, ``leaky_relu``, ``elu``, ``hardtanh``, ``softplus``, ``F.max_pool2d``, ...), so the
  callers' rule tables (keyed by layer type) apply; ``inplace=True`` is computed out of place;
* ``linear``: a linear map with non-negative coefficients and no offset, applied as is to each part
  (view, reshape, flatten, squeeze/unsqueeze, permute, indexing, mean, sum, average pooling);
* ``add``: ``a + alpha * b`` of two tensors (``+``, ``+=``, ``torch.add``, ``Tensor.add(_)``, subtraction);
* ``affine``: ``t * mul / div + offset`` with constants (a tensor plus, minus, times or divided by a constant);
* ``cat``: ``torch.cat`` of tensors along a non-batch dimension;
* ``meta``: a property of a tensor (``size``, ``shape``, ``dim``, ...), evaluated on a representative
  tensor (the caller's choice: the box centre, the sum of the parts); ``attr`` / ``const``: values that do
  not depend on x (parameters read as attributes, arithmetic on sizes);
* ``unsupported``: anything else, with the reason; the callers report every one in one error.

A (nested) ``nn.Sequential`` that keeps ``Sequential.forward`` is the chain of its leaf children, not traced
(each child one ``module`` step named by its dotted path; a root that is itself a leaf layer is the one
step ``<model>``). Any other model is traced with ``torch.fx`` (leaves: ``torch.nn`` layers and the caller's
``leaves`` types; custom modules are traced through). Only steps the output depends on are kept. An in-place
operation whose input (or a view of it) is read again afterwards is unsupported: computing it out of place
would differ from eager PyTorch. A model fx cannot trace (data-dependent control flow, ...) gives a
one-line :class:`UserError` naming the fx error's first line.

Traced programs are cached per model object (``WeakKeyDictionary``) and re-traced when any submodule's
identity, type, mode (``training``), class ``forward`` or plain attribute (numbers, strings, tuples; other
attributes by identity) changes; mutating an attribute's contents in place is not detected.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Callable, Optional

import torch
from torch import fx, nn

from ..errors import UserError
from .graph_steps import (
    ALIASING_MODULES,
    KINDS,
    Program,
    Step,
    Unsupported,
    classify,
    in_place,
    inplace_problem,
    node_label,
    out_of_place,
)

__all__ = ["KINDS", "Program", "Step", "is_sequential", "program", "run"]


# -- the chain of a Sequential ------------------------------------------------------------------
def is_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` (or a subclass that keeps its forward): its children run in order."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _leaves(model: nn.Module, prefix: str = "") -> list:
    if is_sequential(model):
        out = []
        for name, child in model.named_children():
            out += _leaves(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix or "<model>", model)]


def _chain(leaves: list) -> Program:
    steps = [Step("input", 0, "input")]
    for k, (name, m) in enumerate(leaves, 1):
        steps.append(Step("module", k, name, inputs=(k - 1,), module=m, layer=out_of_place(m)))
    steps.append(Step("output", len(leaves) + 1, "output", inputs=(len(leaves),)))
    return Program(steps, traced=False)


# -- tracing --------------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    def __init__(self, leaves: frozenset):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in self.leaves or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, leaves: frozenset, what: str) -> fx.Graph:
    concrete = {}
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
        concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    except (TypeError, ValueError):
        pass
    try:
        return _Tracer(leaves).trace(model, concrete_args=concrete or None)
    except Exception as exc:  # any failure of symbolic tracing: data-dependent control flow, unsupported Python
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{what}: torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: {first}); "
                        "use a model without data-dependent control flow, or an nn.Sequential") from None


def _traced_program(model: nn.Module, leaves: frozenset, what: str) -> Program:
    graph = _trace(model, leaves, what)
    nodes = list(graph.nodes)
    order = {n: k for k, n in enumerate(nodes)}
    output = next(n for n in reversed(nodes) if n.op == "output")
    live, todo = set(), [output]
    while todo:
        n = todo.pop()
        if n not in live:
            live.add(n)
            todo += n.all_input_nodes
    placeholders = [n for n in nodes if n.op == "placeholder"]
    tensor: set = set()
    steps: dict = {}
    for node in nodes:
        label = node_label(node)
        try:
            if node.op == "placeholder":
                if node is placeholders[0]:
                    steps[node] = Step("input", node, "input")
                elif node.args:  # a parameter with a default: fx specialised it (concrete_args)
                    steps[node] = Step("const", node, label, fn=lambda _v=node.args[0]: _v)
                else:
                    raise Unsupported("forward takes a second input without a default")
            elif node.op == "output":
                result = node.args[0]
                if not (isinstance(result, fx.Node) and result in tensor):
                    raise Unsupported("the model must return one tensor computed from its input")
                steps[node] = Step("output", node, "output", inputs=(result,))
            else:
                steps[node] = classify(node, model, tensor.__contains__, label)
        except Unsupported as why:
            steps[node] = Step("unsupported", node, label, reason=str(why))
        if steps[node].kind in ("input", "module", "linear", "add", "affine", "cat", "unsupported"):
            tensor.add(node)

    def aliases(n: fx.Node) -> bool:
        s = steps[n]
        return s.kind == "linear" or (s.kind == "module" and isinstance(s.module, ALIASING_MODULES)) or (
            s.kind != "input" and in_place(n, model))

    kept = []
    for node in nodes:
        step = steps[node]
        problem = inplace_problem(node, order, aliases) if node.op != "output" and in_place(node, model) else None
        if problem:
            step = Step("unsupported", node, step.label if step.kind != "module" else node_label(node), reason=problem)
        if node in live or problem:
            kept.append(step)
    return Program(kept, traced=True)


# -- entry point with the cache -------------------------------------------------------------------
_PLAIN = (bool, int, str, bytes, type(None), torch.dtype, torch.device)
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_CACHE_SIZE = 8


def _plain(v):
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return tuple(_plain(e) for e in v)
    return ("id", id(v))


#: nn.Module's own bookkeeping (hook dictionaries, ...): not read by a forward pass; ``training`` is kept
_INTERNAL = frozenset(vars(nn.Module())) - {"training"}


def _fingerprint(model: nn.Module) -> tuple:
    return tuple((name, id(m), type(m), id(getattr(type(m), "forward", None)),
                  tuple((k, _plain(v)) for k, v in vars(m).items() if k not in _INTERNAL))
                 for name, m in model.named_modules())


def program(model: nn.Module, leaves: frozenset, what: str) -> Program:
    """The steps of ``model`` (see the module docstring); ``leaves``: layer types never traced into;
    ``what`` names the caller in errors."""
    if not isinstance(model, nn.Module):
        raise UserError(f"{what}: the model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError(f"{what}: a TorchScript module (torch.jit) hides its layers; pass the nn.Module itself")
    if is_sequential(model) or type(model) in leaves or fx.Tracer().is_leaf_module(model, ""):
        return _chain(_leaves(model))
    key = (what, leaves, _fingerprint(model))
    try:
        cached = _CACHE.setdefault(model, {})
    except TypeError:  # not weak-referenceable: trace every time
        cached = {}
    prog = cached.get(key)
    if prog is None:
        prog = _traced_program(model, leaves, what)
        while len(cached) >= _CACHE_SIZE:  # a few modes (train / eval) per caller; drop the oldest
            del cached[next(iter(cached))]
        cached[key] = prog
    return prog


def run(prog: Program, model: nn.Module, domain, value, upto: Optional[Step] = None):
    """Evaluate ``prog`` on ``value`` (the input in the caller's representation) with ``domain``'s rules:
    ``module(step, v)``, ``linear(fn, v)``, ``add(a, b, alpha)``, ``affine(v, mul, div, offset)``,
    ``cat(values, dim)``, ``representative(v) -> tensor``. With ``upto``, return the value of its input."""
    env: dict = {}

    def resolve(a):
        return fx.node.map_arg(a, env.__getitem__)

    for step in prog.steps:
        kind = step.kind
        if step is upto:
            return env[step.inputs[0]]
        if kind == "input":
            env[step.key] = value
        elif kind == "module":
            env[step.key] = domain.module(step, env[step.inputs[0]])
        elif kind == "linear":
            env[step.key] = domain.linear(_bind_rest(step.fn, resolve(step.args), resolve(step.kwargs)),
                                          env[step.inputs[0]])
        elif kind == "add":
            env[step.key] = domain.add(env[step.inputs[0]], env[step.inputs[1]], step.args[0])
        elif kind == "affine":
            k = resolve(step.kwargs)
            offset = k["add"]
            if offset is not None and k.get("alpha", 1) != 1:
                offset = k["alpha"] * offset
            env[step.key] = domain.affine(env[step.inputs[0]], k["mul"], k["div"], offset)
        elif kind == "cat":
            parts = [env[n] for n in step.inputs]
            dim = step.args[0]
            rank = domain.representative(parts[0]).dim()
            if dim % max(rank, 1) == 0:
                raise UserError(f"{step.label}: concatenation along the batch dimension is not supported")
            env[step.key] = domain.cat(parts, dim)
        elif kind == "meta":
            rep = domain.representative(env[step.inputs[0]])
            env[step.key] = step.fn(rep, *resolve(step.args), **resolve(step.kwargs))
        elif kind == "attr":
            env[step.key] = _get_attr(model, step.args[0])
        elif kind == "const":
            env[step.key] = step.fn(*resolve(step.args), **resolve(step.kwargs))
        elif kind == "output":
            return env[step.inputs[0]]
        else:
            raise UserError(f"{step.label}: {step.reason}")  # callers check first; never reached for them
    raise UserError("model graph without output")


def _bind_rest(fn: Callable, args: tuple, kwargs: dict) -> Callable:
    return lambda t: fn(t, *args, **kwargs)


def _get_attr(model: nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj
