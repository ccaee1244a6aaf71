"""PyTorch threads on a shared CPU: a tiny model's forward on 1 and on all threads, alone and beside busy cores.

Why the test suite runs on one thread (``tests/conftest.py``): its models are tiny, and when another job
holds a core, a multi-threaded operation waits for its slowest thread at every step. This measures it
side by side in one run: each setting's median time per forward, and its ratio to one thread.

    python benchmarks/threads_beside_a_busy_core.py [--model lenet5] [--batch 40] [--busy 1] [--repeats 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import pandas as pd
import torch

from robustkit.data import get_dataset
from robustkit.models import get_model


def _spin(stop) -> None:
    """A CPU-heavy neighbour: one core kept busy until told to stop."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _per_forward_ms(model: torch.nn.Module, x: torch.Tensor, threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    times = []
    with torch.no_grad():
        for _ in range(5):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--busy", type=int, default=1, help="cores a neighbour keeps busy in the second half")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    info = get_dataset("fashion-mnist").info
    model = get_model(args.model, info, seed=0).eval()
    x = torch.rand(args.batch, *info.input_shape)
    rows = []
    for busy in (0, args.busy):
        stop = multiprocessing.Event()
        neighbours = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(busy)]
        for process in neighbours:
            process.start()
        try:
            one = _per_forward_ms(model, x, 1, args.repeats)
            rows.append({"busy cores": busy, "threads": 1, "ms per forward": one, "× one thread": 1.0})
            if cores > 1:
                many = _per_forward_ms(model, x, cores, args.repeats)
                rows.append({"busy cores": busy, "threads": cores, "ms per forward": many, "× one thread": many / one})
        finally:
            stop.set()
            for process in neighbours:
                process.join()
    print(f"{args.model}, batch {args.batch}, {cores} cores, median of {args.repeats} forwards")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
