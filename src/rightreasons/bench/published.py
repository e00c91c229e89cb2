"""Published numbers to show beside ours, as data, each with its source.

Values are fractions (the papers' percentages / 100). ``metric`` names what the paper reports:
``accuracy`` (test accuracy), ``worst_group_accuracy``, or ``robust_accuracy`` (the label Heo et al.'s
table uses; we show it beside our worst-group accuracy but do not claim the two are the same metric).
Nothing here is typed from memory: each source says where in its publication the numbers are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Source:
    key: str
    citation: str
    where: str


@dataclass(frozen=True)
class Published:
    dataset: str
    method: str
    metric: str
    value: float
    std: Optional[float]
    source: str
    note: str = ""


SOURCES = {s.key: s for s in (
    Source("ross2017", "Ross, Hughes & Doshi-Velez, Right for the Right Reasons, IJCAI 2017 "
                       "(doi:10.24963/ijcai.2017/371)",
           "Section 4 (Decoy MNIST) of the paper"),
    Source("heo2023", "Heo, Piratla, Wicker & Weller, Use Perturbations when Learning from Explanations, "
                      "NeurIPS 2023 (arXiv:2303.06419)",
           "Table of robust accuracies (Decoy-MNIST column = the half-image variant, mean +- std; "
           "P+G = PGD-Ex + Grad-Reg, I+G = IBP-Ex + Grad-Reg)"),
    Source("ghitu2025", "Ghitu, Wicker & Piratla, Model Guidance via Robust Feature Attribution, TMLR 2025",
           "Worst-group accuracies from the results the authors publish with their code "
           "(R4/experiment_results/decoy_mnist.yaml)"),
    Source("chen2019", "Chen, Wu, Rastogi, Liang & Jha, Robust Attribution Regularization, NeurIPS 2019",
           "Table 1, the 'Nat Acc.' column of the MNIST rows (their model, not our MLP)"),
)}

PUBLISHED: tuple[Published, ...] = (
    Published("decoy-mnist", "rrr", "accuracy", 0.961, None, "ross2017"),
    # Heo et al. 2023, Decoy-MNIST (half-image variant), robust accuracy
    Published("decoy-mnist-half", "erm", "robust_accuracy", 0.105, 0.054, "heo2023"),
    Published("decoy-mnist-half", "group_dro", "robust_accuracy", 0.281, 0.001, "heo2023"),
    Published("decoy-mnist-half", "rrr", "robust_accuracy", 0.462, 0.011, "heo2023", "Grad-Reg"),
    Published("decoy-mnist-half", "cdep", "robust_accuracy", 0.100, 0.007, "heo2023"),
    Published("decoy-mnist-half", "avg_ex", "robust_accuracy", 0.195, 0.014, "heo2023"),
    Published("decoy-mnist-half", "pgd_ex", "robust_accuracy", 0.514, 0.003, "heo2023"),
    Published("decoy-mnist-half", "ibp_ex", "robust_accuracy", 0.476, 0.020, "heo2023"),
    Published("decoy-mnist-half", "pgd_ex+rrr", "robust_accuracy", 0.958, 0.004, "heo2023", "P+G"),
    Published("decoy-mnist-half", "ibp_ex+rrr", "robust_accuracy", 0.950, 0.006, "heo2023", "I+G"),
    # Ghitu, Wicker & Piratla 2025, Decoy-MNIST, worst-group accuracy
    Published("decoy-mnist", "ibp_ex+rrr", "worst_group_accuracy", 0.881, None, "ghitu2025"),
    Published("decoy-mnist", "ibp_ex", "worst_group_accuracy", 0.837, None, "ghitu2025"),
    Published("decoy-mnist", "rrr", "worst_group_accuracy", 0.854, None, "ghitu2025"),
    Published("decoy-mnist", "r4", "worst_group_accuracy", 0.948, None, "ghitu2025", "R4, the paper's own method"),
    # Chen et al. 2019, clean MNIST, natural accuracy
    Published("mnist", "erm", "accuracy", 0.9917, None, "chen2019", "NATURAL"),
    Published("mnist", "ig_norm", "accuracy", 0.9874, None, "chen2019"),
    Published("mnist", "ig_sum_norm", "accuracy", 0.9834, None, "chen2019"),
)

METRIC_LABELS = {"accuracy": "acc.", "worst_group_accuracy": "worst-group", "robust_accuracy": "robust acc."}


def published_for(dataset: str, method: Optional[str] = None) -> list[Published]:
    """Published entries for ``dataset`` (and ``method`` if given), in table order."""
    return [p for p in PUBLISHED if p.dataset == dataset and (method is None or p.method == method)]


def format_published(p: Published) -> str:
    """e.g. ``0.958 +- 0.004 robust acc. [heo2023]``."""
    std = f" +- {p.std:.3f}" if p.std is not None else ""
    return f"{p.value:.3f}{std} {METRIC_LABELS.get(p.metric, p.metric)} [{p.source}]"
