"""The combinations Heo et al. (NeurIPS 2023) found best: robustness inside the mask plus RRR's input
gradient penalty (Ross et al. 2017), built from the parts with :func:`combine` (penalties summed; the
first part sets the clean-CE weight, so IBP-Ex's kappa schedule applies).

    pgd_ex+rrr:  CE + alpha * CE(x_adv) + lam * ||m * grad_x s(f(x))||^2
    ibp_ex+rrr:  kappa * CE + (1 - kappa) * CE(z_worst) + lam * ||m * grad_x s(f(x))||^2

Hyperparameters are the union of the parts' (see pgd_ex.py, ibp_ex.py, rrr.py).
"""

from .combined import combine
from .ibp_ex import IbpEx
from .pgd_ex import PgdEx
from .rrr import RRR

PgdExRRR = combine(PgdEx, RRR)
IbpExRRR = combine(IbpEx, RRR)
