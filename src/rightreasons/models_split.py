"""Old import path of :mod:`rightreasons.models.split` (kept for existing code)."""

from .models.split import *  # noqa: F401,F403
from .models.split import SplitSequential, identity_linear, insert_mapping, mapping_parameters, split_model  # noqa: F401
