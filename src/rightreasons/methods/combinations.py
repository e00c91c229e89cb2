"""The combinations Heo et al. (NeurIPS 2023) found best: robustness inside the mask plus RRR's input
gradient penalty (Ross et al. 2017), built from the parts with :func:`combine` (penalties summed; IBP-Ex,
the part that weights the clean CE, sets its weight, so its kappa schedule applies).

    pgd_ex+rrr:  CE + alpha * CE(x_adv) + lam * ||m * grad_x s(f(x))||^2
    ibp_ex+rrr:  kappa * CE + (1 - kappa) * CE(z_worst) + lam * ||m * grad_x s(f(x))||^2

Hyperparameters are the union of the parts' (see pgd_ex.py, ibp_ex.py, rrr.py). Some defaults differ
from the parts alone:

    ibp_ex+rrr:  eps 0.05 (ibp_ex: 1), clip_min / clip_max none (the training data's range;
                 ibp_ex: -inf / inf, no clamp)
    pgd_ex+rrr:  eps 0.3 (pgd_ex: 1), lam 1 (rrr: 10), step_factor 1 (pgd_ex: 2.5),
                 clip_min -inf / clip_max inf (no clamp; pgd_ex: the data's range)

pgd_ex+rrr's attack box and steps follow Heo et al.'s public code (not clipped to the data range, steps
of eps / steps). The robust part's radius is smaller than the part alone's: with RRR flattening the
masked region locally the box need not span the whole data range, and a box that does (eps = 1 on
[0, 1] inputs) contains images a mask as large as half the image cannot be invariant to (a second digit
drawn into the masked half).

Why these defaults: docs/results/method-tuning.md#combinations
"""

import math

from .combined import combine
from .ibp_ex import IbpEx
from .pgd_ex import PgdEx
from .rrr import RRR

PgdExRRR = combine(PgdEx, RRR)
IbpExRRR = combine(IbpEx, RRR)
PgdExRRR.__module__ = IbpExRRR.__module__ = __name__  # documented by this module's docstring
IbpExRRR.defaults = {**IbpExRRR.defaults, "eps": 0.05, "clip_min": None, "clip_max": None}  # the data's range
PgdExRRR.defaults = {**PgdExRRR.defaults, "eps": 0.3, "lam": 1.0, "step_factor": 1.0,
                     "clip_min": -math.inf, "clip_max": math.inf}
