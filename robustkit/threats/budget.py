"""A budget that covers the whole input box is almost always a typo (25 for 25/255): say so."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from robustkit.threats.base import ThreatModel

log = logging.getLogger(__name__)


def warn_if_covers_box(threat: ThreatModel, image_shape: Sequence[int]) -> None:
    """Warn when ``threat`` reaches all of [0, 1]^(C·H·W): any image is in reach, robust accuracy is 0 by construction.

    Each threat model says from which budget that happens (``whole_box_budget``): L∞ from ε = 1, L2
    from the box's diameter √(C·H·W), L1 from C·H·W, L0 from every pixel, a patch from the image's side.
    """
    whole = threat.whole_box_budget(tuple(image_shape))
    if whole is None or threat.eps < whole[0]:
        return
    hint = f" (did you mean {threat.eps:g}/255?)" if threat.name == "linf" and threat.eps > 1 else ""
    log.warning(
        "%s ε = %g ≥ %s covers the whole [0, 1] input box: every image is within reach of every other, "
        "so robust accuracy is 0 by construction%s",
        threat.name,
        threat.eps,
        whole[1],
        hint,
    )
