"""What installing and testing print: the licence as setuptools wants it, and every skip with its reason."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_licence_is_an_spdx_expression_with_its_files():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # a {text = ...} table makes setuptools print a deprecation, twice
    assert all(any(ROOT.glob(pattern)) for pattern in project["license-files"])


def test_a_skipped_test_is_listed_with_its_reason(tmp_path):
    """``make test`` runs pytest with the project's options: a skip (the page tests without chromium)
    shows in the summary rather than passing silently."""
    (tmp_path / "test_skips.py").write_text("import pytest\n\n\ndef test_page():\n    pytest.skip('no chromium')\n")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", ".", "test_skips.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "SKIPPED [1] test_skips.py:5: no chromium" in out.stdout, out.stdout
