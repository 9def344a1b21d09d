"""Test suites shipped with the package, for code that extends it.

:class:`StoreTests` checks a :class:`~improv_vcs.storage.Store` backend
against the store protocol. Importing this package needs nothing beyond
improv_vcs; running the tests needs pytest (a test dependency only), which
is imported when a test is skipped.
"""

from .store import StoreTests

__all__ = ["StoreTests"]
