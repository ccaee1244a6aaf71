"""The ``robustkit`` command: a click group whose user errors print as one line, never a traceback."""

from __future__ import annotations

import logging

import click

from robustkit.cli.messages import route_messages
from robustkit.errors import RobustkitError
from robustkit.version import __version__


class RobustkitGroup(click.Group):
    """Turns ``RobustkitError`` (bad names, missing data, broken checkpoints) into ``Error: …``."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RobustkitError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=RobustkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="robustkit")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, other libraries' warnings included.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and errors only.")
def main(verbose: bool, quiet: bool) -> None:
    """Adversarial-robustness benchmarking: train models, attack them, rank them."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    route_messages(level, everything=verbose)  # other libraries' warnings only with -v


def _add_commands() -> None:
    from robustkit.cli.benchmark import benchmark, leaderboard_command
    from robustkit.cli.certify import certify
    from robustkit.cli.corruptions import corruptions
    from robustkit.cli.evaluate import evaluate
    from robustkit.cli.list import list_command
    from robustkit.cli.train import train

    main.add_command(train)
    main.add_command(evaluate)
    main.add_command(certify)
    main.add_command(list_command)
    main.add_command(benchmark)
    main.add_command(leaderboard_command)
    main.add_command(corruptions)


_add_commands()
