"""A new user's first run, timed: README's main command on a fresh clone, from nothing to the table.

Clones this checkout's HEAD into a temporary folder and runs, as README says,
``./setup.sh && .venv/bin/robustkit evaluate --model resnet18 --attack pgd`` with an empty
``ROBUSTKIT_HOME`` (so ResNet-18 is trained first), stderr not a terminal (the progress lines a log
shows). Prints each phase's wall time, the trained model's test accuracy and the table's figures.

    python benchmarks/first_run.py                 # setup from nothing (pip downloads torch: network)
    python benchmarks/first_run.py --venv .venv    # reuse an installed venv: the run after setup alone

Issue 23's target: ≤ 5 min from nothing on 2 free cores, ResNet-18 at ≥ 90 % test accuracy.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [".venv/bin/robustkit", "evaluate", "--model", "resnet18", "--attack", "pgd"]


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}); its output: {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="an installed .venv to link in (skips pip: times the run alone)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone and its logs")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="robustkit-first-run-"))
    clone, home = work / "robustkit", work / "home"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    if args.venv:
        (clone / ".venv").symlink_to(args.venv.resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBUSTKIT_", "OMP_", "MKL_"))}
    env["ROBUSTKIT_HOME"] = str(home)
    setup = timed(["./setup.sh"], clone, env, work / "setup.log")
    run = timed(COMMAND, clone, env, work / "run.log")
    text = (work / "run.log").read_text()
    trained = re.search(r"test accuracy (\d\.\d+)", text)
    lines = [line for line in text.splitlines() if line.strip()]
    print(f"{'phase':<34} {'wall s':>8}")
    print(f"{'./setup.sh' + (' (venv reused)' if args.venv else ' (from nothing)'):<34} {setup:>8.0f}")
    print(f"{'robustkit evaluate (train + PGD)':<34} {run:>8.0f}")
    print(f"{'total':<34} {setup + run:>8.0f}   ({(setup + run) / 60:.1f} min; target ≤ 5 min)")
    print(f"ResNet-18 test accuracy after training: {trained.group(1) if trained else 'not printed'}")
    progress = [line for line in lines if "%" in line and "epoch" in line]
    print(f"progress lines in the log while training: {len(progress)}")
    print("the table:\n" + "\n".join(lines[-6:]))
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    else:
        print(f"kept: {work}")


if __name__ == "__main__":
    main()
