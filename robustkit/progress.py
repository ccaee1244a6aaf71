"""Progress for long work: a live bar on a terminal, whole lines at every tenth of the work elsewhere.

tqdm alone draws nothing when stderr is not a terminal (``disable=None``), or a stream of carriage
returns a log file cannot show; a run under nohup, CI or a scheduler then looks hung for minutes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm
from tqdm.std import tqdm as plain_tqdm


class _TenthLines(plain_tqdm):
    """tqdm that writes one full line each time the work passes a further tenth (and so at its end)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._tenths_shown = -1
        super().__init__(*args, mininterval=0, miniters=1, ascii=True, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self.total:
            return True
        tenths = int(10 * self.n / self.total)
        if tenths > self._tenths_shown:
            self._tenths_shown = tenths
            self.fp.write(self.format_meter(**self.format_dict) + "\n")
            self.fp.flush()
        return True

    def close(self) -> None:
        """The last line if not shown yet, and nothing else: tqdm's own close adds a bare newline or a carriage return."""
        if not self.disable:
            self.display()
            self.disable = True
            self._decr_instances(self)


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> plain_tqdm:
    """A tqdm bar (``kwargs`` as tqdm's), off when not ``enabled``; lines per tenth when stderr is no terminal."""
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    return _TenthLines(iterable, file=sys.stderr, **kwargs)
