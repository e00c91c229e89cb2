"""ERM: empirical risk minimisation, the baseline.  loss = CE(f(x), y)."""

from .base import Method
from .registry import register_method


@register_method
class ERM(Method):
    """Plain cross-entropy; ignores masks. The baseline every explanation method must beat."""

    name = "erm"
    paper = "baseline"
    defaults = {}
    uses_mask = False
