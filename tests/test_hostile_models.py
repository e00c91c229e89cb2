"""Careless and hostile models: every one gets a one-line UserError naming what is at fault, never a
traceback, a verdict or a plausible-looking number.

Through ``fit`` (the check before the first step and the checks during training), through every metric
that runs a model (``evaluate``, ``predict``, robust metrics, the wrong-reason score, attribution
robustness, ``audit``), through ``create_model`` with a user factory, and through ``rightreasons train
--model package.module:factory`` (exit 2, one line on stderr, no run directory)."""

from __future__ import annotations

import re
import sys
import textwrap

import pytest
import torch
from torch import nn

from helpers import shortcut_splits, tiny_mlp
from rightreasons.audit import audit
from rightreasons.errors import UserError
from rightreasons.methods import create_method
from rightreasons.metrics import evaluate, ibp_certified_accuracy, masked_pgd_accuracy, predict, robust_metrics
from rightreasons.metrics.attribution_robustness import attribution_robustness
from rightreasons.metrics.wrong_reason import wrong_reason_score
from rightreasons.models import create_model
from rightreasons.train import TrainConfig, fit
from rightreasons.train.trainer import check_outputs

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")]


@pytest.fixture(scope="module")
def data():
    return shortcut_splits(n_train=40, n_eval=20)  # 6x6 single-channel images, 2 classes, named "shortcut"


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text.strip() == text, text
    return text


# -- the models ------------------------------------------------------------------------------------
class Wrapped(nn.Module):
    """A tiny MLP whose output goes through ``out`` (the fault)."""

    def __init__(self, out=lambda logits, x: logits, classes=2):
        super().__init__()
        self.net = tiny_mlp(classes=classes)
        self.out = out

    def forward(self, x):
        return self.out(self.net(x), x)


def nan_weights():
    model = tiny_mlp(classes=2)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    return model


def inf_weights():
    model = tiny_mlp(classes=2)
    with torch.no_grad():
        model[3].bias[1] = float("inf")
    return model


def frozen():
    model = tiny_mlp(classes=2)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class NoParameters(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :2] * 2.0


class Constant(nn.Module):
    """Ignores its input: the logits are a parameter."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return self.bias.expand(x.shape[0], 2)


class PlainTensorWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.zeros(36, 2, requires_grad=True)  # not an nn.Parameter

    def forward(self, x):
        return x.flatten(1) @ self.weight


class ScalesItsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_mlp(classes=2)

    def forward(self, x):
        return self.net(x.mul_(2.0))  # in place, on an input that requires grad under RRR


class NoSuper(nn.Module):
    def __init__(self):  # forgets super().__init__()
        self.width = 2


class BatchNormOne(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    def forward(self, x):
        return self.net(x)


class NaNAfterTraining(nn.Module):
    """Finite at initialisation and in training, NaN once it has trained (like weights that blew up)."""

    def __init__(self):
        super().__init__()
        self.net = tiny_mlp(classes=2)
        self.steps = 0

    def forward(self, x):
        self.steps += self.training
        out = self.net(x)
        return out * float("nan") if self.steps and not self.training else out


class ModelOutput:  # what a Hugging Face model returns
    def __init__(self, logits):
        self.logits = logits


#: name -> (model factory, what the one-line error says)
OUTPUT_FAULTS = {
    "nan weights": (nan_weights, r"are NaN or infinite \(are the model's weights finite\?\)"),
    "inf weights": (inf_weights, "are NaN or infinite"),
    "too many logits": (lambda: tiny_mlp(classes=5), r"got shape \(\d+, 5\), expected \(\d+, 2\)"),
    "one logit (binary)": (lambda: Wrapped(lambda z, x: z[:, 1]), r"got shape \(\d+,\), expected \(\d+, 2\)"),
    "3-d logits": (lambda: Wrapped(lambda z, x: z.unsqueeze(2)), r"got shape \(\d+, 2, 1\)"),
    "batch averaged": (lambda: Wrapped(lambda z, x: z.mean(0, keepdim=True)), r"got shape \(1, 2\), expected"),
    "tuple": (lambda: Wrapped(lambda z, x: (z, None)), "got a tuple, expected a tensor of logits"),
    "dict": (lambda: Wrapped(lambda z, x: {"logits": z}), "got a dict, expected a tensor of logits"),
    "hugging face output": (lambda: Wrapped(lambda z, x: ModelOutput(z)), "got a ModelOutput.*outputs.logits"),
    "numpy array": (lambda: Wrapped(lambda z, x: z.detach().numpy()), "got a ndarray"),
    "integer outputs": (lambda: Wrapped(lambda z, x: z.round().long()), "got torch.int64 values"),
    "boolean outputs": (lambda: Wrapped(lambda z, x: z > 0), "got torch.bool values"),
    "input size": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), r"forward pass .*raised RuntimeError: mat1"),
    "dtype": (lambda: tiny_mlp(classes=2).double(), r"forward pass .*raised RuntimeError: .*dtype"),
    "meta device": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 2, device="meta")),
                    "meta device \\(shapes without values\\)"),
    "no forward (ModuleList)": (lambda: nn.ModuleList([nn.Flatten(), nn.Linear(36, 2)]),
                                "forward pass .*raised NotImplementedError: Module .ModuleList. is missing"),
    "not a module": (lambda: (lambda x: x.flatten(1)[:, :2]), "model: expected an nn.Module, got function"),
    "no super().__init__": (NoSuper, r"NoSuper.__init__ does not call super\(\).__init__\(\)"),
}


# -- fit --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", list(OUTPUT_FAULTS))
def test_fit_refuses_a_bad_model_before_the_first_step(data, fault):
    make, message = OUTPUT_FAULTS[fault]
    model = make()
    with pytest.raises(UserError, match=message) as info:
        fit(model, create_method("erm"), data, TrainConfig(epochs=1, batch_size=16))
    # faults of the module itself are refused before any data is looked at
    module_faults = ("not a module", "no super().__init__", "meta device")
    assert "training data 'shortcut'" in one_line(info) or fault in module_faults
    if isinstance(model, nn.Module) and fault != "no super().__init__":
        assert all(p.grad is None for p in model.parameters())  # no step was taken


FIT_FAULTS = {
    "no parameters": (NoParameters, "model", "model has no parameters to train"),
    "plain tensor weights": (PlainTensorWeights, "model", r"no parameters to train \(a tensor attribute is one only "
                                                          r"as an nn.Parameter\)"),
    "transposed logits": (lambda: Wrapped(lambda z, x: z.t()), "erm", r"got shape \(2, 13\), expected \(13, 2\)"),
    "in-place on its input (rrr)": (ScalesItsInput, "rrr", "forward pass on training data 'shortcut' raised "
                                                          "RuntimeError: a leaf Variable that requires grad"),
    "all frozen": (frozen, "erm", r"all 4 of its parameter tensors are frozen \(requires_grad=False\)"),
    "detached outputs (erm)": (lambda: Wrapped(lambda z, x: z.detach()), "erm",
                               r"the loss at epoch 1, step 0 does not depend on any trainable parameter"),
    "detached outputs (rrr)": (lambda: Wrapped(lambda z, x: z.detach()), "rrr",
                               "do not depend on the input through autograd"),
    "ignores its input (rrr)": (Constant, "rrr", "do not depend on the input, so its input gradients are undefined"),
    "squeeze on a batch of 1": (lambda: Wrapped(lambda z, x: z.squeeze(0)), "erm",
                                r"got shape \(2,\), expected \(1, 2\)"),
    "batch norm on a batch of 1": (BatchNormOne, "erm",
                                   "forward pass on training data 'shortcut' raised ValueError: Expected more than 1"),
    "NaN after training": (NaNAfterTraining, "erm", "validation after epoch 1: model outputs on dataset 'shortcut' "
                                                    "are NaN or infinite"),
}


@pytest.mark.parametrize("fault", list(FIT_FAULTS))
def test_fit_refuses_a_model_it_cannot_train(data, fault):
    make, method, message = FIT_FAULTS[fault]
    with pytest.raises(UserError, match=message) as info:  # 40 examples in batches of 13: the last one has 1
        fit(make(), create_method("erm" if method == "model" else method), data, TrainConfig(epochs=1, batch_size=13))
    one_line(info)


def test_skipping_non_finite_losses_does_not_train_a_nan_model_silently(data):
    with pytest.raises(UserError, match="are NaN or infinite"):
        fit(nan_weights(), create_method("erm"), data, TrainConfig(epochs=1, batch_size=16, on_nonfinite="skip"))


def test_partly_frozen_models_train_only_their_trainable_parameters(data):
    model = tiny_mlp(classes=2)
    model[1].requires_grad_(False)
    before = model[1].weight.clone()
    fit(model, create_method("erm"), data, TrainConfig(epochs=1, batch_size=16))
    assert torch.equal(model[1].weight, before)


def test_the_check_before_training_touches_nothing_training_draws_on(data):
    """It runs in eval mode without gradients (mode restored), leaves the global RNG where it was even
    for a model that draws from it, and leaves lazy modules uninitialised (training initialises them)."""

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_mlp(classes=2)

        def forward(self, x):
            assert not self.training and not torch.is_grad_enabled()
            return self.net(x + torch.randn_like(x))

    model = Noisy().train()
    state = torch.get_rng_state()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    check_outputs(model, data.train)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    lazy = nn.Sequential(nn.Flatten(), nn.LazyLinear(2))
    check_outputs(lazy, data.train)
    assert lazy[1].has_uninitialized_params()
    fit(lazy, create_method("erm"), data, TrainConfig(epochs=1, batch_size=16))
    assert lazy[1].weight.shape == (2, 36)


def test_a_torchscript_model_is_checked_before_training_too(data):
    with pytest.raises(UserError, match=r"got shape \(2, 3\), expected \(2, 2\)"):
        fit(torch.jit.script(tiny_mlp(classes=3)), create_method("erm"), data, TrainConfig(epochs=1))


# -- the metrics and the audit ----------------------------------------------------------------------
METRICS = {
    "evaluate": lambda m, d: evaluate(m, d),
    "evaluate without mask share": lambda m, d: evaluate(m, d, mask_share=False),
    "predict": lambda m, d: predict(m, d),
    "masked_pgd_accuracy": lambda m, d: masked_pgd_accuracy(m, d, eps=0.5, steps=2),
    "robust_metrics": lambda m, d: robust_metrics(m, d, steps=2),
    "wrong_reason_score": lambda m, d: wrong_reason_score(m, d),
    "attribution_robustness": lambda m, d: attribution_robustness(m, d, attack_steps=1, k=4, ig_steps=2,
                                                                  max_examples=8),
    "audit": lambda m, d: audit(m, d, steps=2, draws=1),
}
METRIC_FAULTS = ["nan weights", "inf weights", "too many logits", "one logit (binary)", "batch averaged", "tuple",
                 "dict", "integer outputs", "dtype", "meta device", "not a module"]


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("fault", METRIC_FAULTS)
def test_every_metric_refuses_a_bad_model_naming_the_dataset(data, metric, fault):
    make, message = OUTPUT_FAULTS[fault]
    with pytest.raises(UserError, match=message) as info:
        METRICS[metric](make(), data.test)
    assert "dataset 'shortcut'" in one_line(info) or fault in ("not a module", "meta device")


@pytest.mark.parametrize("metric", ["evaluate", "wrong_reason_score", "masked_pgd_accuracy", "audit"])
@pytest.mark.parametrize("fault", ["detached", "ignores its input"])
def test_input_gradients_of_a_model_without_them_are_one_line_errors(data, metric, fault):
    model = Wrapped(lambda z, x: z.detach()) if fault == "detached" else Constant()
    with pytest.raises(UserError, match="dataset 'shortcut' do not depend on the input") as info:
        METRICS[metric](model, data.test)
    one_line(info)


def test_a_nan_model_gets_no_verdict(data):
    with pytest.raises(UserError, match="dataset 'shortcut' are NaN or infinite"):
        audit(nan_weights(), data.test)


def test_outputs_that_turn_nan_only_when_the_mask_is_randomised_give_no_verdict(data):
    def nan_off_the_data(z, x):  # the masked corner holds 0 or 1 in the data; noise lands strictly between
        corner = x[:, 0, 0, 0]
        return z + torch.where((corner > 0) & (corner < 1), float("nan"), 0.0).unsqueeze(1)

    model = Wrapped(nan_off_the_data)
    evaluate(model, data.test)  # finite on the data itself
    with pytest.raises(UserError, match="'shortcut' with its masked region randomised are NaN or infinite"):
        audit(model, data.test, steps=2, draws=1)


def test_interval_bounds_of_a_nan_model_certify_nothing_silently(data):
    with pytest.raises(UserError, match="interval bounds of the model's outputs on dataset 'shortcut' are NaN"):
        ibp_certified_accuracy(nan_weights(), data.test, eps=0.5)


def test_a_torchscript_model_is_evaluated_with_ibp_not_applicable(data):
    out = robust_metrics(torch.jit.script(tiny_mlp(classes=2)), data.test, steps=2)
    assert out["ibp_certified_accuracy"] is None and "TorchScript" in out["ibp_note"]
    with pytest.raises(UserError, match=r"got shape \(20, 3\)"):
        evaluate(torch.jit.script(tiny_mlp(classes=3)), data.test)


def test_checks_leave_the_model_as_they_found_it(data):
    model = nan_weights().train()
    with pytest.raises(UserError):
        evaluate(model, data.test)
    assert model.training and not model._forward_hooks and not model._forward_pre_hooks


# -- create_model with a user factory ---------------------------------------------------------------
FACTORIES = textwrap.dedent('''
    import sys
    import torch
    from torch import nn

    def good(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(75, num_classes))

    def raises(input_shape, num_classes):
        raise ValueError("no GPU here\\nand a second line")

    def raises_type_error(input_shape, num_classes):
        return nn.Linear("seventy-five", num_classes)

    def no_arguments():
        return good((3, 5, 5), 2)

    def returns_none(input_shape, num_classes):
        print("building")

    def returns_the_class(input_shape, num_classes):
        return nn.Linear

    class NoSuper(nn.Module):
        def __init__(self, input_shape, num_classes):
            self.classes = num_classes

    def exits(input_shape, num_classes):
        sys.exit(3)

    def recurses(input_shape, num_classes):
        return recurses(input_shape, num_classes)

    NOT_CALLABLE = 42

    class Wrapped(nn.Module):
        def __init__(self, out, net=None):
            super().__init__()
            self.net = net if net is not None else nn.Sequential(nn.Flatten(), nn.Linear(75, 2))
            self.out = out

        def forward(self, x):
            return self.out(self.net(x))

    def ten_classes(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(75, 10))

    def tuple_out(input_shape, num_classes):
        return Wrapped(lambda z: (z, z))

    def dict_out(input_shape, num_classes):
        return Wrapped(lambda z: {"logits": z})

    def int_out(input_shape, num_classes):
        return Wrapped(lambda z: z.argmax(1, keepdim=True).expand(-1, 2))

    def detached(input_shape, num_classes):
        return Wrapped(lambda z: z.detach())

    def nan_weights(input_shape, num_classes):
        model = good(input_shape, num_classes)
        with torch.no_grad():
            model[1].weight.fill_(float("nan"))
        return model

    def no_parameters(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Identity())

    def projects_no_parameters(input_shape, num_classes):
        return Wrapped(lambda z: z[:, :2], net=nn.Flatten())

    def frozen(input_shape, num_classes):
        return good(input_shape, num_classes).requires_grad_(False)

    def mnist_sized(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

    def squeezes(input_shape, num_classes):
        return Wrapped(lambda z: z.squeeze())
''')

BROKEN_MODULES = {
    "rr_syntax_error": "def make(input_shape, num_classes:\n    pass\n",
    "rr_raises_at_import": "raise RuntimeError('cannot find the weights file')\n",
    "rr_missing_dependency": "import rr_not_installed_dependency\n\ndef make(input_shape, num_classes):\n    pass\n",
    "rr_exits_at_import": "import sys\nsys.exit('bye')\n",
    "rr_bad_getattr": "def __getattr__(name):\n    raise KeyError(name)\n",
}


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_models")
    (root / "rr_factories.py").write_text(FACTORIES)
    for name, text in BROKEN_MODULES.items():
        (root / f"{name}.py").write_text(text)
    yield root
    for name in ["rr_factories", *BROKEN_MODULES]:
        sys.modules.pop(name, None)


@pytest.fixture
def user_models(module_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(module_dir))
    return module_dir


#: spec -> (model options, what the one-line error says)
FACTORY_FAULTS = {
    "rr_factories:raises": ({}, r"^model 'rr_factories:raises': the factory raised ValueError: no GPU here$"),
    "rr_factories:raises_type_error": ({}, r"^model 'rr_factories:raises_type_error': the factory raised TypeError"),
    "rr_factories:no_arguments": ({}, r"^model 'rr_factories:no_arguments': bad arguments \{\} .*factory\(input_shape, "
                                      r"num_classes, \*\*options\)"),
    "rr_factories:good": ({"width": 3}, r"^model 'rr_factories:good': bad arguments \{'width': 3\} .*'width'"),
    "rr_factories:returns_none": ({}, "factory returned NoneType, not an nn.Module"),
    "rr_factories:returns_the_class": ({}, "factory returned type, not an nn.Module"),
    "rr_factories:NoSuper": ({}, r"factory returned a NoSuper whose __init__ does not call super\(\).__init__\(\)"),
    "rr_factories:exits": ({}, "the factory raised SystemExit: 3"),
    "rr_factories:recurses": ({}, "the factory raised RecursionError"),
    "rr_factories:NOT_CALLABLE": ({}, "module 'rr_factories' has no callable 'NOT_CALLABLE'"),
    "rr_factories:missing": ({}, "module 'rr_factories' has no callable 'missing'"),
    "rr_syntax_error:make": ({}, r"^model 'rr_syntax_error:make': importing module 'rr_syntax_error' raised "
                                 r"SyntaxError: .*rr_syntax_error.py, line 1"),
    "rr_raises_at_import:make": ({}, "importing module 'rr_raises_at_import' raised RuntimeError: cannot find the "
                                     "weights file"),
    "rr_missing_dependency:make": ({}, "importing module 'rr_missing_dependency' raised ModuleNotFoundError: No module "
                                       "named 'rr_not_installed_dependency'"),
    "rr_exits_at_import:make": ({}, "importing module 'rr_exits_at_import' raised SystemExit: bye"),
    "rr_bad_getattr:make": ({}, "looking up 'make' in module 'rr_bad_getattr' raised KeyError"),
    "rr_no_such_module:make": ({}, "cannot import module 'rr_no_such_module'"),
    ":make": ({}, r"^model ':make': expected package.module:factory"),
    "rr_factories:": ({}, r"^model 'rr_factories:': expected package.module:factory"),
    ".rr_relative:make": ({}, "importing module '.rr_relative' raised TypeError"),
}


@pytest.mark.parametrize("spec", list(FACTORY_FAULTS))
def test_create_model_turns_every_factory_fault_into_one_line(user_models, spec):
    options, message = FACTORY_FAULTS[spec]
    with pytest.raises(UserError, match=message) as info:
        create_model(spec, (3, 5, 5), 2, **options)
    one_line(info)


# -- the command line -------------------------------------------------------------------------------
def train(tmp_path, spec, *extra):
    from rightreasons.cli import main

    out = tmp_path / "run"
    args = ["train", "--data", "toy-colors", "--data-option", "n_train=40", "--data-option", "n_val=10",
            "--data-option", "n_test=10", "--method", "erm", "--epochs", "1", "--model", spec, "--out", str(out),
            "--quiet", *extra]
    return main(args), out


def test_a_good_user_factory_trains(user_models, tmp_path, capsys):
    code, out = train(tmp_path, "rr_factories:good")
    assert code == 0, capsys.readouterr().err
    assert (out / "model.safetensors").is_file()


#: spec -> (extra flags, what the one-line error says); model faults are found before the first step
CLI_FAULTS = {
    **{spec: ([f"--model-option={k}={v}" for k, v in options.items()], message)
       for spec, (options, message) in FACTORY_FAULTS.items()},
    "rr_factories:ten_classes": ([], r"model outputs on training data 'toy-colors/train' \(before training\): "
                                     r"got shape \(2, 10\), expected \(2, 2\)"),
    "rr_factories:tuple_out": ([], "got a tuple, expected a tensor of logits"),
    "rr_factories:dict_out": ([], "got a dict, expected a tensor of logits"),
    "rr_factories:int_out": ([], "got torch.int64 values, expected floating-point logits"),
    "rr_factories:detached": ([], r"the loss at epoch 1, step 0 does not depend on any trainable parameter"),
    "rr_factories:nan_weights": ([], "before training.* are NaN or infinite"),
    "rr_factories:no_parameters": ([], r"got shape \(2, 75\), expected \(2, 2\)"),
    "rr_factories:projects_no_parameters": ([], "model has no parameters to train"),
    "rr_factories:frozen": ([], r"all 2 of its parameter tensors are frozen"),
    "rr_factories:mnist_sized": ([], r"forward pass on training data 'toy-colors/train' \(before training\), inputs of "
                                     r"shape \(2, 3, 5, 5\), raised RuntimeError: mat1 and mat2 shapes"),
    "rr_factories:squeezes": (["--batch-size", "13"], r"got shape \(2,\), expected \(1, 2\)"),
}


@pytest.mark.parametrize("spec", list(CLI_FAULTS))
def test_train_with_a_bad_user_model_exits_2_in_one_line_and_writes_nothing(user_models, tmp_path, capsys, spec):
    extra, message = CLI_FAULTS[spec]
    code, out = train(tmp_path, spec, *extra)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message.lstrip("^"), err), err
    assert not out.exists()
