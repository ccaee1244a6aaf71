"""``robustkit evaluate``: parse the options, call ``evaluate_model`` (one cell), print it and write its files.

Torch and the plugins are imported when the command runs, so ``evaluate --help`` answers at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from robustkit.cli.attack_settings import add_setting_flags, flag_settings, key_values
from robustkit.cli.options import dataset_options, runtime_options
from robustkit.cli.table import echo_table, shown, with_interval
from robustkit.errors import ConfigError
from robustkit.paths import home
from robustkit.registry import ATTACKS

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from robustkit.evaluation.api import Report
    from robustkit.evaluation.checks import CheckReport, Flag
    from robustkit.evaluation.engine import Evaluation


@click.command()
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@click.option("--attack", "attack_name", default="pgd", show_default=True, help="Registered attack name.")
@dataset_options
@click.option(
    "--eps", help="Budget, e.g. 0.1 or 8/255 [0.1 L∞ / 1.5 L2 / 10 L1 on grey data; 8/255 / 0.5 / 12 on colour]."
)
@click.option("--norm", help="Threat model (robustkit list threats) [the attack's own: robustkit list attacks].")
@click.option(
    "--pixels", type=click.IntRange(min=1), help="L0 budget: pixels an L0 attack may change [1] (--eps for L0)."
)
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any attack setting, also one without a flag of its own, e.g. -o batch_size=64 (repeatable).",
)
@click.option(
    "--fit-samples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Training images a data-fitted attack (universal) learns from.",
)
@click.option(
    "--perturbation",
    "perturbation_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A saved universal perturbation or patch (.safetensors or .png) to apply instead of fitting one.",
)
@click.option(
    "--n-samples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Size of the fixed, seeded evaluation subset of the test split.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Weights to evaluate [the cached checkpoint; trained if missing].",
)
@click.option(
    "--weights",
    help="Evaluate these weights, training nothing: a state-dict file (.pt/.pth/.safetensors) "
    "or the model library's weights name (DEFAULT, IMAGENET1K_V2).",
)
@click.option("--no-train", is_flag=True, help="Refuse to train a missing checkpoint (one line says what is missing).")
@click.option("--defense", default="none", show_default=True, help="Defense the cached checkpoint was trained with.")
@click.option("--defense-eps", help="ε the defense was trained at [--eps].")
@click.option("--source-model", help="Transfer attack: craft the examples on this model, score them on --model.")
@click.option(
    "--source-checkpoint",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Weights of the source model [its cached checkpoint; trained if missing].",
)
@click.option("--source-defense", default="none", show_default=True, help="Defense the source model was trained with.")
@click.option(
    "--checks",
    is_flag=True,
    help="Run the full set of gradient-masking checks (ε sweep, strong PGD, "
    "APGD vs Square) instead of the cheap default ones.",
)
@click.option(
    "--no-checks",
    is_flag=True,
    help="Run no gradient-masking checks (by default a cheap subset runs "
    "after the attack and a flagged figure is said to be suspect).",
)
@click.option(
    "--check-samples",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Samples of the subset the checks use (the default checks use at most 64 of them).",
)
@runtime_options
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option(
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the record to FILE.csv|.json, or add it to a results store FILE.sqlite that "
    "`robustkit leaderboard` reads (repeatable; each checked before any work).",
)
@click.option(
    "--save-examples",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a PNG grid of clean / perturbation / adversarial images (and any fitted δ) here.",
)
@click.option(
    "--per-class",
    "per_class",
    is_flag=True,
    help="Also print clean and robust accuracy per class, with 95 % intervals (the record always keeps them).",
)
def evaluate(
    model_name,
    attack_name,
    dataset,
    data_dir,
    download,
    image_size,
    workers,
    eps,
    norm,
    pixels,
    options,
    fit_samples,
    perturbation_file,
    n_samples,
    checkpoint,
    weights,
    no_train,
    defense,
    defense_eps,
    source_model,
    source_checkpoint,
    source_defense,
    checks,
    no_checks,
    check_samples,
    device,
    seed,
    batch_size,
    outputs,
    save_examples,
    per_class,
    **setting_flags,
) -> None:
    """Attack MODEL with ATTACK and report clean and robust accuracy on the test subset (a one-cell
    run of ``robustkit.evaluate_model``; its record is a results-store row). Each attack setting is a
    flag (``--steps 20``) or ``-o KEY=VALUE``; ``robustkit list attacks`` shows which attack takes which."""
    from robustkit.cli.fooling import report_fooling
    from robustkit.data import check_dataset_settings
    from robustkit.evaluation.api import (
        CraftOptions,
        ModelOptions,
        RunOptions,
        evaluate_model,
    )
    from robustkit.evaluation.fooling import FoolingReport
    from robustkit.models import check_model_name
    from robustkit.results.intervals import PROPORTIONS, row_interval
    from robustkit.results.norm_curve import save_curve_plot
    from robustkit.results.perturbation_file import save_perturbation
    from robustkit.results.records import check_outputs
    from robustkit.threats import L0, threat_class
    from robustkit.training import distributed
    from robustkit.weights.checkpoint import file_sha256

    if checks and no_checks:
        raise ConfigError("--checks (the full set) and --no-checks (none) contradict each other: give one")
    check_model_name(model_name)  # an unknown name fails before anything else is said or done
    outputs = check_outputs(outputs)  # a file that cannot take the record is refused before any work
    named = norm or ATTACKS.default(attack_name, "norm")
    if pixels is not None and threat_class(named).name != L0.name:
        raise ConfigError(f"--pixels is an L0 budget; the {named} threat model takes --eps")
    settings = flag_settings(setting_flags, attack_name)
    settings.update(key_values(options, settings))
    flags = {"image_size": image_size, "workers": workers}
    check_dataset_settings(dataset, {k: v for k, v in flags.items() if v is not None}, as_flags=True)
    report = evaluate_model(
        model_name,
        dataset,
        attack_name,
        norm=norm,
        eps=pixels if pixels is not None else eps,
        n_samples=n_samples,
        attack_settings=settings,
        dataset_options={"download": download or None, "image_size": image_size, "workers": workers},
        model_options=ModelOptions(weights, checkpoint, defense, defense_eps, no_train),
        craft=CraftOptions(source_model, source_checkpoint, source_defense, perturbation_file, fit_samples),
        run=RunOptions(
            seed=seed,
            device=device,
            batch_size=batch_size,
            data_dir=data_dir,
            check_samples=check_samples,
            checks="none" if no_checks else "full" if checks else "default",
        ),
    )
    if not distributed.is_main():
        return
    record = report.record
    if isinstance(report.outcome, FoolingReport):
        grid = report_fooling(report, save_examples)
        record["extra"]["fooling_grid"] = str(grid)
        _write(outputs, report)
        return
    m, budget, norm = report.figures, record["eps"], record["norm"]
    extra = [k for k in ("fooling_rate", "fit_fooling_rate") if k in m]
    _echo_warnings(report)
    if report.source is not None:
        click.echo(
            f"transfer: examples crafted on {source_model or model_name} ({report.source.description}), scored on {model_name}"
        )
    echo_table(
        [
            "model",
            "attack",
            "norm",
            "eps",
            "n",
            "clean acc [95 % CI]",
            "robust acc [95 % CI]",
            "success [95 % CI]",
            "median norm",
            "unverified",
            "img/s",
            *[k.replace("_", " ") for k in extra],
        ],
        [
            [
                model_name,
                attack_name,
                norm,
                f"{budget:.4g}",
                m["n"],
                *[with_interval(m[k], row_interval(m, k)) for k in PROPORTIONS],
                shown(m["median_norm"], ".4g"),
                m["n_unverified"],
                shown(m["images_per_second"], ".1f"),
                *[shown(m[k]) for k in extra],
            ]
        ],
    )
    if per_class:
        _echo_per_class(record["extra"]["per_class"])
    minimum_norm = report.attack.minimum_norm
    if minimum_norm:
        _echo_curve(report.outcome, budget)
    elif (
        report.attack.access != "gradient" and report.outcome.queries is not None and hasattr(report.attack, "queries")
    ):
        _echo_query_curve(report.outcome, report.attack.queries)
    if report.checks is not None and report.checks.ok:
        _echo_checks(report.checks)
    if perturbation_file is None:  # a given δ is cited as given (the record names it); a fitted one is saved
        for name, tensor in report.perturbation.items():
            folder = save_examples or home() / "perturbations" / record["dataset"]
            stem = f"{model_name}-{defense}-{attack_name}-{norm}-eps{budget:.4g}-seed{seed}-{name}".replace("/", "_")
            saved, png = save_perturbation(
                folder / stem, tensor, {k: record[k] for k in _CITED}, images=report.attack.learned_images
            )
            click.echo(f"{name}: {saved} ({'printable' if report.attack.learned_images else 'amplified'} view: {png})")
            record["extra"].update({f"{name}_file": str(saved), f"{name}_sha256": file_sha256(saved)})
    if save_examples:
        _save_grid(report, save_examples, model_name, attack_name)
        if minimum_norm:
            plot = save_curve_plot(
                report.outcome,
                save_examples / f"{model_name}-{attack_name}-{norm}-curve.png",
                norm=norm,
                eps=budget,
                title=f"{model_name} {attack_name} {norm}",
            )
            click.echo(f"ε-curve: {plot}")
    _write(outputs, report)


_CITED = ("model", "dataset", "defense", "attack", "norm", "eps", "settings", "checkpoint_sha256", "key", "created")


def _save_grid(report: Report, folder: Path, model_name: str, attack_name: str) -> None:
    from robustkit.results.example_grid import save_example_grid

    ex, norm, budget = report.examples, report.record["norm"], report.record["eps"]
    if not ex:
        click.echo("examples: none (the attack broke no sample)")
        return
    grid = save_example_grid(
        folder / f"{model_name}-{attack_name}-{norm}-eps{budget:.4g}.png",
        ex["clean"],
        ex["adversarial"],
        ex["label"],
        ex["adversarial_prediction"],
        report.class_names,
        norm=norm,
    )
    click.echo(f"examples: {grid}")


def _echo_per_class(figures: dict[str, dict]) -> None:
    """The record's per-class figures, one row per class, each with its 95 % interval."""
    from robustkit.results.intervals import Interval
    from robustkit.results.per_class import FIGURES, per_class_table

    table = per_class_table(figures)
    click.echo("per class (95 % intervals, Clopper–Pearson):")
    echo_table(
        ["class", "n", "clean acc", "robust acc"],
        [
            [
                row["class"],
                row["n"],
                *(with_interval(row[f], Interval(row[f"{f}_low"], row[f"{f}_high"])) for f in FIGURES),
            ]
            for row in table.to_dict("records")
        ],
    )


def _echo_curve(outcome: Evaluation, eps: float) -> None:
    """A minimum-norm run's figure at ``eps``, its median verified norm and the curve at a few multiples of ε."""
    from robustkit.results.norm_curve import SCALES

    budgets = [scale * eps for scale in SCALES]
    points = _points([f"ε={b:.4g}:" for b in budgets], outcome.curve(budgets), outcome.curve_intervals(budgets))
    attacked = int(outcome.clean_correct.sum())
    found = int((~outcome.norms.isnan()).sum())
    at_eps = with_interval(outcome.robust_accuracy, outcome.curve_intervals([eps])[0])
    click.echo(
        f"minimum-norm run: robust accuracy {at_eps} at ε={eps:.4g}, median verified norm "
        f"{shown(outcome.median_norm, '.4g')} ({found} of {attacked} attacked samples broken at some ε)"
    )
    click.echo("robust accuracy [95 % CI] vs ε (one run):")
    click.echo(points)


def _echo_query_curve(outcome: Evaluation, queries: int) -> None:
    """A query-budgeted run's robust accuracy had it stopped at 1 %, 10 %, 50 % of its budget, from the one run."""
    budgets = sorted({max(1, round(queries * scale)) for scale in (0.01, 0.1, 0.5, 1.0)})
    click.echo("robust accuracy [95 % CI] vs queries (one run: the count each sample was first broken at):")
    click.echo(
        _points(
            [f"{b} queries:" for b in budgets], outcome.query_curve(budgets), outcome.query_curve_intervals(budgets)
        )
    )


def _points(labels: list[str], values: list[float], intervals: list) -> str:
    """One line per point of a curve: its label, the figure and its interval, aligned."""
    width = max(map(len, labels))
    return "\n".join(
        f"  {label:<{width}} {with_interval(a, i)}" for label, a, i in zip(labels, values, intervals, strict=True)
    )


def _write(outputs: list[Path], report: Report) -> None:
    from robustkit.results.records import append_record

    for path in outputs:
        click.echo(f"record appended to {append_record(path, report.record, report.check_record)}")


def _echo_checks(report: CheckReport, flags: list[Flag] | None = None) -> None:
    """A clean run in one line (its figures are in the record, and logged under ``-v``), a flagged one's
    ``flags`` [all of them] one a line."""
    if report.ok:
        click.echo(f"checks: no flags ({report.level} set)")
        return
    flags = report.flags if flags is None else flags
    click.echo(f"gradient-masking checks ({report.level}): {len(flags)} flag(s)")
    for flag in flags:
        click.echo(f"  ⚑ {flag.line()}")


def _echo_warnings(report: Report) -> None:
    """The data read, then, above the table, what makes its figure suspect: layers the attack is not
    adapted to, and the checks' flags with what to try. What the figure already answers (a gradient-free
    member searched where gradients are blind) is a note with its remedy, not the alarm."""
    from robustkit.evaluation.checks import answered_flags

    files = report.record["extra"].get("data_files") or []
    click.echo(f"data: {report.record['dataset']} test split from {', '.join(files) if files else 'memory'}")
    unadapted = report.record["extra"].get("unadapted_layers") or []
    bounded = report.record["extra"].get("bounded_layers") or []
    if report.checks is not None:
        log.debug(
            "gradient-masking checks' figures: %s", ", ".join(f"{k} {v:.3g}" for k, v in report.checks.figures.items())
        )
    alarms, answered = answered_flags(report.checks.flags if report.checks is not None else [], report.attack)
    if bounded or answered:
        free = ", ".join(report.attack.gradient_free_members())
        # a score-based search is blind too where the scores are flat (a one-hot or rounded output): labels still move
        labels = (
            ", or a label-only one (--attack rays) if the scores are flat too,"
            if report.attack.access == "score"
            else ""
        )
        for line in bounded or [
            f"{free}, which needs no gradient, bounded the figure where gradients are blind → "
            f"an adapted attack (-o bpda=true){labels} may still lower it"
        ]:
            click.echo(f"note: {line}")
        if answered:
            click.echo(
                f"  the checks ({report.checks.level}) saw what blinds gradients only: "
                + "; ".join(f"{f.check} ({f.saw})" for f in answered)
            )
    if not unadapted and not alarms:
        return
    click.echo("⚠ WARNING: the robust accuracy below is likely too high (gradient masking)")
    for line in unadapted:
        click.echo(f"  ⚠ {line}")
    if alarms:
        _echo_checks(report.checks, alarms)
    routes = [] if report.attack.gradient_free_members() else ["the ensemble (--attack ensemble)"]  # never itself
    if report.checks is None or report.checks.level != "full":
        routes.append("the full checks (--checks)")
    if routes:
        click.echo(f"  other routes: {', or '.join(routes)}")


add_setting_flags(evaluate, after="pixels")
