"""Training methods behind one contract (see base.py); one method per module, each registered by name.

``create_method(name, **params)`` builds one; ``METHODS`` lists them. The classes are exported too, for
``RRR(lam=10)``-style use in your own training loop.
"""

from .avg_ex import AvgEx
from .base import LossOutput, Method, StepContext
from .cdep import CDEP
from .combinations import IbpExRRR, PgdExRRR
from .combined import Combined, combine
from .erm import ERM
from .feature_kl import FeatureKL
from .group_dro import GroupDRO
from .ibp_ex import IbpEx
from .ig_norm import IGNorm
from .ig_sum_norm import IGSumNorm
from .madry import Madry
from .pgd_ex import PgdEx
from .registry import METHODS, create_method, register_method
from .rrr import RRR, Certainty

__all__ = ["CDEP", "ERM", "METHODS", "RRR", "AvgEx", "Certainty", "Combined", "FeatureKL", "GroupDRO", "IGNorm",
           "IGSumNorm", "IbpEx", "IbpExRRR", "LossOutput", "Madry", "Method", "PgdEx", "PgdExRRR", "StepContext",
           "combine", "create_method", "register_method"]
