"""A budget that covers the whole input box is almost always a typo (25 for 25/255): say so."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

log = logging.getLogger(__name__)


def warn_if_covers_box(norm: str, eps: float, image_shape: Sequence[int]) -> None:
    """Warn when the ε-ball holds all of [0, 1]^(C·H·W): any image is in reach, robust accuracy is 0 by construction.

    L∞ covers the box from ε = 1, L2 from its diameter √(C·H·W); an L0 budget counts pixels.
    """
    dims = math.prod(image_shape)
    whole = {"linf": (1.0, "1"), "l2": (math.sqrt(dims), f"the box's diameter √{dims} = {math.sqrt(dims):.4g}")}
    if norm in whole and eps >= whole[norm][0]:
        hint = f" (did you mean {eps:g}/255?)" if norm == "linf" and eps > 1 else ""
        log.warning("%s ε = %g ≥ %s covers the whole [0, 1] input box: every image is within reach of every other, "
                    "so robust accuracy is 0 by construction%s", norm, eps, whole[norm][1], hint)  # fmt: skip
