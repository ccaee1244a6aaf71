"""Common corruptions: robustkit vs the ``imagecorruptions`` package (Michaelis et al. 2019), same images.

``imagecorruptions`` carries ImageNet-C's parameters (MNIST-C's tables are mostly the same numbers), not
CIFAR-10-C's, so robustkit's functions are called here with imagecorruptions' own parameter at each
severity: the same corruption at the same setting in both. Its 2020 release needs NumPy < 2 (``np.float_``)
and scikit-image < 0.21 (``multichannel=``), so it runs in a separate environment given by ``--peer-python``,
made from wheels with ``python3.11 -m venv /tmp/icvenv2; /tmp/icvenv2/bin/pip install --only-binary :all:
numpy==1.26.4 scikit-image==0.20.0 scipy==1.11.4 opencv-python-headless imagecorruptions``; where it cannot
run, the table compares robustkit alone with the published parameter, and says so.

Per corruption and severity the table prints the statistic the parameter fixes, measured on each output
(noise σ, Poisson variance ratio, impulse share, contrast factor, value shift, block size…), the mean
absolute difference between the two outputs (0–255 levels) for the deterministic corruptions, and
milliseconds per 32×32 colour image for each. At strong settings clipping to [0, 1] pulls a measured noise σ
or value shift below its parameter in both tools alike.

    python benchmarks/corruptions_vs_imagecorruptions.py [--n 64] [--peer-python /tmp/icvenv2/bin/python] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from robustkit.corruptions import blur, digital, noise
from robustkit.corruptions.blur import zoom_factors
from robustkit.corruptions.filters import to_bytes
from robustkit.per_sample_random import SampleRandom

# imagecorruptions' (ImageNet-C's) parameter per severity, as its corruptions.py holds them
PEER = {
    "gaussian_noise": (noise.gaussian_noise, [0.08, 0.12, 0.18, 0.26, 0.38]),
    "shot_noise": (noise.shot_noise, [60, 25, 12, 5, 3]),
    "impulse_noise": (noise.impulse_noise, [0.03, 0.06, 0.09, 0.17, 0.27]),
    "defocus_blur": (blur.defocus_blur, [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]),
    "motion_blur": (blur.motion_blur, [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]),
    "zoom_blur": (
        blur.zoom_blur,
        [
            zoom_factors(1.11, 0.01),
            zoom_factors(1.16, 0.01),
            zoom_factors(1.21, 0.02),
            zoom_factors(1.26, 0.02),
            zoom_factors(1.31, 0.03),
        ],
    ),
    "brightness": (digital.brightness, [0.1, 0.2, 0.3, 0.4, 0.5]),
    "contrast": (digital.contrast, [0.4, 0.3, 0.2, 0.1, 0.05]),
    "pixelate": (digital.pixelate, [0.6, 0.5, 0.4, 0.3, 0.25]),
    "jpeg_compression": (digital.jpeg_compression, [25, 18, 15, 10, 7]),
}
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"}

PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
from imagecorruptions import corrupt
images = np.load(sys.argv[1])
names = json.loads(sys.argv[2])
out, seconds = {}, {}
for name in names:
    for s in range(1, 6):
        np.random.seed(s)
        start = time.perf_counter()
        out[f"{name}/{s}"] = np.stack([np.asarray(corrupt(im, corruption_name=name, severity=s), dtype=np.uint8) for im in images])
        seconds[f"{name}/{s}"] = (time.perf_counter() - start) / len(images)
np.savez(sys.argv[3], **out)
print(json.dumps(seconds))
"""


def statistic(name: str, clean: np.ndarray, bad: np.ndarray, parameter) -> tuple[str, float, float]:
    """(what, measured, what the parameter says it should be) for one corruption's outputs (uint8 N×H×W×3)."""
    x, y = clean.astype(float) / 255, bad.astype(float) / 255
    if name == "gaussian_noise":
        return "std of x_c − x", float((y - x).std()), parameter
    if name == "shot_noise":
        return "var / (x / c)", float((y - x).var() / (x.mean() / parameter)), 1.0
    if name == "impulse_noise":
        return "share changed", float((np.abs(y - x) > 0.1).mean()), parameter
    if name == "contrast":
        dx, dy = x - x.mean(axis=(1, 2), keepdims=True), y - y.mean(axis=(1, 2), keepdims=True)
        return "deviation factor", float((dx * dy).sum() / (dx * dx).sum()), parameter
    if name == "brightness":
        return "HSV value shift", float((y.max(-1) - x.max(-1)).mean()), parameter
    if name == "pixelate":
        runs = 1 + (np.diff(bad[..., 0].astype(int), axis=2) != 0).sum(axis=2)  # blocks per row
        return "block side (px)", float(x.shape[2] / runs.mean()), x.shape[2] / int(x.shape[2] * parameter)
    return "mean |x_c − x|", float(np.abs(y - x).mean()), float("nan")


def ours(images: np.ndarray, name: str, severity: int) -> tuple[np.ndarray, float]:
    apply, levels = PEER[name]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    start = time.perf_counter()
    y = apply(x, levels[severity - 1], SampleRandom(severity, torch.arange(len(x))))
    out = to_bytes(y).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out, (time.perf_counter() - start) / len(x)


def peer(images: np.ndarray, python: str) -> tuple[dict[str, np.ndarray], dict[str, float]] | str:
    """imagecorruptions' outputs and seconds per image, or why it could not run."""
    with tempfile.TemporaryDirectory() as folder:
        source, result = Path(folder) / "in.npy", Path(folder) / "out.npz"
        np.save(source, images)
        try:
            done = subprocess.run(
                [python, "-c", PEER_SCRIPT, str(source), json.dumps(list(PEER)), str(result)],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{python}: {err}"
        if done.returncode != 0:
            return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        with np.load(result) as data:
            return {k: data[k] for k in data.files}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="images per corruption and severity")
    parser.add_argument("--peer-python", default="/tmp/icvenv2/bin/python", help="a Python with imagecorruptions")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    # pixels uniform in 64…191: clipping stays rare at mild settings, so each statistic reads its parameter
    images = rng.integers(64, 192, (args.n, 32, 32, 3)).astype(np.uint8)
    theirs = peer(images, args.peer_python)
    ran = not isinstance(theirs, str)
    print(
        f"{args.n} images 32×32×3; imagecorruptions: {'ran (' + args.peer_python + ')' if ran else 'NOT RUN: ' + theirs}"
    )
    header = [
        "corruption",
        "sev",
        "parameter",
        "statistic",
        "target",
        "robustkit",
        "imagecorr.",
        "mean |Δ| levels",
        "ms/img ours",
        "ms/img peer",
    ]
    rows = []
    for name, (_, levels) in PEER.items():
        for severity in range(1, 6):
            mine, seconds = ours(images, name, severity)
            what, measured, target = statistic(name, images, mine, levels[severity - 1])
            peer_stat = diff = peer_ms = float("nan")
            if ran:
                out = theirs[0][f"{name}/{severity}"]
                peer_stat = statistic(name, images, out, levels[severity - 1])[1]
                diff = (
                    float(np.abs(out.astype(float) - mine.astype(float)).mean())
                    if name in DETERMINISTIC
                    else float("nan")
                )
                peer_ms = 1000 * theirs[1][f"{name}/{severity}"]
            shown = (
                levels[severity - 1]
                if name != "zoom_blur"
                else f"1…{levels[severity - 1][-1]:.2f} ({len(levels[severity - 1])})"
            )
            rows.append(
                [
                    name,
                    severity,
                    str(shown),
                    what,
                    f"{target:.4g}",
                    f"{measured:.4g}",
                    f"{peer_stat:.4g}",
                    f"{diff:.3g}",
                    f"{1000 * seconds:.3f}",
                    f"{peer_ms:.3f}",
                ]
            )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
    if not ran:
        print(
            "imagecorruptions could not be run here: the table compares robustkit's statistics with the published "
            "parameters only.",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
