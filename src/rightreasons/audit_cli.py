"""Old import path of the ``audit`` and ``data example`` commands (now in :mod:`rightreasons.cli`)."""

from .cli.audit import audit_command  # noqa: F401
from .cli.data import example_command  # noqa: F401
