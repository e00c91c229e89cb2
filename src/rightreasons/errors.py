"""Errors a user can cause and fix: bad names, parameters, files, shapes.

The CLI prints these as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Invalid input from the user (names the file, field or shape at fault)."""


class DataError(UserError):
    """A data source is missing, corrupt, or inconsistent."""
