"""The evaluation engine: figures re-computable from the outputs; unverifiable claims never counted."""

from dataclasses import dataclass

import torch
from attack_fixtures import DATA, tiny_model

from attacks import PGD
from robustkit.attack import Attack, Perturbed
from robustkit.data.base import Split
from robustkit.evaluation.engine import evaluate_attack
from robustkit.predict import ABSTAIN, DRAWS, predict, verdict_draws
from robustkit.random_forward import Randomised


def test_figures_agree_with_an_independent_recount():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    result = evaluate_attack(model, Split(x, y), PGD(eps=0.1, steps=10), batch_size=20, keep_examples=4, progress=False)
    correct = predict(model, x) == y
    assert torch.equal(result.clean_correct, correct)
    assert result.clean_accuracy == correct.float().mean().item()
    assert (result.robust <= result.clean_correct).all()  # robust implies correct
    assert result.n_unverified == 0
    broken = result.clean_correct & ~result.robust
    assert torch.isnan(result.norms[~broken]).all() and (result.norms[broken] <= 0.1 + 1e-6).all()
    assert result.attack_success_rate == broken.sum().item() / correct.sum().item()
    ex = result.examples
    assert len(ex["clean"]) == 4 and (predict(model, ex["adversarial"]) != ex["label"]).all()


def test_batching_and_seed_do_not_change_the_result():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    a = evaluate_attack(model, Split(x, y), PGD(eps=0.1, seed=4), batch_size=64, progress=False)
    b = evaluate_attack(model, Split(x, y), PGD(eps=0.1, seed=4), batch_size=64, progress=False)
    assert torch.equal(a.robust, b.robust)


@dataclass(frozen=True, kw_only=True)
class Cheater(Attack):
    """Claims success on every image it leaves unchanged (``__call__`` is final: its verdict is the lie)."""

    def perturb(self, model, x, y, *, target, rng):
        return Perturbed(x)

    def verdict(self, model, x_adv, y, target):
        return torch.ones_like(y, dtype=torch.bool)


def test_unverified_examples_are_not_counted_but_reported():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    result = evaluate_attack(model, Split(x, y), Cheater(eps=0.01), progress=False)
    assert result.robust_accuracy == result.clean_accuracy  # nothing broken
    assert result.n_unverified > 0


def test_a_model_left_in_training_mode_is_evaluated_in_eval_mode(caplog):
    model = tiny_model().train()
    x, y = DATA.test.images[:16], DATA.test.labels[:16]
    evaluate_attack(model, Split(x, y), PGD(eps=0.05), progress=False)
    assert model.training and "training mode" in caplog.text


class Flaky(Randomised):
    """Class 1 instead of class 0 in the first round(9·mean pixel) draws after a reseed: a randomised
    model whose error rate on each input is set by hand (0 on a black image, 3 of 9 at mean 3/9, …)."""

    def __init__(self) -> None:
        super().__init__()
        self.draw = 0

    def reseed(self) -> None:
        self.draw = 0

    def stream_state(self) -> int:
        return self.draw

    def restore_stream(self, state: int) -> None:
        self.draw = state

    def forward(self, x):
        wrong = self.draw < (x.flatten(1).mean(1) * DRAWS).round()
        self.draw += 1
        return torch.stack([(~wrong).float(), wrong.float()], 1)


@dataclass(frozen=True, kw_only=True)
class Fill(Attack):
    """Returns every image filled with one grey ``level``."""

    level: float = 0.0

    def perturb(self, model, x, y, *, target, rng):
        return Perturbed(torch.full_like(x, self.level))


def test_a_randomised_model_counts_as_broken_only_when_wrong_in_most_draws():
    x, y = torch.zeros(2, 1, 3, 3), torch.zeros(2, dtype=torch.long)
    model = Flaky()
    assert verdict_draws(model) == DRAWS == 9
    for wrong, broken in ((0, False), (3, False), (4, False), (5, True), (6, True), (9, True)):
        attack = Fill(eps=1.0, level=wrong / DRAWS)
        assert attack(model, x, y).success.tolist() == [broken, broken], wrong  # the attack's own claim
        result = evaluate_attack(model, Split(x, y), attack, progress=False)
        assert result.clean_accuracy == 1.0 and result.n_unverified == 0
        assert result.robust.tolist() == [not broken, not broken], wrong


def test_the_vote_needs_a_strict_majority_and_a_deterministic_model_gets_one_pass():
    class Split3(Flaky):  # 4 draws say 0, 3 say 1, 2 say 2: 0 wins the plurality but not a majority
        def forward(self, x):
            label = (0, 0, 0, 0, 1, 1, 1, 2, 2)[self.draw % 9]
            self.draw += 1
            return torch.nn.functional.one_hot(torch.full((len(x),), label), 3).float()

    x = torch.zeros(3, 1, 2, 2)
    assert predict(Split3(), x).tolist() == [ABSTAIN] * 3
    assert predict(Split3(), x, draws=7).tolist() == [0] * 3  # 4 of 7
    assert predict(Split3(), x, draws=1).tolist() == [0] * 3

    model, calls = tiny_model(), []
    model.register_forward_hook(lambda *args: calls.append(1))
    predict(model, DATA.test.images, batch_size=32)
    assert verdict_draws(model) == 1 and len(calls) == 2  # one pass per chunk: no extra cost


def test_a_verdict_in_the_middle_of_an_attack_leaves_the_models_own_draws_alone():
    from defenses.transforms import Noise

    noise, x = Noise(sigma=0.1, seed=5), torch.full((4, 1, 3, 3), 0.5)
    model = torch.nn.Sequential(noise, torch.nn.Flatten(), torch.nn.Linear(9, 2))
    first = noise(x)
    predict(model, x)  # votes from the seed's start, then puts the stream back
    second = noise(x)
    noise.reseed()
    assert torch.equal(noise(x), first) and torch.equal(noise(x), second)  # the stream went on undisturbed
    assert torch.equal(predict(model, x), predict(model, x))  # and every verdict is the same
