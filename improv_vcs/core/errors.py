"""One error tree for the whole package.

Every error raised on purpose derives from :class:`ImprovError`; each subclass
also inherits the fitting builtin so callers can catch either. The CLI maps
each class to a one-line message and its own exit code.
"""

from __future__ import annotations


class ImprovError(Exception):
    """Base class of every error improv_vcs raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:  # KeyError would repr() its argument
        return " ".join(str(a) for a in self.args)


class InvalidInputError(ImprovError, ValueError):
    """Input (a table, a name, an option) is malformed; nothing was written."""

    exit_code = 2


class NotFoundError(ImprovError, KeyError):
    """A key, object, ref or image does not exist."""

    exit_code = 3


class NotARepositoryError(NotFoundError):
    """The path or URL does not hold an improv repository."""


class ConflictError(ImprovError):
    """A compare-and-swap lost, or content disagrees with what is committed."""

    exit_code = 4


class IntegrityError(ImprovError):
    """Stored bytes do not match their content hash, or a structure is corrupt."""

    exit_code = 5


class ReadOnlyError(ImprovError, PermissionError):
    """A write was attempted where writes are not allowed (e.g. moving a tag)."""

    exit_code = 6


class StorageError(ImprovError, OSError):
    """The underlying store failed (I/O error, network, permissions)."""

    exit_code = 7


class UnsupportedFormatError(ImprovError):
    """The repository (or an object in it) is of a format newer than this
    version of improv_vcs reads: upgrade improv_vcs (not a corruption)."""

    exit_code = 8
