"""What keeps ``--help``, ``--version`` and ``list`` fast: the CLI imports no torch, pandas or matplotlib
until a command needs them (times are in benchmarks/cli_startup.py; this checks the cause)."""

import textwrap

import pytest
from fresh_python import python

HEAVY = ("torch", "torchvision", "pandas", "matplotlib")
RUN_CLI = """
import sys
from robustkit.cli import main
try:
    main({args!r})
except SystemExit as done:
    assert not done.code, done.code
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


def heavy_imports(args: list[str], **env: str) -> str:
    """The last line the CLI run with ``args`` prints in a fresh interpreter: the heavy modules it imported."""
    return python(RUN_CLI.format(args=args, heavy=HEAVY), **env).splitlines()[-1]


def test_importing_the_cli_imports_no_heavy_library():
    assert python(f"import sys, robustkit.cli; print([m for m in {HEAVY!r} if m in sys.modules])").strip() == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["list", "attacks"],
        ["list", "models"],
        ["list", "threats"],
        ["evaluate", "--help"],
        ["leaderboard", "--help"],
    ],
)
def test_quick_commands_import_no_heavy_library(args):
    assert heavy_imports(args) == "[]"


def test_third_party_attacks_are_listed(tmp_path):
    """An attack from the ``robustkit.attacks`` entry-point group appears beside the built-ins."""
    (tmp_path / "rk_fake_attack.py").write_text(
        textwrap.dedent('''
        class Nudge:
            """A third-party attack: one small step."""

            def __init__(self, *, eps: float = 0.1, steps: int = 1) -> None:
                self.eps, self.steps = eps, steps
    ''')
    )
    dist = tmp_path / "rk_fake_attack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rk-fake-attack\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[robustkit.attacks]\nnudge = rk_fake_attack:Nudge\n")
    listed = python("from robustkit.cli import main\nmain(['list', 'attacks'])", PYTHONPATH=str(tmp_path))
    assert "A third-party attack: one small step." in listed and "eps=0.1, steps=1" in listed and "pgd" in listed
