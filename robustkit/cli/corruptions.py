"""``robustkit corruptions``: accuracy under common corruptions (CIFAR-10-C's on colour data, MNIST-C's on
grey), per corruption and severity with 95 % intervals, the mean with a bootstrap interval, and mCE
against the undefended model of the same architecture. Torch is imported when the command runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from robustkit.cli.options import dataset_options, runtime_options
from robustkit.cli.table import echo_table, shown, with_interval
from robustkit.errors import ConfigError


def _severities(text: str) -> str | tuple[int, ...]:
    if text in ("benchmark", "all"):
        return text
    try:
        steps = tuple(int(v) for v in text.split(","))
    except ValueError:
        steps = ()
    if not steps or any(not 1 <= s <= 5 for s in steps):
        raise ConfigError(f"--severities: benchmark, all, or steps 1–5 separated by commas (1,3,5), got {text!r}")
    return steps


@click.command("corruptions")
@click.option("--model", "model_name", required=True, help="Registered model name (robustkit list models).")
@dataset_options
@click.option(
    "--n-samples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Size of the fixed, seeded evaluation subset of the test split.",
)
@click.option("--corruption", "names", multiple=True, help="Only this corruption (repeatable) [every available one].")
@click.option(
    "--severities",
    default="benchmark",
    show_default=True,
    help="benchmark (CIFAR-10-C: 1–5; MNIST-C: its one step each), all, or steps such as 1,3,5.",
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A precomputed CIFAR-10-C-layout folder (<corruption>.npy, labels.npy) read instead of generating.",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Weights to evaluate [the cached checkpoint; trained if missing].",
)
@click.option("--weights", help="A state-dict file or the model library's weights name, evaluated as given.")
@click.option("--no-train", is_flag=True, help="Refuse to train a missing checkpoint.")
@click.option("--defense", default="none", show_default=True, help="Defense the cached checkpoint was trained with.")
@click.option("--defense-eps", help="ε the defense was trained at [the field's usual one].")
@click.option(
    "--baseline/--no-baseline",
    default=None,
    help="Also score the undefended model of the same architecture and print mCE [on for a defended model].",
)
@click.option(
    "--baseline-checkpoint",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The undefended model's weights [its cached checkpoint].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@runtime_options
@click.option(
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write FILE.csv (one row per corruption and severity), append to FILE.json, or add the run to a "
    "results store FILE.sqlite that `robustkit leaderboard` reads (repeatable).",
)
def corruptions(
    model_name,
    dataset,
    data_dir,
    download,
    image_size,
    workers,
    n_samples,
    names,
    severities,
    folder,
    checkpoint,
    weights,
    no_train,
    defense,
    defense_eps,
    baseline,
    baseline_checkpoint,
    device,
    seed,
    batch_size,
    outputs,
) -> None:
    """Accuracy of MODEL under common corruptions on the seeded test subset (generated per image from the
    seed, so the figures do not depend on the batch size)."""
    from robustkit.cli.options import open_dataset
    from robustkit.evaluation.api import ModelOptions, RunOptions
    from robustkit.evaluation.corruption_run import evaluate_model_corruptions
    from robustkit.models import check_model_name
    from robustkit.suites.spec import CorruptionEntry

    check_model_name(model_name)
    for path in outputs:
        if path.suffix not in (".csv", ".json", ".sqlite"):
            raise ConfigError(f"--output must end in .csv, .json or .sqlite, got {path.name}")
    spec = CorruptionEntry(names=tuple(names) or None, severities=_severities(severities), folder=folder)
    data = open_dataset(dataset, data_dir, download, image_size, workers)
    run = evaluate_model_corruptions(
        model_name,
        data,
        n_samples=n_samples,
        corruptions=spec,
        baseline=baseline,
        baseline_checkpoint=baseline_checkpoint,
        model_options=ModelOptions(weights, checkpoint, defense, defense_eps, no_train),
        run=RunOptions(seed=seed, device=device, batch_size=batch_size),
    )
    report = run.report
    errors = report.corruption_errors(run.baseline) if run.baseline is not None else {}
    rows = report.table()
    echo_table(
        ["corruption", "severity", "accuracy [95 % CI]", *(["CE"] if errors else []), "seconds"],
        [
            [
                r["corruption"],
                r["severity"],
                with_interval(r["accuracy"], _interval(r)),
                *([shown(errors[r["corruption"]], ".3f")] if errors else []),
                shown(r["seconds"], ".2f"),
            ]
            for r in rows
        ],
    )
    click.echo(
        f"{report.source}: {len(dict.fromkeys(report.names))} corruptions, {len(rows)} (corruption, severity) "
        f"pairs on {report.n} images; clean accuracy {shown(report.clean_accuracy)}"
    )
    click.echo(
        f"mean corruption accuracy: {with_interval(report.mean_accuracy, report.mean_interval())} "
        f"(95 % bootstrap over images), {shown(float(report.seconds.sum()), '.1f')} s"
    )
    if run.baseline is not None:
        click.echo(
            f"mCE: {shown(run.mce, '.3f')} (errors over the undefended {model_name}'s, whose mean corruption "
            f"accuracy is {shown(run.baseline.mean_accuracy)})"
        )
    for name, why in report.unavailable.items():
        click.echo(f"not evaluated: {name} ({why})")
    for path in outputs:
        _write(path, {**run.record, "mCE": run.mce, "corruption_errors": errors or None}, rows)


def _interval(row: dict):
    from robustkit.results.intervals import Interval

    return Interval(row["accuracy_low"], row["accuracy_high"])


def _write(path: Path, record: dict, rows: list[dict]) -> None:
    """A store gets the run (a leaderboard reads it); CSV the per-pair table; JSON the record with its table."""
    import pandas as pd

    from robustkit.results.store import ResultStore

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".sqlite":
        with ResultStore(path) as store:  # mCE is the board's to compute, against the entries it holds
            store.put({k: v for k, v in record.items() if k not in ("mCE", "corruption_errors")}, "corruptions")
            store.add_members(record["suite"], [record["key"]])
    elif path.suffix == ".csv":
        named = {k: record[k] for k in ("entry", "dataset", "n", "sample_seed", "source", "weights_sha256")}
        pd.DataFrame([{**named, **row} for row in rows]).to_csv(path, index=False)
    else:
        kept = json.loads(path.read_text()) if path.exists() and path.stat().st_size else []
        summary = {k: v for k, v in record.items() if k != "details"}
        path.write_text(json.dumps([*kept, {**summary, "table": rows}], indent=1))
    click.echo(f"wrote {path}")
