"""The evaluation engine: figures re-computable from the outputs; unverifiable claims never counted."""

from dataclasses import dataclass

import torch

from attack_fixtures import DATA, tiny_model
from attacks import PGD
from attacks.base import Attack, Perturbed
from robustkit.evaluate import evaluate_attack
from robustkit.predict import predict


def test_figures_agree_with_an_independent_recount():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    result = evaluate_attack(model, x, y, PGD(eps=0.1, steps=10), batch_size=20, keep_examples=4, progress=False)
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
    a = evaluate_attack(model, x, y, PGD(eps=0.1, seed=4), batch_size=64, progress=False)
    b = evaluate_attack(model, x, y, PGD(eps=0.1, seed=4), batch_size=64, progress=False)
    assert torch.equal(a.robust, b.robust)


@dataclass(frozen=True, kw_only=True)
class Cheater(Attack):
    """Claims success with examples far outside the ε-ball."""

    def perturb(self, model, x, y, *, target, generator):
        return Perturbed(x)

    def __call__(self, model, x, y, *, target=None):
        result = super().__call__(model, x, y, target=target)
        fake = (x + 0.5).clamp(0, 1)
        return type(result)(fake, torch.ones_like(result.success), result.norms)


def test_unverified_examples_are_not_counted_but_reported():
    model = tiny_model()
    x, y = DATA.test.images, DATA.test.labels
    result = evaluate_attack(model, x, y, Cheater(eps=0.01), progress=False)
    assert result.robust_accuracy == result.clean_accuracy  # nothing broken
    assert result.n_unverified > 0


def test_a_model_left_in_training_mode_is_evaluated_in_eval_mode(caplog):
    model = tiny_model().train()
    x, y = DATA.test.images[:16], DATA.test.labels[:16]
    evaluate_attack(model, x, y, PGD(eps=0.05), progress=False)
    assert model.training and "training mode" in caplog.text
