"""Contextual decomposition: completeness, a slow re-implementation of the rules, errors, edge cases."""

import pytest
import torch
from torch import nn

from rightreasons import UserError
from rightreasons.ops.contextual_decomposition import contextual_decomposition, register_cd_rule


def _mlp(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 9, bias=bias), nn.ReLU(),
                         nn.Linear(9, 7, bias=bias), nn.LeakyReLU(0.1), nn.Linear(7, 4, bias=bias)).double()


def _cnn(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(5, 6, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(6), nn.Tanh()),
        nn.MaxPool2d(2, stride=1, padding=1), nn.AvgPool2d(2), nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(6 * 2 * 2, 8), nn.Sigmoid(), nn.Linear(8, 3),
    ).double()
    bn = model[3][1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    return model


def _random_mask(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) > 0.6).double()


RULES = ["cd", "shapley", "marginal"]


@pytest.mark.parametrize("bias_rule", ["proportional", "irrelevant"])
@pytest.mark.parametrize("activation_rule", RULES)
def test_completeness_mlp(bias_rule, activation_rule):
    model = _mlp()
    x = torch.rand(6, 3, 4, dtype=torch.float64)
    rel, irrel = contextual_decomposition(model, x, _random_mask(x.shape), bias_rule, activation_rule)
    torch.testing.assert_close(rel + irrel, model(x), rtol=0, atol=1e-12)
    assert rel.abs().sum() > 0 and irrel.abs().sum() > 0


@pytest.mark.parametrize("activation_rule", RULES)
def test_completeness_cnn_with_maxpool_batchnorm_dropout(activation_rule):
    model = _cnn()
    model.train()
    x = torch.rand(5, 2, 8, 8, dtype=torch.float64)
    rel, irrel = contextual_decomposition(model, x, _random_mask(x.shape), activation_rule=activation_rule)
    assert model.training and all(m.training for m in model.modules())  # modes restored
    model.eval()
    torch.testing.assert_close(rel + irrel, model(x), rtol=0, atol=1e-12)


def test_builtin_models_complete():
    from rightreasons.models import create_model

    for name, shape in (("mlp", (1, 28, 28)), ("cnn", (1, 12, 12)), ("cnn-strided", (1, 12, 12))):
        torch.manual_seed(0)
        model = create_model(name, shape, 10).double()
        x = torch.rand(3, *shape, dtype=torch.float64)
        rel, irrel = contextual_decomposition(model, x, _random_mask(x.shape))
        torch.testing.assert_close(rel + irrel, model(x), rtol=0, atol=1e-10)


def _slow_cd(w1, b1, w2, b2, x, m):
    """Per-unit scalar loops: Linear -> ReLU -> Linear, proportional bias split, standard ReLU rule."""

    def affine(w, b, rel, irrel):
        out_r, out_i = [], []
        for j in range(len(w)):
            r = sum(w[j][k] * rel[k] for k in range(len(rel)))
            i = sum(w[j][k] * irrel[k] for k in range(len(irrel)))
            total = abs(r) + abs(i)
            share = abs(r) / total if total > 0 else 0.0
            out_r.append(r + b[j] * share)
            out_i.append(i + b[j] * (1 - share))
        return out_r, out_i

    rel = [xi * mi for xi, mi in zip(x, m)]
    irrel = [xi * (1 - mi) for xi, mi in zip(x, m)]
    rel, irrel = affine(w1, b1, rel, irrel)
    rel, irrel = [max(r, 0.0) for r in rel], [max(r + i, 0.0) - max(r, 0.0) for r, i in zip(rel, irrel)]
    return affine(w2, b2, rel, irrel)


def test_matches_slow_reimplementation():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    mask = _random_mask(x.shape, seed=4)
    x[0, :] = 0.0  # an example whose contributions are all zero: the whole bias goes to irrelevant
    rel, irrel = contextual_decomposition(model, x, mask)
    w1, b1, w2, b2 = (p.detach().tolist() for p in model.parameters())
    for n in range(x.shape[0]):
        slow_r, slow_i = _slow_cd(w1, b1, w2, b2, x[n].tolist(), mask[n].tolist())
        torch.testing.assert_close(rel[n].detach(), torch.tensor(slow_r, dtype=torch.float64), rtol=0, atol=1e-12)
        torch.testing.assert_close(irrel[n].detach(), torch.tensor(slow_i, dtype=torch.float64), rtol=0, atol=1e-12)


def test_maxpool_takes_positions_of_the_sum():
    rel = torch.tensor([[[[3.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    irrel = torch.tensor([[[[-1.0, 4.0], [0.0, 0.0]]]], dtype=torch.float64)
    x = rel + irrel
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    # x = [[2, 4], [0, 0]]: the max of the sum is at (0, 1), which belongs wholly to the irrelevant part
    r, i = contextual_decomposition(nn.MaxPool2d(2), x, mask)
    assert r.item() == 0.0 and i.item() == 4.0


@pytest.mark.parametrize("bias_rule", ["proportional", "irrelevant"])
@pytest.mark.parametrize("activation_rule", RULES)
def test_zero_mask_gives_zero_relevant_part_even_with_biases(bias_rule, activation_rule):
    # derivation: the relevant input is x * 0 = 0; A 0 = 0 and the proportional bias share |0| / (|0| + |A i|)
    # is 0 (all of the bias goes to irrelevant when both contributions vanish); the activation rules give
    # f(0) - f(0) = 0 ("cd"), (0 + f(i) - f(i)) / 2 = 0 ("shapley"), f(0 + i) - f(i) = 0 ("marginal");
    # pooling gathers zeros. So relevant == 0 exactly, irrelevant == model(x).
    for model, shape in ((_mlp(), (4, 3, 4)), (_cnn(), (4, 2, 8, 8))):
        x = torch.rand(shape, dtype=torch.float64)
        rel, irrel = contextual_decomposition(model, x, torch.zeros(shape, dtype=torch.float64), bias_rule,
                                              activation_rule)
        assert torch.equal(rel, torch.zeros_like(rel))
        model.eval()
        torch.testing.assert_close(irrel, model(x), rtol=0, atol=1e-12)


def test_marginal_rule_with_irrelevant_bias_is_occlusion():
    # every layer keeps i' = layer(i): the irrelevant part is the network run on x * (1 - m)
    model = _mlp()
    x = torch.rand(5, 3, 4, dtype=torch.float64)
    mask = _random_mask(x.shape)
    rel, irrel = contextual_decomposition(model, x, mask, "irrelevant", "marginal")
    torch.testing.assert_close(irrel, model(x * (1 - mask)), rtol=0, atol=1e-12)
    torch.testing.assert_close(rel, model(x) - model(x * (1 - mask)), rtol=0, atol=1e-12)


def test_full_mask_gives_zero_irrelevant_part_without_biases():
    model = _mlp(bias=False)
    x = torch.rand(4, 3, 4, dtype=torch.float64)
    rel, irrel = contextual_decomposition(model, x, torch.ones(1, 3, 4, dtype=torch.float64))  # broadcast mask
    assert torch.equal(irrel, torch.zeros_like(irrel))
    torch.testing.assert_close(rel, model(x), rtol=0, atol=1e-12)


def test_relevant_part_is_linear_for_bias_free_linear_model():
    torch.manual_seed(0)
    model = nn.Linear(6, 2, bias=False).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    mask = _random_mask(x.shape)
    rel, irrel = contextual_decomposition(model, x, mask)
    torch.testing.assert_close(rel, (x * mask) @ model.weight.T, rtol=0, atol=1e-12)


class _Custom(nn.Module):
    def forward(self, x):
        return x * 2


def test_all_unsupported_layers_listed_in_one_error():
    model = nn.Sequential(nn.Linear(3, 3), _Custom(), nn.Sequential(nn.ReLU(), nn.GELU()), nn.LSTM(3, 3))
    with pytest.raises(UserError) as info:
        contextual_decomposition(model, torch.rand(2, 3), torch.ones(2, 3))
    message = str(info.value)
    for name in ("1 (_Custom)", "2.1 (GELU)", "3 (LSTM)"):
        assert name in message
    assert "Linear" not in message and "ReLU" not in message


def test_custom_container_is_traced_not_skipped():
    # formerly refused as a whole; now traced with torch.fx, and what it calls must have rules
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x).relu()

    class Sorted(Net):
        def forward(self, x):
            return self.fc(x).sort(1).values

    x = torch.rand(2, 3, dtype=torch.float64)
    net = Net().double()
    rel, irrel = contextual_decomposition(net, x, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(rel + irrel, net(x), rtol=0, atol=1e-12)
    with pytest.raises(UserError, match=r"Tensor\.sort"):
        contextual_decomposition(Sorted(), torch.rand(2, 3), torch.ones(2, 3))


def test_registered_rule_is_used():
    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    register_cd_rule(Double, lambda m, r, i, opts: (2 * r, 2 * i))
    with pytest.raises(UserError):
        register_cd_rule(Double, lambda m, r, i, opts: (r, i))
    x = torch.rand(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    rel, irrel = contextual_decomposition(nn.Sequential(Double()), x, mask)
    torch.testing.assert_close(rel, 2 * x * mask)


def test_bad_arguments():
    model = _mlp()
    x = torch.rand(2, 3, 4, dtype=torch.float64)
    with pytest.raises(UserError, match="mask shape"):
        contextual_decomposition(model, x, torch.ones(2, 5))
    with pytest.raises(UserError, match="bias_rule"):
        contextual_decomposition(model, x, torch.ones_like(x), bias_rule="half")
    with pytest.raises(UserError, match="activation_rule"):
        contextual_decomposition(model, x, torch.ones_like(x), activation_rule="other")


def test_differentiable_gradcheck_and_parameter_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    x = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: contextual_decomposition(model, t, mask)[0], (x,))
    rel, _ = contextual_decomposition(model, x.detach(), mask)
    grads = torch.autograd.grad(rel.sum(), list(model.parameters()))
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_sequential_subclasses_walked_only_without_their_own_forward():
    class Plain(nn.Sequential):
        pass

    class Scaled(nn.Sequential):
        def forward(self, x):
            return 3 * super().forward(x)

    torch.manual_seed(0)
    x = torch.rand(2, 4, dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    plain = Plain(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    rel, irrel = contextual_decomposition(plain, x, mask)
    torch.testing.assert_close(rel + irrel, plain(x), rtol=0, atol=1e-12)
    # a subclass with its own forward is traced (formerly refused): 3 * (its children in order)
    scaled = Scaled(*plain).double()
    rel3, irrel3 = contextual_decomposition(scaled, x, mask)
    torch.testing.assert_close(rel3, 3 * rel, rtol=0, atol=1e-12)
    torch.testing.assert_close(rel3 + irrel3, scaled(x), rtol=0, atol=1e-12)
