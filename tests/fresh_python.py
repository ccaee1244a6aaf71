"""Run code in a fresh interpreter on this checkout: what a process imports shows only there."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python(code: str, **env: str) -> str:
    """Standard output of ``code`` run by a new interpreter; ``env`` adds variables (``PYTHONPATH`` goes after the checkout)."""
    path = os.pathsep.join(filter(None, [str(ROOT), env.pop("PYTHONPATH", None), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env, "PYTHONPATH": path},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
