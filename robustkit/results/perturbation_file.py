"""Universal perturbations on disk: exact in safetensors, shareable (and loadable) as a PNG.

The safetensors file holds δ (C×H×W, float32) and a JSON record in its header, written atomically.
The PNG shows δ amplified around mid-grey (0 → 128, ±max|δ| → 0/255) at its own resolution, and
carries that scale in a text chunk, so loading it gives δ back to within max|δ|/255 per pixel.
An image in [0, 1] (a universal patch, ``images=True``) is shown as it looks instead, enlarged by a
whole factor (nearest neighbour, kept in a text chunk) to at least 256 pixels a side so it can be
printed; loading it gives the image back to within 1/510 per pixel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustkit.errors import CheckpointError
from robustkit.weights.checkpoint import read_safetensors, write_safetensors

KEY, META = "perturbation", "robustkit"


def save_perturbation(
    path: str | Path, delta: Tensor, record: dict[str, Any], *, images: bool = False
) -> tuple[Path, Path]:
    """Write ``path`` (.safetensors) and ``path`` .png beside it, both carrying ``record``: the PNG is δ
    amplified, or with ``images`` (``delta`` is an image in [0, 1], e.g. a patch) the image enlarged."""
    path = Path(path)
    if path.suffix != ".safetensors":  # append: a stem like "…-eps0.1" has a dot that is not a suffix
        path = path.with_name(path.name + ".safetensors")
    delta = _checked(delta.detach().float().cpu(), path)
    if images and not ((delta >= 0) & (delta <= 1)).all():
        raise CheckpointError(f"{path}: an image to save holds pixels outside [0, 1]")
    text = json.dumps(record, sort_keys=True, default=str)
    write_safetensors(path, {KEY: delta}, {META: text})
    return path, _save_png(path.with_suffix(".png"), delta, text, images)


def load_perturbation(path: str | Path) -> tuple[Tensor, dict[str, Any]]:
    """δ (C×H×W, float32) and its record, from a .safetensors or .png written by ``save_perturbation``."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".png":
        return _load_png(path)
    tensors, meta = read_safetensors(path, "perturbation file")
    if KEY not in tensors:
        raise CheckpointError(f"{path} holds no '{KEY}' tensor (has: {', '.join(tensors) or 'nothing'})")
    return _checked(tensors[KEY].float(), path), _record(meta.get(META, "{}"), path)


def _save_png(path: Path, delta: Tensor, text: str, images: bool) -> Path:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(META, text)
    if images:
        enlarge = max(1, -(-256 // max(delta.shape[1:])))
        pixels = (delta * 255).round().to(torch.uint8).repeat_interleave(enlarge, 1).repeat_interleave(enlarge, 2)
        info.add_text("enlarged", str(enlarge))
    else:
        scale = delta.abs().max().item()
        pixels = ((0.5 + 0.5 * delta / max(scale, 1e-12)) * 255).round().clamp(0, 255).to(torch.uint8)
        info.add_text("scale", repr(scale))
    array = pixels[0].numpy() if len(pixels) == 1 else pixels.permute(1, 2, 0).contiguous().numpy()
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)
    return path


def _load_png(path: Path) -> tuple[Tensor, dict[str, Any]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            text, mode = dict(image.text), image.mode
            array = torch.from_numpy(np.asarray(image).copy())
    except (OSError, UnidentifiedImageError) as err:
        raise CheckpointError(f"{path}: not a readable PNG ({err})") from None
    if not ("scale" in text or "enlarged" in text) or mode not in ("L", "RGB"):
        raise CheckpointError(f"{path} is not a robustkit perturbation PNG (no scale in its metadata)")
    pixels = array[None] if array.ndim == 2 else array.permute(2, 0, 1)
    if "enlarged" in text:
        enlarge = _number(text, "enlarged", path, int)
        delta = pixels[:, ::enlarge, ::enlarge].float() / 255
    else:
        delta = (pixels.float() / 255 - 0.5) * 2 * _number(text, "scale", path, float)
    return _checked(delta, path), _record(text.get(META, "{}"), path)


def _number(text: dict[str, str], key: str, path: Path, kind: type) -> float:
    try:
        value = kind(text[key])
    except ValueError:
        raise CheckpointError(f"{path}: malformed {key} '{text[key]}'") from None
    if kind is int and value < 1:
        raise CheckpointError(f"{path}: malformed {key} '{text[key]}'")
    return value


def _record(text: str, path: Path) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: malformed robustkit metadata ({err})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: malformed robustkit metadata (not a JSON object)")
    return record


def _checked(delta: Tensor, path: Path) -> Tensor:
    if delta.ndim != 3 or not torch.isfinite(delta).all():
        raise CheckpointError(f"{path}: a perturbation is one finite C×H×W image, got shape {tuple(delta.shape)}")
    return delta
