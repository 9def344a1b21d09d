"""Commands that read only commits and refs start without the data stack:
``log``, ``show``, ``branch``, ``tag`` and ``--version`` import neither
pyarrow, DuckDB nor numpy (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from improv_vcs.repository.repository import Repository

SCRIPT = """
import io, sys, contextlib
from improv_vcs.cli import _only_the_invoked_command, app
argv = sys.argv[1:]
_only_the_invoked_command(argv)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        app(argv)
    except SystemExit as exc:
        code = exc.code
heavy = sorted(m for m in ("pyarrow", "duckdb", "numpy", "pandas") if m in sys.modules)
print(json.dumps({"code": code, "out": out.getvalue(), "heavy": heavy}))
""".replace("import io,", "import json, io,")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repository:
    import os
    from datetime import datetime, timezone

    import pyarrow as pa

    repository = Repository.init(tmp_path_factory.mktemp("startup") / "r")
    with repository.transaction(message="first batch", author="t") as tx:
        tx.append_bytes(
            "IFCB1",
            pa.table({"image_id": ["a"], "timestamp": [datetime(2024, 5, 1, tzinfo=timezone.utc)]}),
            [os.urandom(10)],
        )
    repository.create_tag("v1", message="release")
    return repository


def run(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "command", [["log", "-n", "10"], ["log", "--oneline"], ["show"], ["branch"], ["tag"]]
)
def test_reading_commits_and_refs_needs_no_data_stack(repo: Repository, command: list[str]):
    result = run("-R", repo.url, *command)
    assert not result["code"] and result["heavy"] == []
    head = repo.resolve()
    if command[0] in ("log", "show", "branch"):
        assert head[:12] in result["out"]
    if command[0] == "log":
        assert "first batch" in result["out"]
    if command[0] == "tag":
        assert "v1" in result["out"]


def test_version_needs_no_data_stack():
    result = run("--version")
    assert result["heavy"] == [] and result["out"].strip()
