"""A simulated interactive annotation loop: which masks to ask a person for, and how many are needed.

``guided_curve(config, budgets, strategies)``: per seed, train a model with no masks, then for each budget
(ascending) reveal the true masks of more training examples, chosen by a rule that sees only the current
model and the training inputs, never the masks; retrain and evaluate on the test split. What
``rightreasons guided-masks`` runs. The parts:

- :mod:`.loop`: :func:`guided_curve`, the budgets and the random strategy's keys;
- :mod:`.scores`: the per-example score each strategy ranks by (``random``, ``uncertainty``, ``saliency``,
  ``disagreement``) and :func:`choose`;
- :mod:`.steps`: one step's training (from scratch, only the revealed masks), once per revealed set;
- :mod:`.committee`: ``disagreement``'s find-another-explanation committee, once per revealed set;
- :mod:`.curve_files`: the curve's rows, the smallest budget reaching a target, curve.csv / curve.svg /
  revealed.json.
"""

from .committee import DEFAULT_COMMITTEE, CommitteeMember, check_committee, train_committee
from .curve_files import (
    COLUMNS,
    DEFAULT_TARGET,
    FILES,
    PALETTE,
    GuidedCurve,
    curve_csv,
    curve_svg,
    mean_curve,
    smallest_budget,
    write_curve,
)
from .loop import guided_curve, parse_budgets, random_key
from .scores import (
    DEFAULT_STRATEGIES,
    DEFAULT_TOP_FRACTION,
    STRATEGIES,
    choose,
    disagreement_scores,
    saliency_concentration,
    uncertainty_scores,
)

__all__ = ["COLUMNS", "CommitteeMember", "DEFAULT_COMMITTEE", "DEFAULT_STRATEGIES", "DEFAULT_TARGET",
           "DEFAULT_TOP_FRACTION", "FILES", "GuidedCurve", "PALETTE", "STRATEGIES", "check_committee", "choose",
           "curve_csv", "curve_svg", "disagreement_scores", "guided_curve", "mean_curve", "parse_budgets",
           "random_key", "saliency_concentration", "smallest_budget", "train_committee", "uncertainty_scores",
           "write_curve"]
