"""Remakes the site's pictures in docs/images/ from real runs: ``python docs/make_pictures.py [NAME ...]``.

- ``leaderboard-curve``: the published Fashion-MNIST board's robust-accuracy-vs-ε plot, rendered again
  from its store (``benchmarks/leaderboards/fashion-mnist/results.sqlite``; nothing evaluated again);
- ``leaderboard-page``: that board's HTML page as headless Chromium shows it;
- ``fmn-curve``: one FMN run's ε-curve on smallcnn (200 images; trains smallcnn first if no checkpoint
  is cached, about 3 min);
- ``fooling``: smallcnn's ≥ 99 % fooling images, one per class, grown from noise;
- ``patches``: 6×6 adversarial patches on smallcnn, clean / δ / adversarial per broken image (100 images).

Each runs the ``robustkit`` command a user would, on one thread, and copies the figure it writes. The
committed PNGs are small; rerun this after a change that moves them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
BOARD = ROOT / "benchmarks" / "leaderboards" / "fashion-mnist"
ROBUSTKIT = [sys.executable, "-m", "robustkit"]


def shrink(png: Path) -> None:
    """A palette of 64 colours: charts and screenshots stay sharp at a third of the bytes."""
    from PIL import Image

    Image.open(png).convert("RGB").quantize(64).save(png, optimize=True)


def run(*args: str) -> None:
    print("$ robustkit", " ".join(args), flush=True)
    subprocess.run([*ROBUSTKIT, *args], check=True, cwd=ROOT)


def only(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.rglob(pattern))
    return found


def leaderboard_curve(out: Path) -> None:
    run(
        "leaderboard",
        str(BOARD / "results.sqlite"),
        "--suite",
        "fashion-mnist",
        "--headline",
        "linf:0.1",
        "--publish",
        "--out",
        str(out),
    )
    shutil.copy(only(out, "fashion-mnist.png"), IMAGES / "leaderboard-curve.png")


def leaderboard_page(out: Path) -> None:
    screenshot(BOARD / "fashion-mnist.html", IMAGES / "leaderboard-page.png", size="1280,900")


def fmn_curve(out: Path) -> None:
    run(
        "evaluate",
        "--model",
        "smallcnn",
        "--attack",
        "fmn",
        "--eps",
        "0.1",
        "--n-samples",
        "200",
        "--threads",
        "1",
        "--no-checks",
        "--save-examples",
        str(out),
    )
    shutil.copy(only(out, "*-curve.png"), IMAGES / "fmn-curve.png")


def fooling(out: Path) -> None:
    run("evaluate", "--model", "smallcnn", "--attack", "fooling", "--threads", "1", "--save-examples", str(out))
    shutil.copy(only(out, "*fooling*.png"), IMAGES / "fooling.png")


def patches(out: Path) -> None:
    run(
        "evaluate",
        "--model",
        "smallcnn",
        "--attack",
        "patch",
        "--eps",
        "6",
        "--n-samples",
        "100",
        "--threads",
        "1",
        "--no-checks",
        "--save-examples",
        str(out),
    )
    shutil.copy(only(out, "*-patch-eps6.png"), IMAGES / "patches.png")


def screenshot(page: Path, png: Path, *, size: str) -> None:
    """``page`` as headless Chromium renders it (no network: the pages are self-contained)."""
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={size}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
    )


PICTURES = {
    "leaderboard-curve": leaderboard_curve,
    "leaderboard-page": leaderboard_page,
    "fmn-curve": fmn_curve,
    "fooling": fooling,
    "patches": patches,
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(PICTURES)
    unknown = set(names) - set(PICTURES)
    if unknown:
        sys.exit(f"make_pictures: unknown picture {', '.join(sorted(unknown))} (have: {', '.join(PICTURES)})")
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as out:
            PICTURES[name](Path(out))
        shrink(IMAGES / f"{name}.png")
        print(f"wrote {IMAGES / name}.png")
