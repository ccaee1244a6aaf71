"""Training throughput of robustkit's loop: fp32 vs bf16 autocast, contiguous vs channels-last.

Runs the real ``train_model`` loop side by side on the same Fashion-MNIST images and prints
images/s and the speed-up over plain fp32 for each model. Usage:

    python benchmarks/train_throughput.py [--models smallcnn,resnet18] [--images 2048]
"""

from __future__ import annotations

import argparse
import logging

from robustkit.data import get_dataset
from robustkit.device import resolve_device
from robustkit.models import get_model
from robustkit.training.loop import TrainConfig, train_model

VARIANTS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,smallcnn,resnet18")
    parser.add_argument("--images", type=int, default=2048, help="training images per measurement")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data = get_dataset("fashion-mnist")
    train = data.train.subset(args.images, seed=0)
    device = resolve_device(args.device)
    print(f"device {device}, {len(train)} images, batch 128, one epoch each (after one warm-up epoch)")
    print(f"{'model':<10} {'precision':<9} {'layout':<14} {'img/s':>8} {'vs fp32':>8}")
    for name in args.models.split(","):
        baseline = None
        for precision, channels_last in VARIANTS:
            model = get_model(name, data.info, seed=0)
            config = TrainConfig(epochs=2, precision=precision, channels_last=channels_last)
            result = train_model(model, train, config, device=device, progress=False)
            rate = result.history[-1]["images_per_second"]  # the second epoch: warm caches and kernels
            baseline = baseline or rate
            layout = "channels_last" if channels_last else "contiguous"
            print(f"{name:<10} {precision:<9} {layout:<14} {rate:>8.0f} {rate / baseline:>7.2f}×", flush=True)


if __name__ == "__main__":
    main()
