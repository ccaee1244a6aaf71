"""``robustkit benchmark SUITE.yaml`` and ``robustkit leaderboard STORE…``.

Each command imports what it needs when it runs: ``leaderboard`` reads the store with pandas and
never imports torch; matplotlib only when it draws (``--publish``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from robustkit.cli.options import threads_option
from robustkit.errors import ConfigError
from robustkit.paths import home


def parse_shard(text: str | None) -> tuple[int, int]:
    """``i/n`` with 0 ≤ i < n (a Slurm array's task id over its size)."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]):
        raise ConfigError(f"--shard takes i/n with 0 ≤ i < n (e.g. 0/4), got '{text}'")
    return int(match[1]), int(match[2])


BUILTIN_SUITES = Path(__file__).resolve().parent.parent / "suites"


def suite_path(text: str) -> Path:
    """A suite file, or the name of a built-in suite (``reliable``)."""
    path = Path(text)
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        return path
    builtin = BUILTIN_SUITES / f"{text}.yaml"
    if builtin.is_file():
        return builtin
    names = ", ".join(sorted(p.stem for p in BUILTIN_SUITES.glob("*.yaml")))
    raise ConfigError(f"no suite file '{text}' and no built-in suite of that name (built-in: {names})")


@click.command()
@click.argument("suite_file", default="reliable", metavar="[SUITE]")
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite results store [OUT/results.sqlite, else $ROBUSTKIT_HOME/results/SUITE.sqlite].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the leaderboard here in every format, with the plot and the HTML page.",
)
@click.option("--shard", help="Run only share i of n of the cells (0-based, e.g. $SLURM_ARRAY_TASK_ID/4).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--no-train", is_flag=True, help="Refuse to train an entry whose checkpoint is missing.")
@threads_option
def benchmark(
    suite_file: str, store: Path | None, out: Path | None, shard: str | None, device: str, no_train: bool
) -> None:
    """Run every cell of SUITE (a YAML file, or a built-in name; default: reliable) not yet in the
    store, then print the leaderboard, the transfer matrices and any gradient-masking flags.

    Under torchrun (torchrun --nproc-per-node N -m robustkit benchmark ...) the processes split each
    cell's samples; rank 0 writes the store.
    """
    from robustkit.device import resolve_device
    from robustkit.evaluation.checks import Flag
    from robustkit.evaluation.runner import run_suite
    from robustkit.results.leaderboard import leaderboard, publish, render, render_transfer, transfer_matrix
    from robustkit.results.published import read_published
    from robustkit.results.store import read_stores
    from robustkit.suites.spec import load_suite
    from robustkit.training import distributed

    suite = load_suite(suite_path(suite_file))
    index, count = parse_shard(shard)
    if store is None:
        suffix = f"-shard{index}of{count}" if count > 1 else ""
        store = (out / f"results{suffix}.sqlite") if out else home() / "results" / f"{suite.name}{suffix}.sqlite"
    device = resolve_device(device)
    distributed.init_from_env(device)  # under torchrun: the ranks share each cell's samples
    summary = run_suite(
        suite, store, device=distributed.local_device(device), shard=(index, count), allow_train=not no_train
    )
    if not distributed.is_main():
        return
    click.echo(
        f"{summary.evaluated} cells evaluated, {summary.skipped} already in {summary.store}, {summary.seconds:.0f} s"
    )
    cells, checks = read_stores([store]), read_stores([store], "checks")
    older = int(((cells["suite"] == suite.name) & ~cells["key"].isin(summary.keys)).sum())
    cells, checks = cells[cells["key"].isin(summary.keys)], checks[checks["key"].isin(summary.keys)]
    certified = read_stores([store], "certified")
    certified = certified[certified["key"].isin(summary.keys)]
    runs = read_stores([store], "corruptions")
    runs = runs[runs["key"].isin(summary.keys)]
    if older and count > 1:  # the other shards' cells are not older: say where the whole board is
        click.echo(
            f"(this shard's cells only: {older} other cells of suite {suite.name} in the store, from the other "
            f"shards or from other weights or settings, are left out; `robustkit leaderboard {store} --suite "
            f"{suite.name}` ranks the newest of them all)",
            err=True,
        )
    elif older:
        click.echo(
            f"({older} older cells of suite {suite.name} in the store, from other weights or settings, "
            "are left out of this leaderboard)",
            err=True,
        )
    published = read_published(suite.published) if suite.published is not None else None
    click.echo(
        render(leaderboard(cells, checks, published, suite.headline, certified=certified, corruptions=runs), "md")
    )
    for title, matrix in transfer_matrix(cells).items():
        click.echo(render_transfer({title: matrix}, "md"))
    for row in checks.itertuples():
        for flag in json.loads(row.details)["flags"]:
            click.echo(f"⚑ {row.entry} {row.norm} ε={row.eps:.4g}: {Flag(**flag).line()}")
    for row in certified.itertuples():
        for flag in json.loads(row.flags):
            click.echo(f"⚑ {row.entry} certified: {flag}")
    if out:
        written = publish(
            cells,
            out,
            suite.name,
            checks=checks,
            published=published,
            headline=suite.headline,
            certified=certified,
            corruptions=runs,
        )
        click.echo(f"leaderboard: {', '.join(str(p) for p in written)}")


@click.command("leaderboard")
@click.argument("stores", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", default="md", show_default=True, help="md (markdown), csv, html, latex (tex) or json.")
@click.option("--sort", help="Column to sort by: its name, or a prefix of exactly one column [the ranking].")
@click.option("--ascending", is_flag=True, help="Sort ascending instead.")
@click.option(
    "--suite",
    "suite_name",
    help="Only this suite's cells, also those shared with other suites (needed when the stores hold several).",
)
@click.option("--out", type=click.Path(path_type=Path), help="Write the table to FILE, or with --publish a folder.")
@click.option(
    "--publish",
    "publish_all",
    is_flag=True,
    help="Write every format, the plot and the HTML page into --out, as SUITE.* for each suite (or --suite).",
)
@click.option(
    "--published",
    "published_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A table of published figures (model,norm,eps,clean_accuracy,autoattack_accuracy,source) "
    "to show beside ours, as a suite's published: names.",
)
@click.option(
    "--headline",
    "headline_text",
    metavar="NORM:EPS",
    help="Rank by the worst case at this budget, e.g. "
    "linf:0.1 or linf:8/255, as a suite's headline: names [the smallest L∞ ε evaluated].",
)
def leaderboard_command(
    stores, fmt, sort, ascending, suite_name, out, publish_all, published_file, headline_text
) -> None:
    """Merge one or more results STORES (e.g. shards) and render the leaderboard."""
    from robustkit.results.leaderboard import (
        attack_settings,
        format_name,
        leaderboard,
        of_suite,
        publish,
        render,
        sort_table,
        suite_names,
    )
    from robustkit.results.store import read_stores

    fmt = format_name(fmt)
    headline = _headline(headline_text) if headline_text else None
    published = None
    if published_file is not None:
        from robustkit.results.published import read_published

        published = read_published(published_file)
    cells, checks, members = read_stores(stores), read_stores(stores, "checks"), read_stores(stores, "members")
    certified, runs = read_stores(stores, "certified"), read_stores(stores, "corruptions")
    names = suite_names(cells, members)
    if not names:
        raise ConfigError("the results store holds no finished cells yet")
    if suite_name is not None and suite_name not in names:
        raise ConfigError(f"no suite '{suite_name}' in the results store (it holds: {', '.join(names)})")
    chosen = [suite_name] if suite_name else names
    if publish_all:
        if out is None:
            raise ConfigError("--publish needs --out FOLDER")
        for name in chosen:
            mine, mine_checks = _suite_rows(cells, checks, members, name)
            click.echo(
                "\n".join(
                    str(p)
                    for p in publish(
                        mine,
                        out,
                        name,
                        sort=sort,
                        checks=mine_checks,
                        published=published,
                        headline=headline,
                        certified=of_suite(certified, members, name),
                        corruptions=of_suite(runs, members, name),
                    )
                )
            )
        return
    if len(chosen) > 1:
        raise ConfigError(f"the results store holds suites {', '.join(chosen)}: choose one with --suite")
    certified = of_suite(certified, members, chosen[0])
    cells, checks = _suite_rows(cells, checks, members, chosen[0])
    table = sort_table(
        leaderboard(
            cells, checks, published, headline, certified=certified, corruptions=of_suite(runs, members, chosen[0])
        ),
        sort,
        descending=not ascending,
    )
    text = render(table, fmt, attack_settings(cells))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        click.echo(f"written to {out}")
    else:
        click.echo(text, nl=False)


def _headline(text: str) -> tuple[str, float]:
    """``linf:0.1`` → ("linf", 0.1); a suite's ``headline:`` on the command line."""
    from robustkit.threats import parse_eps  # here: only a named headline pays for the threat models' import

    norm, sep, eps = text.partition(":")
    if not sep or not norm.strip():
        raise ConfigError(f"--headline takes NORM:EPS (e.g. linf:0.1), got '{text}'")
    return norm.strip().lower(), parse_eps(eps.strip(), "--headline's ε")


def _suite_rows(cells, checks, members, name: str):
    """One suite's newest cells and its check runs."""
    from robustkit.results.leaderboard import latest, of_suite

    mine, dropped = latest(of_suite(cells, members, name))
    if dropped:
        click.echo(
            f"({dropped} older evaluations of cells of suite {name} evaluated again later are left out)", err=True
        )
    return mine, of_suite(checks, members, name)
