"""Contextual decomposition on general module graphs (torch.fx): completeness on the residual and the functional
network for several masks and every rule, the zero / full mask edge cases, batch statistics, registered rules
inside a graph, one error for everything unsupported, and CDEP on the residual network."""

import pytest
import torch
from torch import nn

from rightreasons.errors import UserError
from rightreasons.methods import StepContext, create_method
from rightreasons.ops.contextual_decomposition import (
    check_decomposable,
    contextual_decomposition,
    register_cd_rule,
    unsupported_modules,
)
from test_graph_bounds import Branchy, _batch, _odd_resnet, functional, resnet

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {"resnet": resnet, "functional": functional}
RULES = ("cd", "shapley", "marginal")


def _masks(x):
    g = torch.Generator().manual_seed(5)
    corner = torch.zeros_like(x)
    corner[..., :3, :3] = 1
    return {"corner": corner, "random": (torch.rand(x.shape, generator=g) > 0.5).to(x.dtype),
            "zeros": torch.zeros_like(x), "ones": torch.ones_like(x), "broadcast": corner[:1]}


@pytest.mark.parametrize("bias_rule", ["proportional", "irrelevant"])
@pytest.mark.parametrize("activation_rule", RULES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_parts_add_up_to_the_logits(name, activation_rule, bias_rule):
    model = MODELS[name]()
    x = _batch().x
    logits = model(x)
    for key, mask in _masks(x).items():
        rel, irrel = contextual_decomposition(model, x, mask, bias_rule, activation_rule)
        torch.testing.assert_close(rel + irrel, logits, rtol=0, atol=1e-12, msg=key)
        if key == "corner":
            assert rel.abs().max() > 1e-6 and irrel.abs().max() > 1e-6  # both parts carry something


@pytest.mark.parametrize("bias_rule", ["proportional", "irrelevant"])
@pytest.mark.parametrize("activation_rule", RULES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_zero_mask_gives_zero_relevant_part(name, activation_rule, bias_rule):
    # the relevant input is 0; convolutions, sums, constant factors and pooling keep 0, every bias and added
    # constant goes to the irrelevant part where the relevant one is 0, the activation rules give 0 for r = 0
    model = MODELS[name]()
    x = _batch().x
    rel, irrel = contextual_decomposition(model, x, torch.zeros_like(x), bias_rule, activation_rule)
    assert torch.equal(rel, torch.zeros_like(rel))
    torch.testing.assert_close(irrel, model(x), rtol=0, atol=1e-12)


def test_full_mask_gives_zero_irrelevant_part_without_biases():
    model = resnet()
    with torch.no_grad():  # batch norms without offset: running mean 0, bias 0; the linear layer without bias
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.bias.zero_()
        model.fc.bias.zero_()
    x = _batch().x
    rel, irrel = contextual_decomposition(model, x, torch.ones_like(x))
    assert torch.equal(irrel, torch.zeros_like(irrel))
    torch.testing.assert_close(rel, model(x), rtol=0, atol=1e-12)


def test_marginal_rule_with_irrelevant_bias_is_occlusion_on_the_residual_network():
    # every step keeps i' = step(i) (sums of branches included): the irrelevant part is the network on x * (1 - m)
    model = resnet()
    x = _batch().x
    mask = _masks(x)["random"]
    rel, irrel = contextual_decomposition(model, x, mask, "irrelevant", "marginal")
    torch.testing.assert_close(irrel, model(x * (1 - mask)), rtol=0, atol=1e-12)


def test_batch_norm_without_running_statistics_uses_the_batch_statistics_of_the_full_input():
    model = resnet()
    model.layer1.bn1 = nn.BatchNorm2d(4, track_running_stats=False).double()
    with torch.no_grad():
        model.layer1.bn1.weight.uniform_(-1, 1)
    x = _batch().x
    mask = _masks(x)["corner"]
    rel, irrel = contextual_decomposition(model, x, mask)
    torch.testing.assert_close(rel + irrel, model.eval()(x), rtol=0, atol=1e-12)


def test_modes_are_restored_and_the_eval_function_is_decomposed():
    model = resnet().train()
    x = _batch().x
    rel, irrel = contextual_decomposition(model, x, _masks(x)["corner"])
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(rel + irrel, model.eval()(x), rtol=0, atol=1e-12)


def test_a_registered_rule_is_used_inside_a_graph():
    class Twice(nn.Module):
        def forward(self, x):
            return 2 * x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.twice, self.fc2 = nn.Linear(4, 3), Twice(), nn.Linear(3, 2)

        def forward(self, x):
            h = self.fc1(x)
            return self.fc2(torch.relu(self.twice(h)) + h)

    calls = []

    def rule(m, r, i, opts):
        calls.append(m)
        return 2 * r, 2 * i

    register_cd_rule(Twice, rule)
    model = Net().double()
    x = torch.rand(3, 4, dtype=torch.float64)
    rel, irrel = contextual_decomposition(model, x, torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(rel + irrel, model(x), rtol=0, atol=1e-12)
    assert calls == [model.twice]


def test_an_unsupported_layer_and_function_in_a_block_are_named_in_one_error():
    model = _odd_resnet()
    bad = unsupported_modules(model)
    assert bad[0] == "layer1.act (GELU)" and "torch.sin" in bad[1] and len(bad) == 2
    x = _batch().x
    for call in (lambda: check_decomposable(model), lambda: contextual_decomposition(model, x, torch.ones_like(x)),
                 lambda: create_method("cdep").check_model(model)):
        with pytest.raises(UserError) as info:
            call()
        msg = str(info.value)
        assert "layer1.act (GELU)" in msg and "torch.sin" in msg and "\n" not in msg


def test_data_dependent_control_flow_gives_the_one_line_fx_error():
    with pytest.raises(UserError, match="torch.fx cannot trace Branchy .*control flow") as info:
        check_decomposable(Branchy())
    assert "\n" not in str(info.value)


def test_cdep_trains_the_residual_network():
    model = resnet(dtype=torch.float32).train()
    method = create_method("cdep")
    method.check_model(model)
    batch = _batch(dtype=torch.float32, n=6)
    out = method.loss(model, batch, StepContext(generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(out.loss) and out.terms["cdep"] > 0
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
