"""Evaluation on ImageNet-size folders: peak memory and time must not grow with the folder.

Generates ImageNet-like folders (JPEGs of ~500×375, 1000 class folders, the ILSVRC-2012 ``val/``
layout) of increasing size, then in a fresh process per size evaluates a fixed subset with FGSM on a
small model at 224 px through the ``imagenet`` data set (streaming: only the subset is decoded).
Prints folder size, indexing seconds, peak RSS (main process; workers), seconds, images/s, and a
decode-rate line: one core's decode rate × workers against the loader's measured rate.

    python benchmarks/data_scale.py                                  # 5 000, 20 000, 50 000 images
    python benchmarks/data_scale.py --sizes 2000 8000 --subset 200   # a short run

Disk: ~40 KB per image (2 GB at 50 000); folders are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CLASSES = 1000
POOL = 64  # distinct JPEGs written round-robin: decoding cost is real, generation stays quick

_CHILD = """
import json, resource, sys, time, torch
from torch import nn
from attacks import FGSM
from robustkit.data import get_dataset
from robustkit.data.files import Preprocess
from robustkit.evaluation.engine import evaluate_attack
import torchvision.datasets, torchvision.models  # imports are not indexing
root, subset_n, workers, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
data = get_dataset("imagenet", data_dir=root, image_size=size, workers=workers)
test = data.test
indexing = time.perf_counter() - start
subset = test.subset(subset_n, seed=0)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 16, 7, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, data.info.num_classes)).eval()
start = time.perf_counter()
result = evaluate_attack(model, subset, FGSM(eps=4 / 255), batch_size=64, progress=False)
seconds = time.perf_counter() - start
one = subset.take(torch.arange(min(64, len(subset))))
start = time.perf_counter()
for path in one.files:
    one.preprocess(path, None)
core_rate = len(one) / (time.perf_counter() - start)
start = time.perf_counter()
for _ in subset.batches(64):
    pass
loader_rate = len(subset) / (time.perf_counter() - start)
print(json.dumps({"indexing": indexing, "seconds": seconds, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "workers_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "core_rate": core_rate,
                  "loader_rate": loader_rate, "n": result.n}))
"""


def make_pool(seed: int = 0) -> list[bytes]:
    """JPEGs of ImageNet's typical size: smooth colour fields with noise, ~30–60 KB each."""
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    pool = []
    for _ in range(POOL):
        base = torch.rand(3, 6, 8, generator=generator)
        field = torch.nn.functional.interpolate(base[None], size=(375, 500), mode="bicubic", align_corners=False)[0]
        pixels = (field + 0.05 * torch.randn(3, 375, 500, generator=generator)).clamp(0, 1)
        buffer = io.BytesIO()
        Image.fromarray((pixels * 255).byte().permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=85)
        pool.append(buffer.getvalue())
    return pool


def make_folder(root: Path, n: int, pool: list[bytes]) -> float:
    """``n`` images in root/val/<wnid>/ over 1000 classes; returns the megabytes written."""
    written = 0
    for c in range(CLASSES):
        (root / "val" / f"n{c:08d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        blob = pool[i % len(pool)]
        (root / "val" / f"n{i % CLASSES:08d}" / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(blob)
        written += len(blob)
    return written / 2**20


def main() -> None:
    from robustkit.data.files import default_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000], help="Folder sizes (images).")
    parser.add_argument("--subset", type=int, default=1000, help="Images evaluated (a fixed, seeded subset).")
    parser.add_argument("--workers", type=int, default=default_workers(), help="Decoding processes.")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--root", type=Path, help="Where to generate the folders [a temporary folder].")
    parser.add_argument("--keep", action="store_true", help="Keep the generated folders.")
    args = parser.parse_args()
    base = args.root or Path(tempfile.mkdtemp(prefix="data_scale-"))
    pool = make_pool()
    rows = []
    try:
        for n in args.sizes:
            folder = base / f"imagenet-{n}"
            start = time.perf_counter()
            megabytes = make_folder(folder, n, pool)
            print(f"generated {n} images ({megabytes:.0f} MB) in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(folder), str(args.subset), str(args.workers), str(args.image_size)],
                capture_output=True,
                text=True,
            )
            if out.returncode:
                sys.exit(out.stderr)
            rows.append((n, json.loads(out.stdout.strip().splitlines()[-1])))
            if not args.keep:
                shutil.rmtree(folder)
    finally:
        if not args.keep and args.root is None:
            shutil.rmtree(base, ignore_errors=True)
    print(
        f"FGSM on {args.subset} images at {args.image_size} px, {args.workers} workers, {torch.get_num_threads()} threads"
    )
    print(f"{'folder':>8} {'index s':>8} {'peak RSS MB':>12} {'worker RSS MB':>14} {'seconds':>8} {'img/s':>7}")
    for n, r in rows:
        print(
            f"{n:>8} {r['indexing']:>8.2f} {r['rss'] / 1024:>12.0f} {r['workers_rss'] / 1024:>14.0f} "
            f"{r['seconds']:>8.1f} {r['n'] / r['seconds']:>7.1f}"
        )
    for n, r in rows:
        expected = r["core_rate"] * max(args.workers, 1)
        print(
            f"decode ({n}): one core {r['core_rate']:.0f} img/s × {max(args.workers, 1)} workers = {expected:.0f} "
            f"img/s; loader measured {r['loader_rate']:.0f} img/s ({r['loader_rate'] / expected:.2f} of it)"
        )


if __name__ == "__main__":
    main()
