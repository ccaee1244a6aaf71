"""Checkpoints the CLI tests train once per module."""

from __future__ import annotations

import pytest


def train_once(tmp_path_factory, stem: str, *args: str):
    """A checkpoint trained by ``robustkit train ARGS --out …`` in a home of its own (for module-scoped fixtures)."""
    from click.testing import CliRunner

    from robustkit.cli import main

    folder = tmp_path_factory.mktemp(stem)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROBUSTKIT_HOME", str(folder / "home"))
        result = CliRunner().invoke(main, ["train", *args, "--out", str(folder / f"{stem}.safetensors")])
    assert result.exit_code == 0, result.output
    return folder / f"{stem}.safetensors"
