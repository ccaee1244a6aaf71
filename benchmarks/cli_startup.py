"""How long the quick CLI commands take as a whole process, beside a bare ``import torch``.

``--help``, ``--version`` and ``list`` should answer in under a second and ``leaderboard`` on a small
store in about two: none of them needs torch. Each command runs in a fresh process (the disk cache
stays warm, so "cold-ish"); the table gives the median, minimum and maximum wall time of ``--runs``
runs after one warm-up. ``leaderboard`` reads a 2-row store built first (lenet5 trained briefly on
the synthetic data set, FGSM at two ε) in a temporary ``ROBUSTKIT_HOME``.

    python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SUITE = {
    "name": "startup",
    "dataset": "synthetic",
    "n_samples": 32,
    "seed": 0,
    "batch_size": 32,
    "checks": False,
    "models": [{"model": "lenet5", "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "precision": "fp32"}}],
    "attacks": [{"attack": "fgsm", "norm": "linf", "eps": [0.1, 0.2]}],
}


def build_store(home: Path) -> Path:
    """A results store of two cells, written through the public API (seconds on a CPU)."""
    import torch

    from robustkit.evaluation.runner import run_suite
    from robustkit.suites.spec import load_suite

    suite_file, store = home / "startup.yaml", home / "startup.sqlite"
    suite_file.write_text(yaml.safe_dump(SUITE))
    run_suite(load_suite(suite_file), store, device=torch.device("cpu"), progress=False)
    return store


def wall_times(command: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Seconds per run of ``command`` in a fresh process, after one warm-up run; a failing run is an error."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        if i:  # the first run only warms the disk cache
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        os.environ["ROBUSTKIT_HOME"] = str(home)  # the checkpoint trained for the store goes here, not the user's cache
        store = build_store(home)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        cli = [sys.executable, "-m", "robustkit"]
        commands = {
            "robustkit --help": [*cli, "--help"],
            "robustkit --version": [*cli, "--version"],
            "robustkit list attacks": [*cli, "list", "attacks"],
            "robustkit list models": [*cli, "list", "models"],
            "robustkit evaluate --help": [*cli, "evaluate", "--help"],
            "robustkit leaderboard (2 rows)": [*cli, "leaderboard", str(store)],
            "python -c 'import torch' (reference)": [sys.executable, "-c", "import torch"],
        }
        width = max(map(len, commands))
        print(f"{'command':<{width}}  median s  min s  max s   ({args.runs} runs each, after one warm-up)")
        for name, command in commands.items():
            times = wall_times(command, args.runs, env)
            print(f"{name:<{width}}  {statistics.median(times):8.2f}  {min(times):5.2f}  {max(times):5.2f}", flush=True)


if __name__ == "__main__":
    main()
