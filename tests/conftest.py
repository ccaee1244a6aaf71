"""Every test gets its own empty robustkit home, so nothing leaks between tests or from the user."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("robustkit-home")
    monkeypatch.setenv("ROBUSTKIT_HOME", str(home))
    monkeypatch.delenv("ROBUSTKIT_DATA", raising=False)
    return home
