"""Square attack: score-based black-box random search over square windows (Andriushchenko et al., ECCV 2020;
its L1 version: Croce & Hein, "Mind the box", ICML 2021).

Only forward passes, all under ``torch.no_grad()``: the attack reads the model's logits and never a
gradient, so it also works on models whose backward is broken, masked or unavailable. Each step
proposes one change inside a random s×s window per sample and keeps it only if the loss rises; the
window side s shrinks on the authors' schedule as the query budget is spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.random_search import search_score
from robustkit.attack import Attack, Perturbed, keep_rows
from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom
from robustkit.registry import ATTACKS
from robustkit.threats import L1, L2, Linf, clip_to_box, names

# p halves each time the step, rescaled to a 10 000-query budget, passes one of these (AutoAttack's schedule)
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@ATTACKS.register
@dataclass(frozen=True, kw_only=True)
class Square(Attack):
    """Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, arXiv:1912.00049).

    Threat model: L∞, L2 or L1 ball of radius ``eps`` around x, within [0, 1]; score-based black box
    (logits only, no gradients). L∞ starts from vertical stripes x ± ε and sets a random s×s window
    to ±ε per channel; L2 starts from pseudo-Gaussian tiles of norm ε and moves mass between two
    windows with the paper's ± pseudo-Gaussian pattern, keeping ‖δ‖₂ ≤ ε. L1 ("Mind the box") does the
    same with a sharper pattern (weights 1/(k+1)⁴, unit L1 mass) and L1 masses, and projects every
    proposal exactly onto the L1 ball ∩ [0, 1] (``L1.clip``), so a coordinate the box stops wastes nothing.
    Arguments: ``eps``; ``norm`` (linf | l2 | l1); ``queries`` (5000: model evaluations per sample, the
    initial point included); ``p_init`` (0.8: fraction of the image the first windows cover);
    ``loss`` (margin | ce, maximised; a proposal is kept if it raises the loss or fools the model);
    ``patience`` (0: spend the whole budget; P > 0: a sample stops once P queries in a row have not
    raised its own best loss, so a model whose gradients already told the truth does not cost the full
    budget, while a sample Square is still climbing on, as on a masked model, runs on);
    ``rescaled`` (True: p's halvings come at query counts scaled to the budget, as if it were 10 000, the
    paper's code's default; False: at the raw counts, as AutoAttack's standard version runs it);
    ``eot`` (scores averaged over that many passes of a randomised model); ``seed``; ``precision``.
    A sample stops costing queries once it is fooled. Every random draw is the sample's own (seed,
    index) and ``patience`` is judged per sample, so a sample's outcome does not depend on its batch.
    Shapes: x N×C×H×W in [0, 1], y (and target) int64 N; ``queries`` int64 N, model evaluations per
    sample (≤ the budget).
    Cost of the defaults: at most 5000 forward passes per image (a fooled image stops); ~160 s for
    1000 Fashion-MNIST images on smallcnn on 2 CPU cores (L∞ ε = 0.1), nearly all of it on the ~5 %
    it cannot fool. ``queries=1000`` takes ~50 s there but leaves twice as many unbroken (robust
    accuracy 0.095 vs 0.046), and ``patience=1000`` (then judged over the batch) saved nothing; so the
    budget stays AutoAttack's.

    Example::

        from attacks import Square
        result = Square(eps=8/255, queries=1000)(model, x, y)
        fooled, spent = result.success, result.queries
    """

    name: ClassVar[str] = "square"
    norms: ClassVar[tuple[str, ...]] = names(Linf, L2, L1)

    loss: str = "margin"
    eot: int = 1  # a randomised model's logits averaged over this many passes per query
    queries: int = 5000
    p_init: float = 0.8
    patience: int = 0
    rescaled: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.queries < 1 or not 0 < self.p_init <= 1 or self.patience < 0:
            raise ConfigError(
                f"Square needs queries ≥ 1, 0 < p_init ≤ 1 and patience ≥ 0 "
                f"(got {self.queries}, {self.p_init}, {self.patience})"
            )

    @torch.no_grad()
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, *, target, rng) -> Perturbed:
        n, device = len(x), x.device
        best = self._start(x, rng)
        loss, fooled = self._score(model, best, y, target)
        spent = torch.ones(n, dtype=torch.long, device=device)  # the start is one query
        idx = (~fooled).nonzero().squeeze(1)  # the working set: samples still being attacked
        xa, ba, la, ya, ra = x[idx], best[idx], loss[idx], y[idx], rng[idx]
        ta = None if target is None else target[idx]
        propose = {Linf.name: self._linf_step, L2.name: self._l2_step, L1.name: self._l1_step}[self.norm]
        made = 1  # queries made so far per remaining sample
        gained = torch.zeros(len(idx), dtype=torch.long, device=device)  # the step of each one's last gain
        for step in range(1, self.queries):
            if len(idx) == 0:
                break
            cand = propose(xa, ba, self._p(step), ra)
            new_loss, hit = self._score(model, cand, ya, ta)
            take = hit | (new_loss > la)  # strict: a tie is no progress
            ba = torch.where(take[:, None, None, None], cand, ba)
            la = torch.where(take, new_loss, la)
            gained = torch.where(take, step, gained)
            made = step + 1
            stuck = step - gained >= self.patience if self.patience else torch.zeros_like(hit)
            done = hit | stuck  # fooled, or its own best has not risen for ``patience`` queries
            if done.any():  # one host sync per step: shrinking the working set needs its new size
                best[idx[done]], spent[idx[done]] = ba[done], step + 1
                idx, xa, ba, la, ya, ta, gained = keep_rows(~done, idx, xa, ba, la, ya, ta, gained)
                ra = ra[~done]
        best[idx], spent[idx] = ba, made  # whoever is left used every query made
        return Perturbed(best, queries=spent * self.eot)

    def _p(self, step: int) -> float:
        """Fraction of the image a window covers at ``step``: large moves first, fine ones later."""
        at = int((step - 1) / self.queries * 10000) if self.rescaled else step - 1
        return self.p_init / 2 ** sum(at > t for t in _HALVINGS)

    def _score(self, model, x_adv: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        return search_score(model, x_adv, y, target, loss=self.loss, eot=self.eot, precision=self.precision)

    def _start(self, x: Tensor, rng: SampleRandom) -> Tensor:
        """L∞: vertical stripes of ±ε (one sign per column and channel); L2: ± pseudo-Gaussian tiles, norm ε;
        L1: ± tiles of unit L1 mass each, projected onto the ball ∩ box (the sharpest of them survive)."""
        n, c, h, w = x.shape
        if self.norm == Linf.name:
            return clip_to_box(x + self.eps * _signs(rng, c, 1, w)).to(x.dtype)
        s = max(min(h, w) // 5, 1)  # a centred grid of (up to) 5×5 tiles, as the paper's code does
        th, tw = min(5, h // s), min(5, w // s)
        tiles = _pattern(s, rng.rand(th * tw, 1, 1) < 0.5, self.norm).view(n, 1, th, tw, s, s)
        tiles = tiles * _signs(rng, c, th, tw, 1, 1)
        delta = torch.zeros(x.shape, device=x.device)
        top, left = (h - th * s) // 2, (w - tw * s) // 2
        grid = tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, th * s, tw * s)  # tile row, pixel row, tile col, …
        delta[:, :, top : top + th * s, left : left + tw * s] = grid
        if self.norm == L1.name:  # the tiles hold far more than ε of mass: the exact projection keeps their peaks
            return self.threat.clip(x, x + delta).to(x.dtype)
        return self.threat.clip(x, x + self.eps * self.threat.normalize_grad(delta)).to(x.dtype)

    def _linf_step(self, x: Tensor, best: Tensor, p: float, rng: SampleRandom) -> Tensor:
        """``best`` with one random s×s window set to x ± ε, one sign per channel."""
        n, c, h, w = x.shape
        s = min(max(round(math.sqrt(p * h * w)), 1), h, w)
        top, left, signs = rng.randints(*_corner(h, w, s), (2, (1, 1, c)))  # one draw's cost: the batch is small
        win = _window(top, left, s)
        colour = self.eps * _as_signs(signs)
        new = clip_to_box(_hwc(x)[win] + colour).to(x.dtype)
        # a proposal equal to the current window wastes a query (the paper's code redraws; flipping is enough)
        stale = (new == _hwc(best)[win]).flatten(1).all(1)[:, None, None, None]
        new = torch.where(stale, clip_to_box(_hwc(x)[win] - colour).to(x.dtype), new)
        cand = best.clone()
        _hwc(cand)[win] = new
        return cand

    def _l2_step(self, x: Tensor, best: Tensor, p: float, rng: SampleRandom) -> Tensor:
        """The paper's Algorithm 3 (see ``_move_window``)."""
        h, w = x.shape[2:]
        s = min(max(round(math.sqrt(p * h * w)), 3), h, w)  # the ± pattern needs room for both halves
        return self._move_window(x, best, s, rng)

    def _l1_step(self, x: Tensor, best: Tensor, p: float, rng: SampleRandom) -> Tensor:
        """The L2 step in L1 masses ("Mind the box"; see ``_move_window``)."""
        h, w = x.shape[2:]
        s = max(round(math.sqrt(p * h * w)), 3)
        s = min(s + 1 - s % 2, h, w)  # odd, as the official code sizes its L1 windows
        return self._move_window(x, best, s, rng)

    def _move_window(self, x: Tensor, best: Tensor, s: int, rng: SampleRandom) -> Tensor:
        """Window 2 is emptied and its mass (plus any budget left unused) goes to window 1, which gets the ±
        pattern plus its old content's direction; then the projection onto ball ∩ box. Mass is the norm's:
        the root of the sum of squares for L2, the sum of magnitudes for L1."""
        n, c, h, w = x.shape
        l1 = self.norm == L1.name
        top1, left1, top2, left2 = rng.randints(*_corner(h, w, s), *_corner(h, w, s))
        win1, win2 = _window(top1, left1, s), _window(top2, left2, s)
        delta = (best - x).float()
        d = _hwc(delta)
        union = torch.zeros((n, h, w, 1), device=x.device)
        union[win1], union[win2] = 1.0, 1.0
        if l1:
            unused = (self.eps - delta.flatten(1).abs().sum(1)).clamp_min(0)  # budget the box or the start left
            # per channel, c × the windows' mass plus the unused budget, as the official code moves it: exactly the
            # mass at hand for grey images; colour ones over-fill, and the projection takes the excess back evenly
            available = c * (d.abs() * union).sum((1, 2)) + unused[:, None]  # n×c
        else:
            unused = (self.eps**2 - delta.flatten(1).square().sum(1)).clamp_min(0)  # budget the box clipped away
            available = ((d.square() * union).sum((1, 2)) + unused[:, None] / c).sqrt()  # per channel, n×c
        old = d[win1]  # n×s×s×c
        bump = _pattern(s, rng.rand(1, 1) < 0.5, self.norm)[..., None] * _signs(rng, 1, 1, c)
        new = bump + old / _window_mass(old, l1).clamp_min(1e-12)
        new = new / _window_mass(new, l1).clamp_min(1e-12) * available[:, None, None, :]
        d[win2] = 0.0
        d[win1] = new
        return self.threat.clip(x, x + delta).to(x.dtype)


def _window_mass(window: Tensor, l1: bool) -> Tensor:
    """Per sample and channel, a window's (n×s×s×c) L1 or L2 mass, kept broadcastable against it."""
    return window.abs().sum((1, 2), keepdim=True) if l1 else window.square().sum((1, 2), keepdim=True).sqrt()


def _hwc(t: Tensor) -> Tensor:
    """A channels-last view: per-sample windows are then one advanced index, and writes go through."""
    return t.permute(0, 2, 3, 1)


def _corner(h: int, w: int, s: int) -> tuple[tuple[int, tuple[int]], tuple[int, tuple[int]]]:
    """The ``randints`` draws that place an s×s window in an H×W image: its top row, its left column."""
    return (h - s + 1, (1,)), (w - s + 1, (1,))


def _window(top: Tensor, left: Tensor, s: int) -> tuple[Tensor, Tensor, Tensor]:
    """Index of the s×s window at (``top``, ``left``), N×1 each, per sample into an N×H×W(×C) tensor (gives
    N×s×s(×C))."""
    span = torch.arange(s, device=top.device)
    return torch.arange(len(top), device=top.device)[:, None, None], (top + span)[:, :, None], (left + span)[:, None, :]


def _signs(rng: SampleRandom, *shape: int) -> Tensor:
    """N × shape random ±1."""
    return _as_signs(rng.randint(2, *shape))


def _as_signs(bits: Tensor) -> Tensor:
    """0/1 draws as ±1."""
    return bits.float() * 2 - 1


# per threat model: (power, p): ring k weighs 1/(k+1)^power, and a pattern has unit p-norm
_SHAPES = {L2.name: (2, 2), L1.name: (4, 1)}  # L1's sharper bump puts its mass on few pixels, as L1 favours


def _rings(h: int, w: int, device, norm: str) -> Tensor:
    """Nested rectangles about the centre, the k-th weighted 1/(k+1)^power: a cheap pseudo-Gaussian bump."""
    power, p = _SHAPES[norm]
    ring = torch.maximum(
        (torch.arange(h, device=device) - h // 2).abs()[:, None],
        (torch.arange(w, device=device) - w // 2).abs()[None, :],
    )
    weights = 1.0 / torch.arange(1, max(h // 2, w // 2) + 2, device=device, dtype=torch.float32) ** power
    bump = weights.flip(0).cumsum(0).flip(0)[ring]  # a cell in ring m lies in every rectangle k ≥ m
    return bump / bump.norm(p).clamp_min(1e-12)


def _pattern(s: int, flip: Tensor, norm: str) -> Tensor:
    """The paper's s×s pattern, a positive bump over a negative one, transposed where ``flip`` (…×1×1) is set;
    unit size in ``norm``'s p-norm."""
    half = s // 2
    eta = torch.cat([_rings(half, s, flip.device, norm), -_rings(s - half, s, flip.device, norm)])
    eta = eta / eta.norm(_SHAPES[norm][1])
    return torch.where(flip, eta.T, eta)
