"""docs/python-api.md runs as written: its ``python`` blocks, in order, as one
script in an empty directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_python_api_examples_run(tmp_path):
    blocks = re.findall(r"^```python\n(.*?)^```\n", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) >= 7
    script = tmp_path / "api.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("100 ")
    assert "[('cnn-v1', 'Ciliate'), ('cnn-v2', 'Diatom')]" in lines
    assert "True" in lines  # fsck and the verified citation
