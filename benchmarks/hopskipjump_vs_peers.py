"""HopSkipJump (L2, minimum-norm, untargeted): robustkit vs ART's and Foolbox's at equal query budgets.

Neither peer takes a query budget, so every attack, ours included, queries the model through one
counting wrapper (``Tracker``): it counts each image row a forward pass is given, and after the k-th
row it knows the smallest L2 distance of any misclassified image queried so far. The table gives that
distance's median over the images at 1k / 5k / 10k queries (an image with none yet counts as ∞), and
the seconds each attack took to spend 10k queries per image. The wrapper stops a run at 10k queries
(an exception the attack does not catch), so each attack runs one image at a time; robustkit's
batched run (all images in one call, what an evaluation does) is timed and measured beside it, there
by the median L2 norm of the examples it returns (verified by the base class), at each budget.

    OMP_NUM_THREADS=1 python benchmarks/hopskipjump_vs_peers.py [--n 50] [--threads 1] [--ours-only]

Settings (each the library's defaults where it has them, the paper's otherwise): 100 initial and at
most 10 000 gradient probes, geometric step-size search, γ = 1.0; ART ``max_iter`` and Foolbox
``steps`` set past what 10k queries allow, so the budget ends each run. Model: the cached standard
lenet5 on Fashion-MNIST (trained if missing); the first ``--n`` of the seeded test subset that it
classifies correctly.

Measured (n = 50, two CPU cores shared with other jobs, so the seconds compare only roughly): median L2
at 1k / 5k / 10k queries: robustkit 1.160 / 0.699 / 0.649 (224 s), ART 1.258 / 0.713 / 0.646 (623 s),
Foolbox 1.262 / 0.713 / 0.644 (1404 s); robustkit batched, examples returned: 1.160 / 0.697 / 0.649
(10k: 209 s).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor, nn

from attacks import HopSkipJump
from robustkit.data import get_dataset
from robustkit.predict import predict
from robustkit.weights.resolve import resolve_model

BUDGETS = (1000, 5000, 10000)


class Spent(Exception):
    """The budget's last query was made: the attack stops here."""


class Tracker(nn.Module):
    """The model, counting the rows it is given for one image ``x`` (label ``y``) and keeping, at each budget,
    the smallest L2 distance of a misclassified row queried by then."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def start(self, x: Tensor, y: int) -> None:
        self.x, self.y, self.spent, self.best = x, y, 0, math.inf
        self.at: dict[int, float] = {}

    def forward(self, images: Tensor) -> Tensor:
        if self.spent >= BUDGETS[-1]:
            raise Spent
        images = images.to(self.x.dtype)  # ART hands float64 arrays through
        logits = self.model(images)
        rows = logits[: BUDGETS[-1] - self.spent]  # rows past the budget are answered but never counted
        wrong = rows.argmax(1) != self.y
        dist = torch.where(wrong, (images[: len(rows)] - self.x).flatten(1).norm(dim=1), torch.tensor(math.inf))
        running = torch.minimum(dist.cummin(0).values, torch.tensor(self.best))
        for budget in BUDGETS:
            if self.spent < budget <= self.spent + len(rows):
                self.at[budget] = running[budget - self.spent - 1].item()
        self.spent += len(rows)
        self.best = running[-1].item()
        return logits

    def finish(self) -> list[float]:
        """The distance at each budget (a run that ended early keeps its last best)."""
        return [self.at.get(b, self.best) for b in BUDGETS]


def per_image(tracker: Tracker, x: Tensor, y: Tensor, run) -> tuple[list[list[float]], float]:
    """Each image attacked alone by ``run(image, label, index)`` through the tracker: distances per budget, seconds.
    ``index`` is the image's position, so robustkit draws its own stream per image, as in the batched run (with
    one stream for all, every image would share one start and one set of probes: one draw's luck, not 50)."""
    rows, start = [], time.perf_counter()
    for i in range(len(x)):
        tracker.start(x[i], int(y[i]))
        try:
            run(x[i : i + 1], y[i : i + 1], torch.tensor([i]))
        except Spent:
            pass
        rows.append(tracker.finish())
    return rows, time.perf_counter() - start


def peers(tracker: Tracker) -> list[tuple[str, object]]:
    """(label, run or the reason it cannot run) per peer library."""
    found: list[tuple[str, object]] = []
    try:
        from art.attacks.evasion import HopSkipJump as ArtHSJ
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            tracker, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0)
        )
        art = ArtHSJ(classifier, norm=2, max_iter=10_000, max_eval=10_000, init_eval=100, init_size=100, verbose=False)
        found.append(("ART HopSkipJump", lambda x, y, _: art.generate(x.numpy(), y=y.numpy())))
    except ImportError as error:
        found.append(("ART HopSkipJump", f"not importable: {error}"))
    try:
        import foolbox

        fmodel = foolbox.PyTorchModel(tracker, bounds=(0, 1))
        fb = foolbox.attacks.HopSkipJumpAttack(
            steps=10_000, initial_gradient_eval_steps=100, max_gradient_eval_steps=10_000, gamma=1.0, constraint="l2"
        )
        found.append(("Foolbox HopSkipJump", lambda x, y, _: fb.run(fmodel, x, y)))
    except ImportError as error:
        found.append(("Foolbox HopSkipJump", f"not importable: {error}"))
    return found


def median(values: list[float]) -> float:
    return torch.tensor(values).median().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="correctly classified test images attacked")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ours-only", action="store_true", help="robustkit's per-image row only (the peers take long)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = get_dataset("fashion-mnist")
    model = resolve_model("lenet5", data, device=torch.device("cpu")).model.eval()
    loaded = data.test.subset(4 * args.n, seed=0).load()
    keep = (predict(model, loaded.images) == loaded.labels).nonzero().squeeze(1)[: args.n]
    x, y = loaded.images[keep], loaded.labels[keep]
    tracker = Tracker(model).eval()
    print(f"lenet5 (standard) on Fashion-MNIST: {len(y)} correctly classified test images; {args.threads} thread(s)")
    print("median L2 of the closest misclassified image queried by then (one image at a time, one counting wrapper):")
    print(f"{'attack':<32} {'1k':>7} {'5k':>7} {'10k':>7} {'seconds':>8}")
    ours = HopSkipJump(eps=1.5, norm="l2", queries=BUDGETS[-1], min_norm=True)
    runs = [("robustkit HopSkipJump", lambda a, b, i: ours(tracker, a, b, index=i)), *peers(tracker)]
    for label, run in runs[: 1 if args.ours_only else None]:
        if isinstance(run, str):
            print(f"{label:<32} skipped ({run})")
            continue
        rows, seconds = per_image(tracker, x, y, run)
        print(
            f"{label:<32} "
            + " ".join(f"{median([r[k] for r in rows]):>7.3f}" for k in range(len(BUDGETS)))
            + f" {seconds:>8.1f}"
        )
    if args.ours_only:
        return
    print("\nrobustkit batched (all images in one call), median L2 of the verified examples returned:")
    print(f"{'budget':>7} {'median L2':>10} {'seconds':>8}")
    for budget in BUDGETS:
        start = time.perf_counter()
        result = HopSkipJump(eps=1.5, norm="l2", queries=budget, min_norm=True)(model, x, y)
        norms = torch.where(result.success, result.norms, torch.full_like(result.norms, math.inf))
        print(f"{budget:>7} {norms.median().item():>10.3f} {time.perf_counter() - start:>8.1f}")


if __name__ == "__main__":
    main()
