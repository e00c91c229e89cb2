"""Published numbers to show beside ours, as data, each with its source.

Values are fractions (the papers' percentages / 100). ``metric`` names what the paper reports:
``accuracy`` (test accuracy), ``worst_group_accuracy``, ``robust_accuracy`` (the label Heo et al.'s
table uses; we show it beside our worst-group accuracy but do not claim the two are the same metric), or
Chen et al.'s ``adversarial_accuracy`` (accuracy under l_inf PGD, our ``PGD acc.``), ``topk_intersection`` and
``kendall`` (attribution robustness under the top-k attack, our ``top-k inter.`` and ``Kendall``).
Nothing here is typed from memory: each source says where in its publication the numbers are.

``dataset`` is a dataset name, or ``PREFIX:`` for a downloaded dataset at any path (``isic:``, ``plant:``);
``options`` are data options the runs must have for the entry to stand beside them (Heo et al.'s ISIC
numbers are for their layout, ``layout=heo``).
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
    #: (data option, value) pairs the runs must have (for ``PREFIX:`` datasets)
    options: tuple = ()

    def matches(self, dataset: str, data_options: Optional[dict] = None) -> bool:
        """Whether this entry is for runs on ``dataset`` with ``data_options``."""
        if self.dataset.endswith(":"):
            if not dataset.startswith(self.dataset) or dataset == self.dataset:
                return False
        elif dataset != self.dataset:
            return False
        given = data_options or {}
        return all(k in given and given[k] == v for k, v in self.options)


SOURCES = {s.key: s for s in (
    Source("ross2017", "Ross, Hughes & Doshi-Velez, Right for the Right Reasons, IJCAI 2017 "
                       "(doi:10.24963/ijcai.2017/371)",
           "Section 4 (Decoy MNIST) of the paper"),
    Source("heo2023", "Heo, Piratla, Wicker & Weller, Use Perturbations when Learning from Explanations, "
                      "NeurIPS 2023 (arXiv:2303.06419)",
           "Table of robust accuracies (Decoy-MNIST column = the half-image variant; Plant and ISIC columns = "
           "their plant phenotyping and ISIC data; mean +- std; P+G = PGD-Ex + Grad-Reg, I+G = IBP-Ex + Grad-Reg)"),
    Source("ghitu2025", "Ghitu, Wicker & Piratla, Model Guidance via Robust Feature Attribution, TMLR 2025",
           "Worst-group accuracies from the results the authors publish with their code "
           "(R4/experiment_results/decoy_mnist.yaml)"),
    Source("chen2019", "Chen, Wu, Rastogi, Liang & Jha, Robust Attribution Regularization, NeurIPS 2019",
           "The paper's table of experiment results, MNIST and Fashion-MNIST rows: natural accuracy, adversarial "
           "accuracy, top-k intersection, Kendall's tau (single runs of their models, not our MLP; NATURAL = erm, "
           "Madry et al. = madry; evaluated at their training radius, eps 0.3 on MNIST and 0.1 on Fashion-MNIST)"),
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
    # Heo et al. 2023, plant phenotyping (plant:PATH, any layout options) and ISIC (isic:PATH with layout=heo),
    # robust accuracy, the same table's Plant and ISIC columns
    Published("plant:", "erm", "robust_accuracy", 0.548, 0.013, "heo2023"),
    Published("plant:", "group_dro", "robust_accuracy", 0.580, 0.046, "heo2023"),
    Published("plant:", "rrr", "robust_accuracy", 0.682, 0.014, "heo2023", "Grad-Reg"),
    Published("plant:", "cdep", "robust_accuracy", 0.542, 0.247, "heo2023"),
    Published("plant:", "avg_ex", "robust_accuracy", 0.645, 0.003, "heo2023"),
    Published("plant:", "pgd_ex", "robust_accuracy", 0.785, 0.003, "heo2023"),
    Published("plant:", "ibp_ex", "robust_accuracy", 0.738, 0.017, "heo2023"),
    Published("plant:", "pgd_ex+rrr", "robust_accuracy", 0.767, 0.028, "heo2023", "P+G"),
    Published("plant:", "ibp_ex+rrr", "robust_accuracy", 0.801, 0.003, "heo2023", "I+G"),
    Published("isic:", "erm", "robust_accuracy", 0.559, 0.023, "heo2023", options=(("layout", "heo"),)),
    Published("isic:", "group_dro", "robust_accuracy", 0.585, 0.107, "heo2023", options=(("layout", "heo"),)),
    Published("isic:", "rrr", "robust_accuracy", 0.602, 0.074, "heo2023", "Grad-Reg", options=(("layout", "heo"),)),
    Published("isic:", "cdep", "robust_accuracy", 0.609, 0.030, "heo2023", options=(("layout", "heo"),)),
    Published("isic:", "avg_ex", "robust_accuracy", 0.552, 0.066, "heo2023", options=(("layout", "heo"),)),
    Published("isic:", "pgd_ex", "robust_accuracy", 0.644, 0.043, "heo2023", options=(("layout", "heo"),)),
    Published("isic:", "ibp_ex", "robust_accuracy", 0.642, 0.012, "heo2023", options=(("layout", "heo"),)),
    Published("isic:", "pgd_ex+rrr", "robust_accuracy", 0.675, 0.011, "heo2023", "P+G", options=(("layout", "heo"),)),
    Published("isic:", "ibp_ex+rrr", "robust_accuracy", 0.652, 0.018, "heo2023", "I+G", options=(("layout", "heo"),)),
    # Ghitu, Wicker & Piratla 2025, Decoy-MNIST, worst-group accuracy
    Published("decoy-mnist", "ibp_ex+rrr", "worst_group_accuracy", 0.881, None, "ghitu2025"),
    Published("decoy-mnist", "ibp_ex", "worst_group_accuracy", 0.837, None, "ghitu2025"),
    Published("decoy-mnist", "rrr", "worst_group_accuracy", 0.854, None, "ghitu2025"),
    Published("decoy-mnist", "r4", "worst_group_accuracy", 0.948, None, "ghitu2025", "R4, the paper's own method"),
    # Chen et al. 2019, MNIST (eps 0.3) and Fashion-MNIST (eps 0.1): natural accuracy, adversarial accuracy,
    # top-k intersection (the paper's percentages / 100) and Kendall's tau
    Published("mnist", "erm", "accuracy", 0.9917, None, "chen2019", "NATURAL"),
    Published("mnist", "erm", "adversarial_accuracy", 0.0, None, "chen2019", "NATURAL"),
    Published("mnist", "erm", "topk_intersection", 0.4661, None, "chen2019", "NATURAL"),
    Published("mnist", "erm", "kendall", 0.1758, None, "chen2019", "NATURAL"),
    Published("mnist", "madry", "accuracy", 0.984, None, "chen2019", "Madry et al."),
    Published("mnist", "madry", "adversarial_accuracy", 0.9247, None, "chen2019", "Madry et al."),
    Published("mnist", "madry", "topk_intersection", 0.6256, None, "chen2019", "Madry et al."),
    Published("mnist", "madry", "kendall", 0.2422, None, "chen2019", "Madry et al."),
    Published("mnist", "ig_norm", "accuracy", 0.9874, None, "chen2019", "IG-NORM"),
    Published("mnist", "ig_norm", "adversarial_accuracy", 0.8143, None, "chen2019", "IG-NORM"),
    Published("mnist", "ig_norm", "topk_intersection", 0.7136, None, "chen2019", "IG-NORM"),
    Published("mnist", "ig_norm", "kendall", 0.2841, None, "chen2019", "IG-NORM"),
    Published("mnist", "ig_sum_norm", "accuracy", 0.9834, None, "chen2019", "IG-SUM-NORM"),
    Published("mnist", "ig_sum_norm", "adversarial_accuracy", 0.8817, None, "chen2019", "IG-SUM-NORM"),
    Published("mnist", "ig_sum_norm", "topk_intersection", 0.7245, None, "chen2019", "IG-SUM-NORM"),
    Published("mnist", "ig_sum_norm", "kendall", 0.3111, None, "chen2019", "IG-SUM-NORM"),
    Published("fashion-mnist", "erm", "accuracy", 0.9086, None, "chen2019", "NATURAL"),
    Published("fashion-mnist", "erm", "adversarial_accuracy", 0.0001, None, "chen2019", "NATURAL"),
    Published("fashion-mnist", "erm", "topk_intersection", 0.3901, None, "chen2019", "NATURAL"),
    Published("fashion-mnist", "erm", "kendall", 0.461, None, "chen2019", "NATURAL"),
    Published("fashion-mnist", "madry", "accuracy", 0.8573, None, "chen2019", "Madry et al."),
    Published("fashion-mnist", "madry", "adversarial_accuracy", 0.7301, None, "chen2019", "Madry et al."),
    Published("fashion-mnist", "madry", "topk_intersection", 0.4612, None, "chen2019", "Madry et al."),
    Published("fashion-mnist", "madry", "kendall", 0.6251, None, "chen2019", "Madry et al."),
    Published("fashion-mnist", "ig_norm", "accuracy", 0.8513, None, "chen2019", "IG-NORM"),
    Published("fashion-mnist", "ig_norm", "adversarial_accuracy", 0.6595, None, "chen2019", "IG-NORM"),
    Published("fashion-mnist", "ig_norm", "topk_intersection", 0.5922, None, "chen2019", "IG-NORM"),
    Published("fashion-mnist", "ig_norm", "kendall", 0.6171, None, "chen2019", "IG-NORM"),
    Published("fashion-mnist", "ig_sum_norm", "accuracy", 0.8544, None, "chen2019", "IG-SUM-NORM"),
    Published("fashion-mnist", "ig_sum_norm", "adversarial_accuracy", 0.7026, None, "chen2019", "IG-SUM-NORM"),
    Published("fashion-mnist", "ig_sum_norm", "topk_intersection", 0.7208, None, "chen2019", "IG-SUM-NORM"),
    Published("fashion-mnist", "ig_sum_norm", "kendall", 0.6747, None, "chen2019", "IG-SUM-NORM"),
)

METRIC_LABELS = {"accuracy": "acc.", "worst_group_accuracy": "worst-group", "robust_accuracy": "robust acc.",
                 "adversarial_accuracy": "adv. acc.", "topk_intersection": "top-k inter.", "kendall": "Kendall"}


def published_for(dataset: str, method: Optional[str] = None, data_options: Optional[dict] = None) -> list[Published]:
    """Published entries for runs on ``dataset`` (a name or a ``PREFIX:PATH`` spec) with ``data_options`` (and
    of ``method`` if given), in table order."""
    return [p for p in PUBLISHED if p.matches(dataset, data_options) and (method is None or p.method == method)]


def format_published(p: Published) -> str:
    """e.g. ``0.958 +- 0.004 robust acc. [heo2023]``."""
    std = f" +- {p.std:.3f}" if p.std is not None else ""
    return f"{p.value:.3f}{std} {METRIC_LABELS.get(p.metric, p.metric)} [{p.source}]"
