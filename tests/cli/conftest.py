"""The CLI tests' photo tree carries junk: every command must skip it with a warning line (on stderr,
where the CLI prints warnings, so none reaches pytest's warning summary)."""

from pathlib import Path

import pytest


@pytest.fixture
def face_tree(junk_tree) -> Path:
    """The shared face tree with a .DS_Store and a text file among the photos."""
    return junk_tree
