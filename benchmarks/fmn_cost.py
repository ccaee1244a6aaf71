"""FMN's cost against APGD's at the same 100 steps: passes per sample, seconds per pass, images/s; and what
FMN's opt-in early stop (``early_stop=True``: a sample whose smallest norm stopped shrinking stops costing
passes) does to the ε-curve.

Same model (the cached standard smallcnn on Fashion-MNIST; trained if missing), the same seeded subset,
the engine's own evaluation (``evaluate_attack``: clean pass, attack, verification), interleaved over
``--repeats`` rounds so the machine's load falls on every attack alike (the fastest round is shown).
Passes are counted by a wrapper around the model: rows through a forward+backward (gradient) pass and
rows through a forward-only pass (clean accuracy, verification), per image. Seconds per pass are the
evaluation's seconds over its gradient passes (its forward-only passes are in the seconds too); the
last row is a bare forward+backward pass in the engine's batches of 256, the floor. FMN's default is the
paper's run (every sample takes all 100 steps), the same computation as before ``early_stop`` existed.

Table 2: robust accuracy at several ε from FMN's one run, with and without early stop, and the largest
difference over every ε (the curves are step functions, so every norm either run found is checked).

    python benchmarks/fmn_cost.py [--n 300] [--threads 1] [--norm linf] [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging

import torch
from torch import Tensor, nn

from attacks import APGD, FMN
from robustkit.data import get_dataset
from robustkit.evaluation.engine import evaluate_attack
from robustkit.results.outcome import Evaluation
from robustkit.weights.resolve import resolve_model

EPS = {"linf": 0.1, "l2": 1.5}  # Fashion-MNIST's usual budgets
SHARES = [0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0]  # table 2's budgets, as shares of EPS


class CountingPasses(nn.Module):
    """The model, counting the rows it sees: through passes that build a graph (gradient) and the rest."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.gradient_rows, self.forward_rows = model, 0, 0

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            self.gradient_rows += len(x)
        else:
            self.forward_rows += len(x)
        return self.model(x)


def bare_pass_seconds(model: nn.Module, x: Tensor, y: Tensor, passes: int = 10) -> float:
    """Seconds per image of a bare forward+backward pass (the input gradient of the margin) in batches of
    256, as the engine attacks: no attack can take a step for less."""
    import time

    start = time.perf_counter()
    for _ in range(passes):
        for lo in range(0, len(x), 256):
            point = x[lo : lo + 256].clone().requires_grad_(True)
            logits = model(point)
            torch.autograd.grad(logits.gather(1, y[lo : lo + 256, None]).sum(), point)
    return (time.perf_counter() - start) / (passes * len(x))


def largest_difference(a: Evaluation, b: Evaluation) -> float:
    """max over every ε of |robust accuracy from ``a`` − from ``b``|: the curves only step at a found norm."""
    steps = torch.cat([a.norms, b.norms])
    steps = steps[~steps.isnan()]
    return max(abs(x - y) for x, y in zip(a.curve(steps), b.curve(steps), strict=True)) if len(steps) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="test images (the seeded subset)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--norm", choices=sorted(EPS), default="linf")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the fastest is shown")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    data = get_dataset("fashion-mnist")
    model = resolve_model("smallcnn", data, device=torch.device("cpu")).model.eval()
    subset = data.test.subset(args.n, seed=0)
    eps = EPS[args.norm]
    attacks = {
        "APGD (100 steps)": APGD(eps=eps, norm=args.norm),
        "FMN (default: every step)": FMN(eps=eps, norm=args.norm),
        "FMN, early_stop=True": FMN(eps=eps, norm=args.norm, early_stop=True),
    }
    runs: dict[str, tuple[Evaluation, CountingPasses]] = {}
    for _ in range(args.repeats):
        for label, attack in attacks.items():
            counted = CountingPasses(model)
            evaluation = evaluate_attack(counted, subset, attack, progress=False)
            if label not in runs or evaluation.seconds < runs[label][0].seconds:
                runs[label] = (evaluation, counted)
    loaded = subset.load()
    bare = min(bare_pass_seconds(model, loaded.images, loaded.labels) for _ in range(args.repeats))
    first = next(iter(runs.values()))[0]
    print(
        f"smallcnn on Fashion-MNIST, {args.norm} ε = {eps}: {args.n} test images, {int(first.clean_correct.sum())} attacked; "
        f"{args.threads} thread(s), fastest of {args.repeats} interleaved rounds"
    )
    print(
        f"{'attack':<26} {'grad passes/img':>15} {'fwd passes/img':>14} {'seconds':>8} {'ms/pass':>8} {'vs APGD':>8} {'img/s':>7} {'robust':>7}"
    )
    base = None
    for label, (evaluation, counted) in runs.items():
        per_pass = evaluation.seconds / max(counted.gradient_rows, 1)
        base = base or per_pass
        print(
            f"{label:<26} {counted.gradient_rows / args.n:>15.1f} {counted.forward_rows / args.n:>14.1f} {evaluation.seconds:>8.1f} "
            f"{1000 * per_pass:>8.3f} {per_pass / base:>7.2f}× {evaluation.images_per_second:>7.1f} {evaluation.robust_accuracy:>7.3f}"
        )

    print(f"{'bare forward+backward':<26} {'':>15} {'':>14} {'':>8} {1000 * bare:>8.3f} {bare / base:>7.2f}×")

    every, early = runs["FMN (default: every step)"][0], runs["FMN, early_stop=True"][0]
    budgets = [share * eps for share in SHARES]
    print(
        f"\nrobust accuracy vs ε from one FMN run: every step vs early stop (largest difference over every ε: "
        f"{largest_difference(every, early):.4f}; one image is {1 / args.n:.4f})"
    )
    print(f"{'ε':>7} {'every step':>11} {'early stop':>11} {'difference':>11}")
    for e, a, b in zip(budgets, every.curve(budgets), early.curve(budgets), strict=True):
        print(f"{e:>7.3g} {a:>11.4f} {b:>11.4f} {b - a:>+11.4f}")


if __name__ == "__main__":
    main()
