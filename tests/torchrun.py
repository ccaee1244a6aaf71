"""Runs a command under torchrun for the multi-process tests, and fails with the workers' own error."""

from __future__ import annotations

import subprocess
import sys

# torchrun's own summary lines, which bury the worker's error under the launcher's traceback.
_LAUNCHER = ("torch/distributed/", "torch.distributed.", "ChildFailedError", "====", "----", "<frozen runpy>")


def torchrun(arguments: list[str], processes: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --standalone` (a free rendezvous port, so parallel or lingering runs cannot collide)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        *arguments,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        workers = [line for line in done.stderr.splitlines() if not any(part in line for part in _LAUNCHER)]
        raise AssertionError(f"torchrun exited {done.returncode}; workers' output:\n" + "\n".join(workers)[-6000:])
    return done
