"""Online Group DRO (Sagawa, Koh, Hashimoto & Liang, ICLR 2020, "Distributionally Robust Neural
Networks for Group Shifts", Algorithm 1): minimise the worst group's loss by exponentiated-gradient
weights over groups.

Per minibatch, with l_g the mean CE over the batch's examples of group g (0 for a group absent from
the batch) and n_g the group's size in the training set:

    q_g <- q_g * exp(step_size * (l_g + C / sqrt(n_g)));   q <- q / sum(q)
    loss = sum_g q_g * l_g                                 (q detached: no gradient through q)

C is the generalisation adjustment (0 = none). Needs groups, not masks (``uses_mask = False``).

The weights q are method state (``state_dict``: the list of q, and the group counts). The trainer
does not tell methods how many groups there are, so q grows as group ids appear: the batch's largest
group id G sets the size, and growing from k to G+1 groups rescales the old weights by k/(G+1) and
gives each new group 1/(G+1) (uniform stays uniform). Pass ``num_groups`` to fix the size from the
start (ids out of range are then an error). n_g is counted from the batches seen: during the first
epoch the running counts, afterwards the counts of the last complete epoch (= the training-set sizes).
Each :meth:`loss` call updates q (it is the online algorithm): call it once per training step. Under
DistributedDataParallel the group losses of all processes are summed for the update, so q stays equal
on every process.

On Decoy-MNIST the groups to use are label x swatch shade: ``--data-option groups=label_shade``
(group = 10 * label + shade digit). But in the training split of every decoy variant the shade always
equals the label, so the training groups are just the labels and Group DRO only reweights classes; it
cannot see, let alone up-weight, the shortcut-breaking groups. Group DRO needs minority groups in the
training data: ``--data-option minority=F`` redraws the shade of a fraction F of the training examples
(F = 0.01 gives ~5 examples per off-diagonal group). The adjustment C / sqrt(n_g) favours small groups
(Sagawa et al. use it for small groups too); with groups of thousands (e.g. labels) C = 2 adds ~0.03 to
each group's loss.

Parameters: ``step_size`` (0.01) the exponentiated-gradient step eta_q; ``adjustment`` (2.0) C;
``num_groups`` (0 = grow with the group ids seen).

Why these defaults: docs/results/method-tuning.md#group_dro
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..errors import UserError
from .base import LossOutput, Method
from .registry import register_method


def group_means(values: torch.Tensor, group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group mean of ``values`` (0 for an empty group) and per-group counts, shape (num_groups,)."""
    counts = torch.bincount(group, minlength=num_groups).to(values.dtype)
    sums = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add(0, group, values)
    return sums / counts.clamp_min(1), counts


def _synced_max(value: int) -> int:
    """``value`` maximised over the processes of a distributed run (itself otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _synced_sums(sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group loss sums and counts (float64, CPU), summed over the processes of a distributed run,
    so that every process updates q from the same global batch."""
    t = torch.stack([sums.to(torch.float64).cpu(), counts.to(torch.float64).cpu()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t[0], t[1]


@register_method
class GroupDRO(Method):
    """sum_g q_g * CE_g with q updated by exponentiated gradient on the group losses (Sagawa et al. 2020)."""

    name = "group_dro"
    defaults = {"step_size": 0.01, "adjustment": 2.0, "num_groups": 0}
    bounds = {"step_size": (0.0, None), "adjustment": (0.0, None), "num_groups": (0, None)}
    uses_mask = False
    paper = "Sagawa, Koh, Hashimoto & Liang, ICLR 2020"
    composable = False
    not_composable = ("its objective is the group-weighted cross-entropy itself, not the clean cross-entropy "
                      "plus a penalty")

    def __init__(self, **params):
        super().__init__(**params)
        n = self.num_groups
        self.q = torch.full((n,), 1.0 / n, dtype=torch.float64) if n else torch.zeros(0, dtype=torch.float64)
        self.counts = torch.zeros(n, dtype=torch.float64)  # n_g of the last complete epoch
        self.running = torch.zeros(n, dtype=torch.float64)  # n_g seen in the current epoch

    def _grow(self, size: int) -> None:
        old = len(self.q)
        if size <= old:
            return
        if self.num_groups:
            raise UserError(f"method 'group_dro': group id {size - 1} out of range for num_groups={self.num_groups}")
        q = torch.full((size,), 1.0 / size, dtype=torch.float64)
        q[:old] = self.q * (old / size)
        pad = torch.zeros(size - old, dtype=torch.float64)
        self.q, self.counts, self.running = q, torch.cat([self.counts, pad]), torch.cat([self.running, pad])

    def loss(self, model, batch, ctx=None):
        logits = model(batch.x)
        per_example = F.cross_entropy(logits, batch.y, reduction="none")
        if len(batch) and int(batch.group.min()) < 0:
            raise UserError(f"method 'group_dro': negative group id {int(batch.group.min())}")
        self._grow(_synced_max(int(batch.group.max()) + 1 if len(batch) else 0))
        group_loss, counts = group_means(per_example, batch.group, len(self.q))
        sums, counts = _synced_sums(group_loss.detach() * counts, counts)  # the global batch under DDP
        self.running += counts
        sizes = self.counts if bool((self.counts > 0).any()) else self.running
        adjusted = sums / counts.clamp_min(1)
        if self.adjustment:
            adjusted = adjusted + torch.where(sizes > 0, self.adjustment / sizes.clamp_min(1).sqrt(), 0.0)
        q = self.q * torch.exp(self.step_size * adjusted)
        self.q = q / q.sum()
        robust = (self.q.to(group_loss) * group_loss).sum()
        ce = per_example.mean()
        terms = {"ce": ce.detach(), "group_dro": robust.detach(), "max_group_weight": self.q.max().to(ce)}
        return LossOutput(robust, logits, terms)

    def start_epoch(self, epoch, num_epochs):
        if bool((self.running > 0).any()):
            self.counts, self.running = self.running, torch.zeros_like(self.running)

    def state_dict(self):
        return {"q": self.q.tolist(), "counts": self.counts.tolist(), "running": self.running.tolist()}

    def load_state_dict(self, state):
        unknown = sorted(set(state) - {"q", "counts", "running"})
        if unknown:
            raise UserError(f"method 'group_dro': unknown state keys {unknown}")
        q = torch.tensor(state.get("q", []), dtype=torch.float64)
        lengths = {len(q), len(state.get("counts", q)), len(state.get("running", q))}
        if (len(lengths) != 1 or (self.num_groups and len(q) != self.num_groups)
                or (len(q) and not math.isclose(q.sum().item(), 1.0, rel_tol=1e-6))):
            raise UserError(f"method 'group_dro': state does not fit (q of length {len(q)}, "
                            f"num_groups={self.num_groups})")
        self.q = q
        self.counts = torch.tensor(state.get("counts", [0.0] * len(q)), dtype=torch.float64)
        self.running = torch.tensor(state.get("running", [0.0] * len(q)), dtype=torch.float64)
