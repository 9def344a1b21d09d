"""docs/python-api.md runs as written: its ``python`` blocks, in order, as one
script in an empty directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_python_api_examples_run(tmp_path):
    blocks = re.findall(
        r"^```python\n(.*?)^```\n", DOC.read_text(encoding="utf-8"), flags=re.S | re.M
    )
    assert len(blocks) >= 7
    script = tmp_path / "api.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("100 ")
    assert "[('cnn-v1', 'Ciliate'), ('cnn-v2', 'Diatom')]" in lines
    assert "True" in lines  # fsck and the verified citation


def _doc_imports() -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every improv_vcs import in the docs' code (python
    blocks and inline examples)."""
    found = []
    for doc in [*DOC.parent.glob("*.md"), DOC.parent.parent / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        for module, names in re.findall(r"from (improv_vcs[\w.]*) import ([\w, ]+)", text):
            found.append((module, [n.strip() for n in names.split(",")]))
    return found


def test_every_public_name_resolves():
    import improv_vcs

    assert len(improv_vcs.__all__) == len(set(improv_vcs.__all__)) >= 50
    assert dir(improv_vcs) == improv_vcs.__all__
    for name in improv_vcs.__all__:
        assert getattr(improv_vcs, name) is not None, name


def test_docs_import_only_from_the_top_level_and_build_filters_as_objects():
    import improv_vcs

    imports = _doc_imports()
    assert len(imports) >= 8
    assert [m for m, _ in imports if m != "improv_vcs"] == []
    assert sorted({n for _, names in imports for n in names} - set(improv_vcs.__all__)) == []
    text = DOC.read_text(encoding="utf-8")
    assert re.findall(r"parse_(?:where|provenance|run)\(", text) == []
    assert "Where(" in text and "ProvenanceWhere(" in text and "Run(" in text


def test_the_error_tree_is_one_tree_with_the_documented_exit_codes():
    import importlib
    import inspect
    import pkgutil

    import improv_vcs
    from improv_vcs import ImprovError

    documented = dict(
        re.findall(r"^\| `(\w+)`.*\| (\d) \|$", DOC.read_text(encoding="utf-8"), flags=re.M)
    )
    public = {n: getattr(improv_vcs, n) for n in improv_vcs.__all__ if n.endswith("Error")}
    assert {
        n: str(e.exit_code) for n, e in public.items() if ImprovError in e.__bases__
    } == documented
    assert public["NotARepositoryError"].__bases__ == (public["NotFoundError"],)
    defined = set()
    for info in pkgutil.walk_packages(improv_vcs.__path__, "improv_vcs."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        defined |= {
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, Exception) and not issubclass(c, Warning) and c.__module__ == info.name
        }
    outside = sorted(c.__qualname__ for c in defined if not issubclass(c, ImprovError))
    assert outside == [
        "_TransientAnswer"
    ]  # a retry signal inside the HTTP helper, never raised out of it
    assert len(defined) >= 15
