"""Write a matplotlib figure as a file, its folder made first, and free it: every plot robustkit draws ends here."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, save it at ``path`` (parents created) and close it, so long runs hold no figures."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
