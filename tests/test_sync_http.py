"""The sync state machine of test_sync_stateful with the shared remote served
over HTTP (``improv serve`` on 127.0.0.1): push, pull, fetch, clone and
merges through the store protocol behave as with any other store."""

from __future__ import annotations

import os

from hypothesis import settings
from test_sync_stateful import SyncMachine

from improv_vcs.service.app import create_app
from improv_vcs.service.auth import Access, TokenEntry
from improv_vcs.service.server import BackgroundServer

TOKEN = "sync-machine-token-0123456789"
ACCESS = Access((TokenEntry(name="sites", token=TOKEN, scopes=("write",)),))


class HttpSyncMachine(SyncMachine):
    def serve(self, url: str) -> str:
        self._token = os.environ.get("IMPROV_TOKEN")
        os.environ["IMPROV_TOKEN"] = TOKEN
        self.server = BackgroundServer(create_app(url, ACCESS))
        return self.server.__enter__()

    def teardown(self):
        if hasattr(self, "server"):
            self.server.__exit__(None, None, None)
            if self._token is None:
                os.environ.pop("IMPROV_TOKEN", None)
            else:
                os.environ["IMPROV_TOKEN"] = self._token
        super().teardown()


HttpSyncMachine.TestCase.settings = settings(
    max_examples=max(3, settings.default.max_examples // 8), stateful_step_count=12, deadline=None
)
test_sync_over_http_state_machine = HttpSyncMachine.TestCase
