"""The steps of a model graph (``ops.graph``): the :class:`Step` and :class:`Program` records, and how one
``torch.fx`` node becomes a step (:func:`classify`): a layer, a functional activation mapped to its layer,
a linear map, a sum, an affine map by constants, a concatenation, a property of a tensor, a constant, or
unsupported with the reason. Also the in-place checks: an in-place operation whose input (or a view of it)
is read again afterwards cannot be computed out of place without changing the result.
"""

from __future__ import annotations

import builtins
import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

KINDS = ("input", "output", "module", "linear", "add", "affine", "cat", "meta", "attr", "const", "unsupported")


@dataclass(eq=False)
class Step:
    """One step; ``inputs`` are the keys of the steps whose tensors it consumes."""

    kind: str
    key: Any
    label: str
    inputs: tuple = ()
    module: Optional[nn.Module] = None  # the layer (``module``): what rule tables look up
    layer: Optional[nn.Module] = None   # what to call: ``module`` itself, or an out-of-place copy
    fn: Optional[Callable] = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    reason: str = ""


@dataclass(eq=False)
class Program:
    steps: list
    traced: bool

    @property
    def modules(self) -> list:
        return [s for s in self.steps if s.kind == "module"]

    @property
    def unsupported(self) -> list:
        return [s for s in self.steps if s.kind == "unsupported"]

    @property
    def last(self) -> Step:
        """The step whose value the model returns."""
        out = self.steps[-1]
        return next(s for s in self.steps if s.key is out.inputs[0])


class Unsupported(Exception):
    pass


def out_of_place(m: nn.Module) -> nn.Module:
    if getattr(m, "inplace", False) is True:
        m = copy.copy(m)  # shares parameters; only the flag differs
        m.inplace = False
    return m


# -- node classification --------------------------------------------------------------------------
_REQUIRED = object()
_POOL = (("kernel_size", _REQUIRED), ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False),
         ("return_indices", False))
_INPLACE = (("inplace", False),)
_DROPOUT = (("p", 0.5), ("training", True), ("inplace", False))


def _fixed(cls):
    return lambda p: cls()


def _maxpool(cls):
    return lambda p: cls(p["kernel_size"], p["stride"], p["padding"], p["dilation"], False, p["ceil_mode"])


def _dropout(cls):
    return lambda p: cls(p["p"]).train(bool(p["training"]))


#: functions computed by an ``nn`` layer: target -> (parameters after the input, layer factory)
_LAYER_FUNCTIONS: dict = {
    F.relu: (_INPLACE, _fixed(nn.ReLU)), F.relu_: ((), _fixed(nn.ReLU)),
    torch.relu: ((), _fixed(nn.ReLU)), torch.relu_: ((), _fixed(nn.ReLU)),
    F.relu6: (_INPLACE, _fixed(nn.ReLU6)),
    F.leaky_relu: ((("negative_slope", 0.01), ("inplace", False)), lambda p: nn.LeakyReLU(p["negative_slope"])),
    F.leaky_relu_: ((("negative_slope", 0.01),), lambda p: nn.LeakyReLU(p["negative_slope"])),
    F.elu: ((("alpha", 1.0), ("inplace", False)), lambda p: nn.ELU(p["alpha"])),
    F.elu_: ((("alpha", 1.0),), lambda p: nn.ELU(p["alpha"])),
    F.celu: ((("alpha", 1.0), ("inplace", False)), lambda p: nn.CELU(p["alpha"])),
    F.selu: (_INPLACE, _fixed(nn.SELU)), torch.selu: ((), _fixed(nn.SELU)),
    F.hardtanh: ((("min_val", -1.0), ("max_val", 1.0), ("inplace", False)),
                 lambda p: nn.Hardtanh(p["min_val"], p["max_val"])),
    F.hardtanh_: ((("min_val", -1.0), ("max_val", 1.0)), lambda p: nn.Hardtanh(p["min_val"], p["max_val"])),
    F.sigmoid: ((), _fixed(nn.Sigmoid)), torch.sigmoid: ((), _fixed(nn.Sigmoid)),
    torch.sigmoid_: ((), _fixed(nn.Sigmoid)),
    F.tanh: ((), _fixed(nn.Tanh)), torch.tanh: ((), _fixed(nn.Tanh)), torch.tanh_: ((), _fixed(nn.Tanh)),
    F.softplus: ((("beta", 1.0), ("threshold", 20.0)), lambda p: nn.Softplus(p["beta"], p["threshold"])),
    F.softsign: ((), _fixed(nn.Softsign)), F.hardsigmoid: (_INPLACE, _fixed(nn.Hardsigmoid)),
    F.logsigmoid: ((), _fixed(nn.LogSigmoid)), F.tanhshrink: ((), _fixed(nn.Tanhshrink)),
    F.max_pool1d: (_POOL, _maxpool(nn.MaxPool1d)), F.max_pool2d: (_POOL, _maxpool(nn.MaxPool2d)),
    F.max_pool3d: (_POOL, _maxpool(nn.MaxPool3d)),
    F.adaptive_max_pool1d: ((("output_size", _REQUIRED), ("return_indices", False)),
                            lambda p: nn.AdaptiveMaxPool1d(p["output_size"])),
    F.adaptive_max_pool2d: ((("output_size", _REQUIRED), ("return_indices", False)),
                            lambda p: nn.AdaptiveMaxPool2d(p["output_size"])),
    F.adaptive_max_pool3d: ((("output_size", _REQUIRED), ("return_indices", False)),
                            lambda p: nn.AdaptiveMaxPool3d(p["output_size"])),
    F.dropout: (_DROPOUT, _dropout(nn.Dropout)), F.dropout1d: (_DROPOUT, _dropout(nn.Dropout1d)),
    F.dropout2d: (_DROPOUT, _dropout(nn.Dropout2d)), F.dropout3d: (_DROPOUT, _dropout(nn.Dropout3d)),
    F.alpha_dropout: ((("p", 0.5), ("training", False), ("inplace", False)), _dropout(nn.AlphaDropout)),
}
_LAYER_METHODS = {"relu": nn.ReLU, "relu_": nn.ReLU, "sigmoid": nn.Sigmoid, "sigmoid_": nn.Sigmoid,
                  "tanh": nn.Tanh, "tanh_": nn.Tanh}
_LINEAR_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.swapaxes,
    torch.swapdims, torch.movedim, torch.narrow, torch.mean, torch.sum, torch.clone, operator.getitem,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
}
_LINEAR_METHODS = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose",
                   "swapaxes", "swapdims", "movedim", "narrow", "contiguous", "clone", "mean", "sum", "expand", "t"}
_ADD = ({operator.add, operator.iadd, torch.add}, {"add", "add_"})
_SUB = ({operator.sub, operator.isub, torch.sub, torch.subtract}, {"sub", "sub_", "subtract"})
_MUL = ({operator.mul, operator.imul, torch.mul, torch.multiply}, {"mul", "mul_", "multiply"})
_DIV = ({operator.truediv, operator.itruediv, torch.div, torch.true_divide}, {"div", "div_", "true_divide"})
_NEG = ({operator.neg, torch.neg, torch.negative}, {"neg"})
_CAT = {torch.cat, torch.concat, torch.concatenate}
_META_METHODS = {"size", "dim", "ndimension", "numel", "nelement"}
_META_ATTRS = {"shape", "ndim", "dtype", "device", "is_cuda"}
_IN_PLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv}
#: modules returning their input or a view of it (an in-place operation on the output changes the input)
ALIASING_MODULES = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.AlphaDropout)


def _target_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_module":
        return str(node.target)
    t = node.target
    mod = {"torch._C._nn": "torch.nn.functional", "_operator": "operator", "torch._C._VariableFunctions": "torch"}
    module = getattr(t, "__module__", None) or ""
    return f"{mod.get(module, module)}.{getattr(t, '__name__', repr(t))}".lstrip(".")


def node_label(node: fx.Node) -> str:
    if node.op in ("placeholder", "output"):
        return f"{node.op} {node.name}"
    where = ""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path, cls = list(stack.values())[-1]
        where = f" in {path} ({getattr(cls, '__name__', cls)})"
    return f"node {node.name} ({_target_name(node)}{where})"


def _nodes_in(value) -> list:
    found: list = []
    fx.node.map_arg(value, found.append)
    return found


def _bind(node: fx.Node, params: tuple) -> tuple[Any, dict]:
    """``(input, {name: value})`` from a call's args and kwargs against ``params`` (after the input)."""
    args, kwargs = list(node.args), dict(node.kwargs)
    if args:
        first = args.pop(0)
    elif "input" in kwargs:
        first = kwargs.pop("input")
    else:
        raise Unsupported("no input tensor")
    if len(args) > len(params):
        raise Unsupported("too many arguments")
    values = dict(zip((name for name, _ in params), args))
    for name, default in params[len(args):]:
        if name in kwargs:
            values[name] = kwargs.pop(name)
        elif default is _REQUIRED:
            raise Unsupported(f"argument {name} missing")
        else:
            values[name] = default
    if kwargs:
        raise Unsupported(f"unexpected argument(s) {', '.join(sorted(kwargs))}")
    if _nodes_in(tuple(values.values())):
        raise Unsupported("an argument computed in the graph (only constants are supported)")
    return first, values


def _operands(node: fx.Node, allowed: tuple) -> tuple[Any, Any, dict]:
    args, kwargs = list(node.args), dict(node.kwargs)
    if len(args) < 2 and "other" in kwargs:
        args.append(kwargs.pop("other"))
    if len(args) != 2:
        raise Unsupported("expected two operands")
    extra = {k: kwargs.pop(k) for k in allowed if k in kwargs}
    if kwargs:
        raise Unsupported(f"unexpected argument(s) {', '.join(sorted(kwargs))}")
    if _nodes_in(tuple(extra.values())):
        raise Unsupported("an argument computed in the graph (only constants are supported)")
    return args[0], args[1], extra


def _in(node: fx.Node, table: tuple) -> bool:
    functions, methods = table
    return node.target in functions if node.op == "call_function" else node.target in methods


def classify(node: fx.Node, model: nn.Module, is_tensor: Callable, label: str) -> Step:
    """The step of one node (``is_tensor(n)``: does node n carry a tensor derived from x)."""
    tensors = [n for n in node.all_input_nodes if is_tensor(n)]
    op, target = node.op, node.target
    if op == "get_attr":
        return Step("attr", node, label, args=(target,))
    if op == "call_module":
        module = model.get_submodule(target)
        if len(node.args) != 1 or node.kwargs or not tensors or node.args[0] is not tensors[0]:
            raise Unsupported("a layer must be called on one tensor")
        if getattr(module, "return_indices", False):
            raise Unsupported("a layer returning indices")
        return Step("module", node, str(target), inputs=(node.args[0],), module=module, layer=out_of_place(module))
    if op not in ("call_function", "call_method"):
        raise Unsupported(f"operation {op}")
    if not tensors:  # constants: arithmetic on sizes, attributes of parameters, ...
        name = target if op == "call_method" else getattr(target, "__name__", "")
        if name.endswith("_") or "out" in node.kwargs:
            raise Unsupported("an in-place operation on a constant")
        if op == "call_method":
            return Step("const", node, label, fn=lambda obj, *a, _n=target, **k: getattr(obj, _n)(*a, **k),
                        args=node.args, kwargs=dict(node.kwargs))
        return Step("const", node, label, fn=target, args=node.args, kwargs=dict(node.kwargs))
    first = node.args[0] if node.args else node.kwargs.get("input")
    if op == "call_method" and target in _META_METHODS or (
            op == "call_function" and target is builtins.getattr and node.args[1] in _META_ATTRS) or (
            op == "call_function" and target is builtins.len):
        if tensors != [first]:
            raise Unsupported("a property of more than one tensor")
        fn = (lambda t, *a, _n=target, **k: getattr(t, _n)(*a, **k)) if op == "call_method" else target
        return Step("meta", node, label, inputs=(first,), fn=fn, args=node.args[1:], kwargs=dict(node.kwargs))
    if op == "call_function" and target in _LAYER_FUNCTIONS:
        params, factory = _LAYER_FUNCTIONS[target]
        first, values = _bind(node, params)
        if values.get("return_indices"):
            raise Unsupported("pooling with return_indices")
        if tensors != [first]:
            raise Unsupported("the input must be the only tensor argument")
        layer = factory(values)
        return Step("module", node, label, inputs=(first,), module=layer, layer=layer)
    if op == "call_method" and target in _LAYER_METHODS:
        if len(node.args) != 1 or node.kwargs:
            raise Unsupported("unexpected arguments")
        layer = _LAYER_METHODS[target]()
        return Step("module", node, label, inputs=(first,), module=layer, layer=layer)
    if op == "call_function" and target in _LINEAR_FUNCTIONS or op == "call_method" and target in _LINEAR_METHODS:
        if tensors != [first] or not node.args or node.args[0] is not first:
            raise Unsupported("only the first argument may be a tensor computed from the input")
        fn = getattr(torch.Tensor, target) if op == "call_method" else target
        return Step("linear", node, label, inputs=(first,), fn=fn, args=node.args[1:], kwargs=dict(node.kwargs))
    for table, name in ((_ADD, "add"), (_SUB, "sub"), (_MUL, "mul"), (_DIV, "div")):
        if _in(node, table):
            return _arithmetic(node, name, is_tensor, label)
    if _in(node, _NEG):
        if len(node.args) != 1 or node.kwargs:
            raise Unsupported("unexpected arguments")
        return Step("affine", node, label, inputs=(first,), kwargs={"mul": -1, "div": None, "add": None})
    if op == "call_function" and target in _CAT:
        return _cat(node, is_tensor, label)
    raise Unsupported("unsupported function" if op == "call_function" else "unsupported method")


def _arithmetic(node: fx.Node, name: str, is_tensor: Callable, label: str) -> Step:
    a, b, extra = _operands(node, ("alpha",) if name in ("add", "sub") else ("rounding_mode",))
    if extra.get("rounding_mode") is not None:
        raise Unsupported("division with rounding")
    alpha = extra.get("alpha", 1)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise Unsupported("alpha must be a number")
    ta, tb = isinstance(a, fx.Node) and is_tensor(a), isinstance(b, fx.Node) and is_tensor(b)
    if ta and tb:
        if name in ("mul", "div"):
            raise Unsupported("product or quotient of two tensors computed from the input")
        return Step("add", node, label, inputs=(a, b), args=(alpha if name == "add" else -alpha,))
    if name == "add":  # t + alpha * c, or c + alpha * t
        if ta:
            return Step("affine", node, label, inputs=(a,), kwargs={"mul": None, "div": None, "add": b, "alpha": alpha})
        return Step("affine", node, label, inputs=(b,), kwargs={"mul": alpha, "div": None, "add": a})
    if name == "sub":  # t - alpha * c, or c - alpha * t
        if ta:
            return Step("affine", node, label, inputs=(a,),
                        kwargs={"mul": None, "div": None, "add": b, "alpha": -alpha})
        return Step("affine", node, label, inputs=(b,), kwargs={"mul": -alpha, "div": None, "add": a})
    if name == "mul":
        t, c = (a, b) if ta else (b, a)
        return Step("affine", node, label, inputs=(t,), kwargs={"mul": c, "div": None, "add": None})
    if not ta:
        raise Unsupported("division by a tensor computed from the input")
    return Step("affine", node, label, inputs=(a,), kwargs={"mul": None, "div": b, "add": None})


def _cat(node: fx.Node, is_tensor: Callable, label: str) -> Step:
    args, kwargs = list(node.args), dict(node.kwargs)
    parts = args.pop(0) if args else kwargs.pop("tensors", None)
    dim = args.pop(0) if args else kwargs.pop("dim", 0)
    if args or kwargs or not isinstance(parts, (list, tuple)):
        raise Unsupported("unexpected arguments")
    if not all(isinstance(p, fx.Node) and is_tensor(p) for p in parts):
        raise Unsupported("every concatenated tensor must be computed from the input")
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise Unsupported("the dimension must be a constant integer")
    if dim == 0:
        raise Unsupported("concatenation along the batch dimension")
    return Step("cat", node, label, inputs=tuple(parts), args=(dim,))


def in_place(node: fx.Node, model: nn.Module) -> bool:
    if node.op == "call_module":
        return getattr(model.get_submodule(node.target), "inplace", False) is True
    if node.op == "call_method":
        return isinstance(node.target, str) and node.target.endswith("_")
    if node.op != "call_function":
        return False
    if node.target in _IN_PLACE_OPERATORS or getattr(node.target, "__name__", "").endswith("_"):
        return True
    if node.kwargs.get("inplace") is True:
        return True
    if node.target in _LAYER_FUNCTIONS:  # inplace given positionally
        try:
            return _bind(node, _LAYER_FUNCTIONS[node.target][0])[1].get("inplace") is True
        except Unsupported:
            return False
    return False


def inplace_problem(node: fx.Node, order: dict, aliases: Callable) -> Optional[str]:
    """Why computing ``node`` (in place on its first argument) out of place would differ, or None."""
    base = node.args[0] if node.args else None
    if not isinstance(base, fx.Node):
        return None
    group, todo = set(), [base]
    while todo:  # every tensor sharing storage with the mutated one: views back and forth
        n = todo.pop()
        if n in group:
            continue
        group.add(n)
        if aliases(n) and n.args and isinstance(n.args[0], fx.Node):
            todo.append(n.args[0])
        todo += [u for u in n.users if u is not node and aliases(u) and u.args and u.args[0] is n]
    later = sorted({u.name for n in group for u in n.users if u is not node and order[u] > order[node]})
    if later:
        return f"in-place operation on a tensor read again afterwards (by {', '.join(later)})"
    return None
