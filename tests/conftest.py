"""Every test gets its own empty robustkit home, so nothing leaks between tests or from the user.

The suite runs PyTorch on one thread (and so do the processes it starts, through ``OMP_NUM_THREADS``)
unless the caller's environment says otherwise. Its models are tiny: their operations take
microseconds, and on a machine shared with another CPU-heavy job, two threads per operation wait on each
other at every step: a 40-image LeNet-5 forward took 20–54 ms on two threads against 3.5 ms on one,
beside a one-core training on 2 cores (issue 23). That made a full run take hours and pushed its
process rendezvous and lock waits toward their timeouts.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, here and in every child process

import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))  # in case a plugin imported torch first


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("robustkit-home")
    monkeypatch.setenv("ROBUSTKIT_HOME", str(home))
    monkeypatch.delenv("ROBUSTKIT_DATA", raising=False)
    return home
