"""The code stays formatted and linted (CONTRIBUTING.md): `ruff format --check` and `ruff check` at line length 120
pass on the whole tree, and no line is exempted from the formatter by its skip marker."""

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]])
def test_ruff_is_clean(command):
    """Mutation run: a 130-character line added to dqn_atari.py (both commands fail, naming the file)."""
    out = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_line_is_exempt_from_the_formatter():
    """Mutation run: the formatter's skip marker appended to a line of c51_atari.py."""
    marker = "fmt: " + "skip"  # split, so that this file does not match itself
    exempt = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in [*ROOT.glob("*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmark/*.py")]
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if marker in line
    ]
    assert not exempt, exempt
