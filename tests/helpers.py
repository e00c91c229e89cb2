"""Small shared fixtures for tests: tiny models and tiny annotated datasets with a planted shortcut."""

from __future__ import annotations

import torch
from torch import nn

from rightreasons.batch import Batch
from rightreasons.data import DataSplits, ExplanationDataset


def tiny_mlp(in_shape=(1, 6, 6), classes=3, dtype=torch.float32, seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    n = 1
    for d in in_shape:
        n *= d
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 8), nn.ReLU(), nn.Linear(8, classes)).to(dtype)


def tiny_cnn(in_shape=(1, 6, 6), classes=3, dtype=torch.float32, seed=0) -> nn.Sequential:
    torch.manual_seed(seed)
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * (h // 2) * (w // 2), 6), nn.ReLU(), nn.Linear(6, classes),
    ).to(dtype)


def tiny_batch(n=5, in_shape=(1, 6, 6), classes=3, dtype=torch.float32, seed=0, partial=True) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *in_shape, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    mask = torch.zeros_like(x)
    mask[..., :2, :2] = 1
    has_mask = torch.ones(n, dtype=torch.bool)
    if partial:
        has_mask[-1] = False
    return Batch(x, y, mask, y.clone(), has_mask)


def shortcut_splits(n_train=600, n_eval=300, seed=0) -> DataSplits:
    """Two classes told apart by the mean of the bottom half; a 2x2 corner patch equals the label in
    train and is random at test time (the shortcut), masked everywhere."""
    g = torch.Generator().manual_seed(seed)

    def make(n, correlated):
        x = torch.rand(n, 1, 6, 6, generator=g)
        y = (x[:, 0, 3:].mean((1, 2)) > 0.5).long()
        shade = y.float() if correlated else torch.randint(0, 2, (n,), generator=g).float()
        x[:, 0, :2, :2] = shade.view(-1, 1, 1)
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, 0, :2, :2] = True
        return ExplanationDataset(x, y, mask, num_classes=2, name="shortcut")

    return DataSplits(make(n_train, True), make(n_eval, True), make(n_eval, False))


def trained_tiny_mlp(splits: DataSplits, classes: int = 2, steps: int = 60) -> nn.Sequential:
    """tiny_mlp fitted to ``splits.train`` by full-batch Adam (a model with meaningful saliency maps)."""
    model = tiny_mlp(classes=classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(splits.train.x), splits.train.y).backward()
        opt.step()
    return model


def chi2_independence(a, b, k: int = 10) -> float:
    """Pearson's chi-squared statistic of the k x k contingency table of integer arrays ``a`` and ``b``."""
    import numpy as np

    table = np.zeros((k, k))
    np.add.at(table, (a, b), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    keep = expected > 0
    return float(((table - expected)[keep] ** 2 / expected[keep]).sum())
