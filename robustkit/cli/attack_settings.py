"""``evaluate``'s attack-setting flags, generated from the built-in attacks' own settings (``--steps``, ``--population``…).

The names and defaults come from ``plugin_index.json``, so ``evaluate --help`` imports no attack (or torch);
values are read when the command runs, against the chosen attack's field types. A third-party attack's
settings are set with ``-o KEY=VALUE``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import click
import yaml

from robustkit.errors import ConfigError
from robustkit.plugin_index import builtin_entries, written_settings

OWN_ARGUMENTS = ("eps", "norm", "seed", "perturbation")  # evaluate's own options, never an attack-setting flag


def setting_defaults() -> dict[str, dict[str, str]]:
    """Per setting any built-in attack takes: attack → its default as written (``repr``), and the paper's
    where the attack names the paper's settings and they differ (``100; the paper's 400``)."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for entry in builtin_entries("attacks"):
        paper = written_settings(entry.get("paper", ""))
        for name, default in written_settings(entry["settings"]).items():
            if name not in OWN_ARGUMENTS:
                found[name][entry["name"]] = default + (f"; the paper's {paper[name]}" if name in paper else "")
    return dict(found)


def add_setting_flags(command: click.Command, *, after: str) -> click.Command:
    """Insert one ``--name VALUE`` per attack setting after the option ``after``; a setting whose flag the
    command already has (``--batch-size``) stays an ``-o`` one."""
    taken = {spelling for param in command.params for spelling in param.opts}
    flags = [
        click.Option([f"--{name.replace('_', '-')}", name], metavar="VALUE", help=_help(defaults))
        for name, defaults in sorted(setting_defaults().items())
    ]
    at = next(i for i, param in enumerate(command.params) if param.name == after) + 1
    command.params[at:at] = [flag for flag in flags if flag.opts[0] not in taken]
    return command


def _help(defaults: dict[str, str]) -> str:
    """The attacks that take the setting, grouped by their default: ``patch, pgd [10]; apgd [100].``"""
    by_default: dict[str, list[str]] = defaultdict(list)
    for attack, default in sorted(defaults.items()):
        by_default[default].append(attack)
    return "; ".join(f"{', '.join(attacks)} [{default}]" for default, attacks in by_default.items()) + "."


def flag_settings(flags: dict[str, str | None], attack: str) -> dict[str, Any]:
    """The flags given, read as ``attack`` types them: a number field takes ``2/255``; others as ``-o`` values."""
    import typing

    from robustkit.registry import ATTACKS
    from robustkit.threats import parse_eps

    try:
        hints = typing.get_type_hints(ATTACKS.get(attack))
    except (NameError, TypeError):
        hints = {}
    read = {}
    for key, text in flags.items():
        if text is None:
            continue
        numeric = float in typing.get_args(hints.get(key)) or hints.get(key) is float
        read[key] = (
            parse_eps(text, key.replace("_", " ")) if numeric else option_value(key, text, f"--{key.replace('_', '-')}")
        )
    return read


def option_value(key: str, text: str, given_as: str) -> Any:
    """A value as YAML reads a scalar (5, 0.5, true, sgd), a fraction as a number; else a one-line error."""
    from robustkit.threats import parse_eps

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{given_as}: the value is not a plain number, word or boolean") from None
    if isinstance(value, str) and "/" in value:
        value = parse_eps(value, key)
    if not isinstance(value, (int, float, str, bool, type(None))):
        raise ConfigError(f"{given_as}: the value must be a number, word or boolean")
    return value


def key_values(options: tuple[str, ...], named: dict | None = None) -> dict:
    """``-o key=value`` pairs; values are read as YAML scalars (5, 0.5, true, sgd), fractions as numbers.
    A key ``named`` already sets (by a flag of its own) is refused."""
    extra = {}
    for option in options:
        key, sep, text = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"-o/--option takes KEY=VALUE, got '{option}'")
        if (named or {}).get(key) is not None:
            raise ConfigError(f"'{key}' is set twice: by its own flag and by -o {option}")
        extra[key] = option_value(key, text, f"-o {option}")
    return extra
