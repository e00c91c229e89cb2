"""The one sign-gradient PGD loop (ops.pgd.sign_pgd), against a slow obvious loop and by invariants."""

import torch

from rightreasons.ops.pgd import sign_pgd


def reference(objective, start, lower, upper, steps, step, maximize):
    x = start.clone()
    for _ in range(steps):
        z = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(objective(z), z)
        x = x + (step if maximize else -step) * torch.sign(g)
        x = torch.max(torch.min(x, upper), lower)
    return x


def problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    radius = (torch.rand(4, 6, generator=g, dtype=torch.float64) > 0.5).double() * 0.3
    return x, w, x - radius, x + radius


def test_matches_the_obvious_loop_both_ways():
    x, w, lower, upper = problem()

    def objective(z):
        return torch.tanh(z @ w).pow(2).sum()

    for maximize in (True, False):
        ours = sign_pgd(objective, x, lower, upper, steps=7, step_size=0.05, maximize=maximize)
        torch.testing.assert_close(ours, reference(objective, x, lower, upper, 7, 0.05, maximize), rtol=0, atol=1e-15)


def test_fixed_features_never_move_and_the_box_holds():
    x, w, lower, upper = problem(1)
    seen = []
    out = sign_pgd(lambda z: (z @ w).sum(), x, lower, upper, steps=5, step_size=1.0,
                   on_step=lambda z: seen.append(z.clone()))
    fixed = lower == upper
    assert torch.equal(out[fixed], x[fixed])
    assert bool((out >= lower).all() and (out <= upper).all())
    assert len(seen) == 5 and torch.equal(seen[-1], out)
    # a linear objective with large steps lands on the corner its gradient points to
    corner = torch.where(w.sum(1) > 0, upper, lower)
    assert torch.equal(out[~fixed], corner[~fixed])
    assert not out.requires_grad and not x.requires_grad
