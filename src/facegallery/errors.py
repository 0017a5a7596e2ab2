"""Errors a user can cause, by kind. Each interface maps a kind to its own form: the CLI prints one line
and exits with status 2; the HTTP service answers 404 / 409 / 422 / 413 (400 for the plain base) with
a JSON body ``{"error": "<the one line>"}``."""


class UserError(Exception):
    """A mistake in the input (missing folder, broken file, bad name): reported, never a traceback."""


class NotFound(UserError):
    """Something named does not exist: a person, a stored photo, a gallery file."""


class Conflict(UserError):
    """The request clashes with what is stored: a name already taken, another model's embeddings, an
    empty gallery asked to identify."""


class InvalidInput(UserError):
    """A value or file that cannot be used: not a picture, a bad name, a threshold out of range."""


class TooLarge(UserError):
    """Beyond a configured limit: pixels per photo, bytes per upload or request, photos per request."""


class ReadOnly(UserError):
    """A write to a gallery that can only be read (a read-only file, folder or database user)."""


class Unavailable(UserError):
    """The gallery's database server cannot be reached now (HTTP 503); trying again later may work."""
