"""One registry class for every kind of plugin: models, datasets, attacks and defenses.

Built-ins come from one explicitly named package per kind (importing it runs their ``register``
decorators); third-party plugins come from an entry-point group and go through the same
``register``. Both load lazily, on the first lookup, so importing robustkit stays cheap.
Set ``ROBUSTKIT_DISABLE_PLUGIN_AUTOLOAD=1`` to skip third-party plugins (as pytest does).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import inspect
import logging
import os
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar, overload

from robustkit.errors import ConfigError, DuplicateNameError, UnknownNameError

T = TypeVar("T", bound=Callable[..., Any])
log = logging.getLogger(__name__)

DISABLE_AUTOLOAD_ENV = "ROBUSTKIT_DISABLE_PLUGIN_AUTOLOAD"


def canonical_name(name: str) -> str:
    # "Fashion_MNIST" and "fashion-mnist" name the same thing; users should not have to guess.
    return name.strip().lower().replace("_", "-")


class Registry(Generic[T]):
    """A name → plugin dict with a ``register`` decorator, fuzzy errors and glob listing."""

    def __init__(self, kind: str, *, builtins: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, T] = {}
        self._names: dict[str, str] = {}  # canonical → registered spelling
        self._loaded = False

    @overload
    def register(self, obj: T, *, name: str | None = None) -> T: ...
    @overload
    def register(self, obj: str | None = None, *, name: str | None = None) -> Callable[[T], T]: ...

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Register ``obj`` under ``name`` (default: its ``name`` attribute or ``__name__``).

        Usable as ``@REG.register``, ``@REG.register("name")`` or ``REG.register(obj, name=...)``.
        """
        if isinstance(obj, str):
            obj, name = None, obj

        def add(item: T) -> T:
            key = name or getattr(item, "name", None) or getattr(item, "__name__", None)
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"cannot register {item!r} as a {self.kind}: it has no name")
            canon = canonical_name(key)
            known = self._names.get(canon)
            if known is not None and self._entries[known] is not item:
                raise DuplicateNameError(f"{self.kind} '{key}' is already registered by {self._entries[known]!r}")
            self._names[canon] = key
            self._entries[key] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """The plugin called ``name``; an unknown name raises an error that suggests close ones."""
        self._ensure_loaded()
        key = self._names.get(canonical_name(name))
        if key is None:
            close = difflib.get_close_matches(canonical_name(name), list(self._names), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(self._names[c] for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{hint} (available: {', '.join(self.list()) or 'none'})"
            )
        return self._entries[key]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the plugin with ``kwargs`` minus the ``None`` ones, so unset options keep its defaults."""
        plugin = self.get(name)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            inspect.signature(plugin).bind(*args, **kwargs)
        except TypeError as err:
            raise ConfigError(f"{self.kind} '{name}': {err}") from None
        problem = _type_problem(plugin, kwargs)
        if problem:
            raise ConfigError(f"{self.kind} '{name}': {problem}")
        return plugin(*args, **kwargs)

    def default(self, name: str, setting: str) -> Any:
        """The value ``setting`` takes when ``build`` is not given it: what runs, and what ``list`` shows."""
        parameter = inspect.signature(self.get(name)).parameters.get(setting)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise ConfigError(f"{self.kind} '{name}' has no default for '{setting}'")
        return parameter.default

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return isinstance(name, str) and canonical_name(name) in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.list())

    def holds_only_builtins(self) -> bool:
        """True while looking up would hold the built-ins alone: nothing is registered in this process yet
        and no third-party plugin waits in the entry-point group (``robustkit.plugin_index`` then answers
        for it without importing a plugin)."""
        return not self._entries and not self._third_party()

    def _third_party(self) -> Sequence[EntryPoint]:  # `list` here is the method above
        return [] if os.environ.get(DISABLE_AUTOLOAD_ENV) else list(entry_points(group=self.group))

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # set first: the imports below call back into register()
        importlib.import_module(self._builtins)
        for ep in self._third_party():
            try:
                self.register(ep.load(), name=ep.name)
            except Exception as err:  # a broken third-party plugin must not take the tool down
                log.warning("skipping %s plugin '%s' from %s: %s", self.kind, ep.name, ep.value, err)


_PLAIN = {bool: "true or false", int: "a whole number", float: "a number", str: "a word"}


def _type_problem(plugin: Any, settings: dict[str, Any]) -> str | None:
    """The first setting whose value does not fit its dataclass field's plain type, as one line; else None.

    Fields typed int, float, bool or str (optionally None) are checked, so a CLI ``-o steps=abc`` or a
    suite's ``steps: abc`` fails here in one line rather than as a TypeError deep in the plugin.
    """
    if not dataclasses.is_dataclass(plugin):
        return None
    try:
        hints = typing.get_type_hints(plugin)
    except (NameError, TypeError):  # annotations this Python cannot resolve: the plugin checks itself
        return None
    for key, value in settings.items():
        hint = hints.get(key)
        allowed: set[Any] = (
            set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
        )
        allowed.discard(type(None))
        if allowed and allowed <= _PLAIN.keys() and not any(_fits(kind, value) for kind in allowed):
            return f"{key} must be {' or '.join(_PLAIN[k] for k in _PLAIN if k in allowed)}, got {value!r}"
    return None


def _fits(kind: type, value: Any) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, never to a user
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


DEFAULT_DATASET = "fashion-mnist"  # here, not in robustkit.data, so the CLI shows it without importing torch
MODELS: Registry = Registry("model", builtins="robustkit.models", group="robustkit.models")
DATASETS: Registry = Registry("dataset", builtins="robustkit.data", group="robustkit.datasets")
ATTACKS: Registry = Registry("attack", builtins="attacks", group="robustkit.attacks")
DEFENSES: Registry = Registry("defense", builtins="defenses", group="robustkit.defenses")
THREATS: Registry = Registry("threat model", builtins="robustkit.threats", group="robustkit.threats")
