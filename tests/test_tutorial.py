"""docs/tutorial.md runs as written: every ``sh`` block is executed, in order,
in one shell in an empty directory, and what each prints matches the
``text`` block after it line by line (``…`` stands for anything)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)
MARK = "@@improv-tutorial-block"


def blocks(text: str) -> list[tuple[str, str | None]]:
    """Each ``sh`` block with the ``text`` block right after it (or None)."""
    found = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(text)]
    out = []
    for i, (lang, body, _, end) in enumerate(found):
        if lang != "sh":
            continue
        following = found[i + 1] if i + 1 < len(found) else None
        shown = (
            following[1]
            if following and following[0] == "text" and not text[end : following[2]].strip()
            else None
        )
        out.append((body, shown))
    return out


def matches(expected: str, actual: str) -> bool:
    pattern = "".join(
        ".*" if part == "…" else re.escape(part) for part in re.split("(…)", expected)
    )
    return re.fullmatch(pattern, actual) is not None


def test_tutorial_runs_and_prints_what_it_shows(tmp_path):
    steps = blocks(DOC.read_text(encoding="utf-8"))
    assert len(steps) >= 10
    script = ["set -euo pipefail"]
    for n, (body, _) in enumerate(steps):
        script += [f"echo {MARK} {n}", "{", body, "} 2>&1"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "IMPROV_AUTHOR": "Ada Lovelace <ada@example.org>",
        "HOME": str(tmp_path),
    }
    env.pop("IMPROV_REPO", None)
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outputs = re.split(rf"^{MARK} \d+\n", done.stdout, flags=re.M)[1:]
    assert done.returncode == 0, (
        f"block {len(outputs) - 1} "
        f"failed:\n{steps[len(outputs) - 1][0]}\n{outputs[-1]}{done.stderr}"
    )
    assert len(outputs) == len(steps)
    for (body, shown), printed in zip(steps, outputs):
        if shown is None:
            continue
        want, got = (
            shown.rstrip("\n").splitlines(),
            [line.rstrip() for line in printed.rstrip("\n").splitlines()],
        )
        assert len(want) == len(got), f"{body}\nexpected:\n{shown}\ngot:\n{printed}"
        for w, g in zip(want, got):
            assert matches(w, g), f"{body}\nexpected line: {w!r}\ngot line:      {g!r}"
