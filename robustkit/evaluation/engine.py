"""The evaluation engine: clean accuracy, then the attack on correctly classified samples only.

Every adversarial example counted is verified here, independently of the attack's own report:
inside the ε-ball (within the threat model's stated rounding tolerance), inside [0, 1], and
misclassified by a fresh forward pass in eval mode. Unverified examples count as not broken, and
their number is reported (it should always be 0).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import torch
from torch import Tensor, nn

from robustkit.attack import Attack
from robustkit.data.base import ImageDataset, IndexedSplit
from robustkit.errors import ConfigError
from robustkit.predict import predict
from robustkit.progress import progress_bar
from robustkit.random_forward import randomised_modules
from robustkit.results.outcome import Evaluation
from robustkit.training import distributed

log = logging.getLogger(__name__)


def prepare_attack(
    attack: Attack, model: nn.Module, data: ImageDataset, *, fit_samples: int, seed: int, progress: bool = True
) -> tuple[Attack, dict[str, float | int]]:
    """A data-fitted attack (universal) learns on a seeded subset of ``data``'s training split; others pass through.

    The training split is opened only here (an evaluation of a data set of which the user holds only
    the test split, e.g. ImageNet's ``val/``, never needs it). Only the subset is decoded (it is read many times while fitting, so it is held resident: memory
    grows with ``fit_samples``, never with the data set). Returns the attack ready to evaluate and its
    fitting figures (``fit_samples``, ``fit_seconds``, ``fit_<metric>``), empty when nothing was fitted.
    """
    if not attack.learns_from_data or attack.learned():
        return attack, {}
    param = next(model.parameters(), None)
    fit = data.train.subset(fit_samples, seed=seed).load().images
    fit = fit.to(param.device) if param is not None else fit
    start = time.perf_counter()
    attack = attack.prepared(model, fit, progress=progress)
    figures = {f"fit_{k}": v for k, v in attack.extra_metrics(model, fit).items()}
    return attack, {"fit_samples": len(fit), "fit_seconds": time.perf_counter() - start, **figures}


def attack_figures(attack: Attack, model: nn.Module, subset: IndexedSplit) -> dict[str, float]:
    """The attack's own figures on the evaluation subset (a fitted universal δ's fooling rate); only
    attacks that learn from data have any, and only then is the subset loaded whole."""
    if not attack.learns_from_data:
        return {}
    param = next(model.parameters(), None)
    images = subset.load().images
    return attack.extra_metrics(model, images.to(param.device) if param is not None else images)


def verify(
    model: nn.Module, attack: Attack, x: Tensor, x_adv: Tensor, y: Tensor, evidence: dict[str, Tensor] | None = None
) -> Tensor:
    """Per sample: allowed by the threat model (the ε-ball, or its own check on the attack's
    ``evidence``; for a minimum-norm attack the whole box, each example then counted at its own norm),
    inside [0, 1], misclassified by a fresh eval-mode forward pass."""
    flat = x_adv.flatten(1)
    in_box = ((flat >= 0) & (flat <= 1)).all(1)
    in_ball = attack.bound(x.shape[1:]).contains(x, x_adv, evidence)
    wrong = predict(model, x_adv, batch_size=max(len(x_adv), 1)) != y
    return in_box & in_ball & wrong


def evaluate_attack(
    model: nn.Module,
    data: IndexedSplit,
    attack: Attack,
    *,
    batch_size: int = 256,
    keep_examples: int = 0,
    progress: bool = True,
    source: nn.Module | None = None,
) -> Evaluation:
    """Run ``attack`` over the split ``data`` batch by batch on the model's device; deterministic for a seed.

    Batches come from ``data.batches`` (resident slices, or images decoded from files by loader
    workers), so memory holds a batch of images, never the whole split. Sample i's random draws come
    from (seed, i), i its position in ``data``, so its outcome is the same at any batch size and under
    any number of torchrun processes. Tensors in memory are ``data = Split(images, labels)``.

    With ``source`` the attack is a transfer attack: adversarial examples are crafted on ``source``
    (a surrogate on the same device) and scored on ``model``, which the attack never sees; a sample
    counts as broken when the verification on ``model`` says so, whatever the source's verdict.

    Under torchrun every rank attacks its own strided share of the samples (``DistributedSampler``'s
    striding, applied to the index) and the per-sample outcomes are gathered, so every rank returns
    the whole evaluation.
    """
    if not attack.threat.clean_images:
        raise ConfigError(
            f"the {attack.threat.name} threat model has no clean images: evaluate it with evaluate_fooling"
        )
    world = distributed.world_size()
    if world > 1:
        mine = torch.arange(distributed.rank(), len(data), world)
        local = _evaluate(model, data.take(mine), mine, attack, batch_size, keep_examples, progress, source)
        return _gathered(local, mine, len(data), world)
    positions = torch.arange(len(data))
    return _evaluate(model, data, positions, attack, batch_size, keep_examples, progress, source)


def _gathered(local: Evaluation, mine: Tensor, n: int, world: int) -> Evaluation:
    """Every rank's outcomes put back in sample order; the time is the slowest rank's."""
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(
        parts, (mine, local.clean_correct, local.robust, local.norms, local.n_unverified, local.seconds, local.queries)
    )
    clean_correct = torch.zeros(n, dtype=torch.bool)
    robust = torch.zeros(n, dtype=torch.bool)
    norms, queries = torch.full((n,), float("nan")), torch.full((n,), float("nan"))
    for index, correct, still, norm, _, _, spent in parts:
        clean_correct[index], robust[index], norms[index] = correct, still, norm
        if spent is not None:
            queries[index] = spent
    counted = all(p[6] is not None for p in parts)
    return Evaluation(
        clean_correct,
        robust,
        norms,
        sum(p[4] for p in parts),
        max(p[5] for p in parts),
        local.examples,
        queries if counted else None,
    )


def reseed_randomness(model: nn.Module) -> None:
    """Restart every randomised layer's own stream (``reseed()``, e.g. a Gaussian-noise defense)."""
    for module in randomised_modules(model):
        module.reseed()


def _evaluate(
    model, data: IndexedSplit, positions, attack, batch_size, keep_examples, progress, source=None
) -> Evaluation:
    reseed_randomness(model)
    if source is not None:
        reseed_randomness(source)
        if getattr(attack, "early_stop", False):  # stopping at the source's boundary would transfer badly
            attack = replace(attack, early_stop=False)
    if model.training:
        log.warning("the model was in training mode; evaluating in eval mode (its mode is restored afterwards)")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    clean_correct = torch.zeros(len(data), dtype=torch.bool)
    robust = torch.zeros(len(data), dtype=torch.bool)
    norms = torch.full((len(data),), float("nan"))
    queries, counted = torch.full((len(data),), float("nan")), True  # counted: every batch's attack reported queries
    n_unverified, kept = 0, {"clean": [], "adversarial": [], "label": [], "adversarial_prediction": []}
    start = time.perf_counter()
    bar = progress_bar(
        total=len(data), desc=f"{type(attack).__name__} ε={attack.eps:.4g}", unit="img", enabled=progress, leave=False
    )
    lo = 0
    for x, y in data.batches(batch_size, device=device):
        correct = predict(model, x, batch_size=len(x)) == y
        index = correct.nonzero().squeeze(1)
        broken = torch.zeros_like(correct)
        if len(index):
            result = attack(
                source if source is not None else model,
                x[index],
                y[index],
                index=positions[lo : lo + batch_size].to(device)[index],
            )
            verified = verify(model, attack, x[index], result.x_adv, y[index], result.evidence)
            if source is not None:  # the source's verdict says nothing about the target
                hit = verified
            else:
                n_unverified += int((result.success & ~verified).sum())
                hit = result.success & verified
            size = attack.threat.size(x[index], result.x_adv, result.evidence).float()  # measured here, not reported
            if attack.minimum_norm:  # broken at the reported ε only where its own verified norm is within it
                hit = hit & (size <= attack.eps)
                found = result.success & verified
                norms[lo + index[found].cpu()] = size[found].cpu()
            else:
                norms[lo + index[hit].cpu()] = size[hit].cpu()
            broken[index[hit]] = True
            counted &= result.queries is not None
            if result.queries is not None:
                queries[lo + index[hit].cpu()] = result.queries[hit].float().cpu()
            _keep(kept, keep_examples, x[index][hit], result.x_adv[hit], y[index][hit], model)
        clean_correct[lo : lo + len(y)] = correct.cpu()
        robust[lo : lo + len(y)] = (correct & ~broken).cpu()
        bar.set_postfix(
            clean=f"{clean_correct[: lo + len(y)].float().mean():.3f}",
            robust=f"{robust[: lo + len(y)].float().mean():.3f}",
            refresh=False,
        )
        bar.update(len(y))  # after the figures: a line written per tenth (and the last) shows this batch's
        lo += len(y)
    bar.close()
    if n_unverified:
        log.warning(
            "%d adversarial examples claimed by %s failed verification and count as not broken",
            n_unverified,
            type(attack).__name__,
        )
    examples = {k: torch.cat(v)[:keep_examples] for k, v in kept.items() if v}
    return Evaluation(
        clean_correct, robust, norms, n_unverified, time.perf_counter() - start, examples, queries if counted else None
    )


def _keep(kept: dict[str, list[Tensor]], limit: int, x: Tensor, x_adv: Tensor, y: Tensor, model: nn.Module) -> None:
    have = sum(len(t) for t in kept["clean"])
    if have >= limit or len(x) == 0:
        return
    take = slice(0, limit - have)
    kept["clean"].append(x[take].cpu())
    kept["adversarial"].append(x_adv[take].cpu())
    kept["label"].append(y[take].cpu())
    kept["adversarial_prediction"].append(predict(model, x_adv[take]).cpu())
