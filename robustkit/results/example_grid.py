"""A PNG a person can look at: clean image | amplified perturbation | adversarial image, with labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from robustkit.predict import ABSTAIN
from robustkit.threats import L0

_CELL, _CAPTION = 120, 14


def save_example_grid(
    path: str | Path,
    clean: Tensor,
    adversarial: Tensor,
    labels: Tensor,
    predictions: Tensor,
    class_names: Sequence[str],
    *,
    norm: str | None = None,
) -> Path:
    """One row per example; the perturbation is shown around mid-grey, scaled to the row's largest change.

    Its caption gives that amplification, or under L0 (where a change may span the whole range, an
    amplification below 1) the number of pixels changed, the budget that attack spends.
    """
    from PIL import Image, ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    delta = adversarial.float() - clean.float()
    scale = 0.5 / delta.flatten(1).abs().amax(1).clamp_min(1e-12)
    perturbation = 0.5 + delta * scale.view(-1, 1, 1, 1)
    canvas = Image.new("RGB", (3 * _CELL, max(len(clean), 1) * (_CELL + _CAPTION)), "white")
    draw = ImageDraw.Draw(canvas)
    for row in range(len(clean)):
        cells = [
            (clean[row], f"clean: {class_names[int(labels[row])]}"),
            (perturbation[row], _delta_caption(delta[row], scale[row].item(), norm)),
            (adversarial[row], f"adv: {_name(class_names, int(predictions[row]))}"),
        ]
        for col, (image, caption) in enumerate(cells):
            top = row * (_CELL + _CAPTION)
            canvas.paste(_to_pil(image), (col * _CELL, top + _CAPTION))
            draw.text((col * _CELL + 2, top + 1), caption[:20], fill="black")
    canvas.save(path)
    return path


def save_fooling_grid(
    path: str | Path,
    images: Tensor,
    classes: Tensor,
    confidence: Tensor,
    passed: Tensor,
    class_names: Sequence[str],
    *,
    columns: int = 5,
) -> Path:
    """One cell per class sought: the image, and under it the class name and the verified confidence (✓ passed)."""
    from PIL import Image, ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = max(-(-len(images) // columns), 1)
    canvas = Image.new("RGB", (columns * _CELL, rows * (_CELL + 2 * _CAPTION)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, image in enumerate(images):
        left, top = (i % columns) * _CELL, (i // columns) * (_CELL + 2 * _CAPTION)
        canvas.paste(_to_pil(image), (left, top))
        draw.text((left + 2, top + _CELL + 1), class_names[int(classes[i])][:20], fill="black")
        mark = "ok" if passed[i] else "no"  # PIL's default font has no ✓
        draw.text((left + 2, top + _CELL + _CAPTION), f"p={float(confidence[i]):.4f} {mark}", fill="black")
    canvas.save(path)
    return path


def _name(class_names: Sequence[str], label: int) -> str:
    return "no majority" if label == ABSTAIN else class_names[label]  # a randomised model's split vote


def _delta_caption(delta: Tensor, scale: float, norm: str | None) -> str:
    if norm == L0.name:
        changed = int((delta != 0).any(0).sum())
        return f"delta: {changed} pixel" + ("" if changed == 1 else "s")
    return f"delta x{scale:.3g}"


def _to_pil(image: Tensor):
    from PIL import Image

    big = F.interpolate(image.float()[None].clamp(0, 1), size=(_CELL, _CELL), mode="nearest")[0]
    if big.shape[0] == 1:
        big = big.expand(3, -1, -1)
    array = (big * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array)


def example_strip(clean: Tensor | None, adversarial: Tensor, size: int = 56) -> bytes:
    """A small PNG for a leaderboard card: clean over adversarial, one column per example (``clean``
    None: the adversarial images alone, e.g. fooling images, which have no clean image).

    No captions: the card says which attack and budget it shows; the point is to *see* the change.
    """
    import io

    from PIL import Image

    rows = 1 if clean is None else 2
    pairs = adversarial if clean is None else torch.cat([clean, adversarial], dim=-2)  # N×C×2H×W: clean on top
    pairs = F.interpolate(pairs.float().clamp(0, 1), size=(rows * size, size), mode="nearest")
    pairs = pairs.expand(-1, 3, -1, -1) if pairs.shape[1] == 1 else pairs
    gap = torch.ones(len(pairs), 3, rows * size, 4)  # white gutters between examples
    row = torch.cat([t for pair in zip(pairs, gap, strict=True) for t in pair][:-1], dim=-1)
    array = (row * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
