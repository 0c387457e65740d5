"""code_version: the commit, and "-dirty" only when the code (not the tracked results) differs from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mdbd import __version__
from mdbd.core.provenance import _code_version


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path) -> Path:
    root = tmp_path / "repo"
    (root / "mdbd").mkdir(parents=True)
    (root / "results" / "laptop").mkdir(parents=True)
    (root / "mdbd" / "model.py").write_text("x = 1\n")
    (root / "results" / "laptop" / "table.csv").write_text("value\n0.5\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    return root


def test_a_rewritten_results_file_keeps_the_version_clean_and_an_edited_module_does_not(checkout):
    sha = _git(checkout, "rev-parse", "--short", "HEAD")
    assert _code_version(checkout) == f"{__version__}+{sha}"
    (checkout / "results" / "laptop" / "table.csv").write_text("value\n0.6\n")  # what a chain run does
    assert _code_version(checkout) == f"{__version__}+{sha}"
    (checkout / "mdbd" / "model.py").write_text("x = 2\n")
    assert _code_version(checkout) == f"{__version__}+{sha}-dirty"


def test_outside_a_git_checkout_the_bare_version(tmp_path):
    assert _code_version(tmp_path) == __version__
