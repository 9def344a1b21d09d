"""Citations: an identifier that pins a commit, a selection and its digest
(:mod:`.citation`), made from a snapshot, verified and materialized
against any copy of the repository (:mod:`.citing`)."""

from .citation import Citation, Pinned
from .citing import Verification, export, load, make, result_digest, verify

__all__ = [
    "Citation",
    "Pinned",
    "Verification",
    "export",
    "load",
    "make",
    "result_digest",
    "verify",
]
