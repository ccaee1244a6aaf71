"""``robustkit certify``: parse the options, call ``certify_model``, print the curve and write its files.

Torch is imported when the command runs, so ``certify --help`` answers at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from robustkit.cli.attack_settings import key_values
from robustkit.cli.options import dataset_options, open_dataset, runtime_options
from robustkit.cli.table import echo_table, with_interval
from robustkit.errors import ConfigError


def _radii(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--radii takes numbers separated by commas, e.g. 0,0.25,0.5, got '{text}'") from None


@click.command()
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@dataset_options
@click.option(
    "--defense", default="none", show_default=True, help="Defense the base model was trained with (gaussian-aug)."
)
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A defense setting, e.g. -o sigma=0.5 (repeatable) [gaussian-aug: --sigma].",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Weights to certify [the cached checkpoint; trained if missing].",
)
@click.option("--weights", help="A state-dict file or the model library's weights name; trains nothing.")
@click.option("--no-train", is_flag=True, help="Refuse to train a missing checkpoint.")
@click.option(
    "--sigma", type=click.FloatRange(min=0, min_open=True), help="Smoothing noise σ [the defense's σ, else 0.25]."
)
@click.option(
    "--n", "n", type=click.IntRange(min=1), default=10_000, show_default=True, help="Estimation draws per image."
)
@click.option("--n0", type=click.IntRange(min=1), default=100, show_default=True, help="Selection draws per image.")
@click.option(
    "--alpha",
    type=click.FloatRange(min=0, max=0.5, min_open=True, max_open=True),
    default=0.001,
    show_default=True,
    help="Failure probability of each certificate.",
)
@click.option("--paper", is_flag=True, help="Cohen et al.'s settings: n0 100, n 100 000, α 0.001 (about 10× the time).")
@click.option(
    "--radii", help="L2 radii of the table, e.g. 0,0.25,0.5,0.75 [multiples of 0.25 up to the largest certifiable]."
)
@click.option(
    "--n-samples",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Size of the fixed, seeded subset of the test split.",
)
@click.option(
    "--attack/--no-attack",
    default=True,
    show_default=True,
    help="Also run SmoothAdv (PGD + EOT on the smoothed classifier) at the radii > 0.",
)
@click.option("--attack-steps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--attack-draws", type=click.IntRange(min=1), default=8, show_default=True, help="Noise draws per step (m)."
)
@click.option(
    "--predict-n",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="PREDICT's draws judging each adversarial example.",
)
@runtime_options
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Noise draws per forward pass."
)
@click.option(
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append the record (per-image radii included) to FILE.json (repeatable).",
)
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the certified-accuracy curve here (PNG)."
)
def certify(
    model_name,
    dataset,
    data_dir,
    download,
    image_size,
    workers,
    defense,
    options,
    checkpoint,
    weights,
    no_train,
    sigma,
    n,
    n0,
    alpha,
    paper,
    radii,
    n_samples,
    attack,
    attack_steps,
    attack_draws,
    predict_n,
    device,
    seed,
    batch_size,
    outputs,
    plot,
) -> None:
    """Certify MODEL by randomized smoothing (Cohen et al. 2019): per image the L2 radius within which the
    smoothed classifier provably keeps its prediction, and certified accuracy vs radius with 95 % intervals."""
    from robustkit.certification.api import certify_model
    from robustkit.certification.curve import save_certified_plot
    from robustkit.certification.empirical import SmoothAdv
    from robustkit.certification.smoothing import Smoothing
    from robustkit.models import check_model_name

    check_model_name(model_name)
    for path in outputs:
        if path.suffix != ".json":
            raise ConfigError(f"certify --output takes a .json file, got {path.name}")
    settings = key_values(options)
    if defense == "gaussian-aug":
        if sigma is not None and settings.get("sigma", sigma) != sigma:
            raise ConfigError(
                f"--sigma {sigma:g} differs from the defense's -o sigma={settings['sigma']}: certify at the σ trained at"
            )
        settings.setdefault("sigma", sigma if sigma is not None else 0.25)
    sigma = sigma if sigma is not None else settings.get("sigma", 0.25)
    chosen = (
        Smoothing.paper(sigma, batch_size=batch_size)
        if paper
        else Smoothing(sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=batch_size)
    )
    smoothadv = SmoothAdv(steps=attack_steps, m=attack_draws, predict_n=predict_n) if attack else None
    report = certify_model(
        model_name,
        open_dataset(dataset, data_dir, download, image_size, workers),
        smoothing=chosen,
        n_samples=n_samples,
        seed=seed,
        radii=_radii(radii),
        attack=smoothadv,
        defense=defense,
        defense_settings=settings,
        checkpoint=checkpoint,
        weights=weights,
        no_train=no_train,
        device=device,
    )
    record = report.record
    click.echo(
        f"smoothing σ={chosen.sigma:g}, n0={chosen.n0}, n={chosen.n}, α={chosen.alpha:g} on {record['n']} images: "
        f"largest certifiable radius {record['max_radius']:.4f}; abstained on {record['abstained']}"
    )
    empirical = {p.radius: p for p in report.empirical}
    echo_table(
        ["L2 radius", "certified acc [95 % CI]", "empirical acc (SmoothAdv) [95 % CI]"],
        [
            [
                f"{r:g}",
                with_interval(a, i),
                with_interval(empirical[r].accuracy, empirical[r].interval) if r in empirical else "—",
            ]
            for r, a, i in report.curve
        ],
    )
    click.echo(
        f"time {record['seconds']:.1f} s: {record['images_per_second']:.3g} images/s, "
        f"{record['draws_per_second']:.0f} draws/s; forward-pass limit (its forward passes alone, timed in this run) "
        f"{record['forward_limit_draws_per_second']:.0f} "
        f"draws/s = {record['forward_limit_images_per_second']:.3g} images/s at {chosen.n0 + chosen.n} draws per image "
        f"({record['draws_per_second'] / record['forward_limit_draws_per_second']:.0%} of it)"
    )
    for flag in report.flags:
        click.echo(f"⚑ {flag}")
    if plot:
        points = [(p.radius, p.accuracy, p.interval) for p in report.empirical]
        title = f"{model_name} ({defense}) σ={chosen.sigma:g}, n={chosen.n}"
        click.echo(
            f"plot: {save_certified_plot(report.radii_correct, plot, max_radius=record['max_radius'], title=title, empirical=points)}"
        )
    for path in outputs:
        rows = json.loads(path.read_text()) if path.is_file() and path.stat().st_size else []
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([*rows, record], indent=1))
        click.echo(f"record appended to {path}")
