"""README fits a screen and points into the site (issue 36): its two commands are the ones CI and a new user
run, its Python tour runs as written, and every link it gives lands on a page of docs/. Its ``robustkit``
commands are parsed with the site's in ``test_docs``; the facts it used to hold are checked there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_docs import batch, blocks, run_code, stand_ins  # noqa: F401  (stand_ins: a fixture used below)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MKDOCS = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def test_readme_fits_a_screen_of_150_lines():
    assert len(README.splitlines()) <= 150


def test_the_two_commands_are_the_setup_and_the_ci_command():
    bash = blocks(README, "bash")
    assert "./setup.sh && .venv/bin/robustkit evaluate --model resnet18 --attack pgd\n" in bash
    assert "./setup.sh --test && .venv/bin/python -m pytest\n" in bash
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "./setup.sh --test" in ci and ".venv/bin/python -m pytest" in ci


def test_every_link_lands_on_a_page_of_the_site():
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert len(links) >= 15
    for link in links:
        assert (ROOT / link).is_file(), link
        assert link.removeprefix("docs/") in MKDOCS, f"{link} is not in mkdocs.yml's nav"


@pytest.mark.usefixtures("stand_ins")
def test_the_python_tour_runs_as_written():
    (code,) = blocks(README, "python")
    namespace = run_code(code, "README.md", batch())
    assert 0 <= namespace["report"].robust_accuracy <= 1 and namespace["report"].record["n"] == 16
