"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A mistake in the input (missing folder, broken file, bad name): reported, never a traceback."""
