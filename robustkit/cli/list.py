"""``robustkit list KIND [PATTERN]``: what each registry holds, with a line and the key settings.

Read from ``robustkit.plugin_index``, so listing the built-ins imports no plugin and no torch.
"""

from __future__ import annotations

import fnmatch

import click

from robustkit.cli.table import echo_table
from robustkit.plugin_index import REGISTRIES, entries


@click.command("list")
@click.argument("kind", type=click.Choice(sorted(REGISTRIES)))
@click.argument("pattern", default="*")
def list_command(kind: str, pattern: str) -> None:
    """List registered models, datasets, attacks, defenses or threat models (PATTERN is a glob, e.g. 'resnet*')."""
    rows = [[e["name"], e["description"], e["settings"]] for e in entries(kind) if fnmatch.fnmatch(e["name"], pattern)]
    if not rows:
        click.echo(f"no {kind} registered" + (f" matching '{pattern}'" if pattern != "*" else ""))
        return
    echo_table(["name", "description", "settings"], rows)
