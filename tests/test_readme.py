"""The README's Python tour runs as it stands (it once named an undefined ``png_bytes``)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_tour() -> str:
    """The one ```python block of the README's "Quick tour: Python" section."""
    section = (ROOT / "README.md").read_text().split("## Quick tour: Python", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_the_python_tour_runs_verbatim(pubfig, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), FACEGALLERY_CACHE=str(tmp_path / "cache"))
    # from the checkout, as the README says: its ../shared/data is the data the pubfig fixture found
    out = subprocess.run(
        [sys.executable, "-c", python_tour()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 5 and lines[3].startswith("{") and lines[4].split()[-1] in ("True", "False"), out.stdout
