"""Long work shows progress where stderr is no terminal: a line at every tenth, not a silent log."""

import io

import pytest

from robustkit import progress
from robustkit.progress import progress_bar


class FakeStderr(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("total", [7, 10, 250])
def test_a_log_gets_one_whole_line_per_tenth_of_the_work(monkeypatch, total):
    err = FakeStderr(tty=False)
    monkeypatch.setattr(progress.sys, "stderr", err)
    for _ in progress_bar(range(total), desc="attack", unit="img"):
        pass
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and all(line.startswith("attack:") for line in lines)
    percents = [int(line.split(":")[1].split("%")[0]) for line in lines]
    tenths_reached = sorted({10 * n // total for n in range(total + 1)})  # each shown once, when first reached
    assert [p // 10 for p in percents] == tenths_reached
    assert percents[0] == 0 and percents[-1] == 100


def test_progress_off_writes_nothing_and_updates_by_hand_count(monkeypatch):
    err = FakeStderr(tty=False)
    monkeypatch.setattr(progress.sys, "stderr", err)
    bar = progress_bar(total=40, enabled=False)
    bar.update(40)
    bar.close()
    assert err.getvalue() == ""
    bar = progress_bar(total=40, initial=20, desc="epoch 2/3")  # a resumed epoch starts half-way
    for _ in range(20):
        bar.update(1)
    bar.close()
    percents = [int(line.split(":")[1].split("%")[0]) for line in err.getvalue().splitlines()]
    assert percents == [50, 60, 70, 80, 90, 100]


def test_the_last_line_of_an_evaluation_shows_its_final_figures(monkeypatch):
    """A run's log once ended `100% … clean=0.887, robust=0.840` above a table saying 0.864 and 0.806 (issue 23):
    the line was written before the last batch's figures were set. The last line must say what the result says."""
    import re

    from attack_fixtures import DATA, tiny_model

    from attacks import FGSM
    from robustkit.evaluation.engine import evaluate_attack

    err = FakeStderr(tty=False)
    monkeypatch.setattr(progress.sys, "stderr", err)
    result = evaluate_attack(tiny_model(), DATA.test, FGSM(eps=0.1), batch_size=24, progress=True)
    clean, robust = re.findall(r"clean=([\d.]+), robust=([\d.]+)", err.getvalue().splitlines()[-1])[0]
    assert (float(clean), float(robust)) == (round(result.clean_accuracy, 3), round(result.robust_accuracy, 3))
