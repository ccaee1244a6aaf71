"""Which messages reach the terminal: robustkit's own (its plugins' too), and other libraries' errors.

Other libraries' warnings and notes (pkg_resources' deprecation when robustbench loads, torch.jit's
FutureWarning while a zoo model loads, matplotlib's "generated new fontManager") say nothing a user
of robustkit can act on, and bury its own lines; ``-v`` shows everything. Python warnings go through
logging, under ``robustkit.warnings`` when our code issued them, ``py.warnings`` otherwise.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

OWN = ("robustkit", "attacks", "defenses")  # the packages robustkit ships: its loggers and its files
_ROOT = Path(__file__).resolve().parents[2]


class OwnMessages(logging.Filter):
    """Lets through every record of robustkit's loggers, and other loggers' errors (everything with ``everything``)."""

    def __init__(self, everything: bool) -> None:
        super().__init__()
        self.everything = everything

    def filter(self, record: logging.LogRecord) -> bool:
        return self.everything or record.levelno >= logging.ERROR or record.name.split(".")[0] in OWN


def is_own_file(filename: str) -> bool:
    path = Path(filename).resolve()
    return any(path.is_relative_to(_ROOT / package) for package in OWN)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` into logging, under the logger of whoever issued the warning."""
    logger = logging.getLogger("robustkit.warnings" if is_own_file(filename) else "py.warnings")
    logger.warning("%s: %s", category.__name__, message)


def route_messages(level: int, everything: bool = False) -> None:
    """Log to stderr at ``level``, robustkit's messages only unless ``everything``; warnings through logging."""
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(OwnMessages(everything))
    warnings.showwarning = show_warning
