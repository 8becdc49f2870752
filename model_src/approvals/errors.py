"""Errors that mean the user can fix something (bad file, option or name)."""


class UserError(Exception):
    """A mistake the user can fix: the CLI prints it as one line and exits with code 2."""
