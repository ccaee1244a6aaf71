"""Digital corruptions: brightness, contrast, saturation-free colour changes, pixelation, JPEG and the
elastic warp. Pixelation and JPEG go through Pillow per image (its BOX resampling and libjpeg are what
the references call); the rest are batched in torch."""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor

from robustkit.corruptions import filters
from robustkit.per_sample_random import SampleRandom


def brightness(x: Tensor, shift: float, rng: SampleRandom) -> Tensor:
    """HSV value V = max over channels raised by ``shift`` (clipped), hue and saturation kept: the pixel
    scales by V'/V (a black pixel becomes grey V'). On grey images (MNIST-C) this is x + shift, clipped."""
    value = x.amax(dim=1, keepdim=True)
    raised = (value + shift).clamp(0, 1)
    scaled = x * raised / value.clamp(min=1e-12)
    return torch.where(value > 0, scaled, raised.expand_as(x)).clamp(0, 1)


def contrast(x: Tensor, factor: float, rng: SampleRandom) -> Tensor:
    """Deviations from each channel's mean scaled by ``factor``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def _pil_images(x: Tensor):
    from PIL import Image

    data = filters.to_bytes(x).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    mode = "L" if data.shape[-1] == 1 else "RGB"
    return [Image.fromarray(d[..., 0] if mode == "L" else d, mode=mode) for d in data]


def _from_pil(images, like: Tensor) -> Tensor:
    arrays = np.stack([np.asarray(im, dtype=np.float32).reshape(like.shape[2], like.shape[3], -1) for im in images])
    return torch.from_numpy(arrays / 255).permute(0, 3, 1, 2).to(like.device, like.dtype)


def pixelate(x: Tensor, factor: float, rng: SampleRandom) -> Tensor:
    """Pillow's BOX resize down to int(side·factor) and back up."""
    from PIL import Image

    h, w = x.shape[-2:]
    small = (int(w * factor), int(h * factor))
    return _from_pil([im.resize(small, Image.BOX).resize((w, h), Image.BOX) for im in _pil_images(x)], x)


def jpeg_bytes(image, quality: int) -> bytes:
    """One Pillow image as a JPEG file at ``quality`` (libjpeg's scaled IJG tables)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def jpeg_compression(x: Tensor, quality: int, rng: SampleRandom) -> Tensor:
    """Each image saved as a JPEG at ``quality`` and decoded."""
    from PIL import Image

    return _from_pil([Image.open(io.BytesIO(jpeg_bytes(im, quality))) for im in _pil_images(x)], x)


def affine_from_points(source: Tensor, target: Tensor) -> Tensor:
    """OpenCV's ``getAffineTransform``: the N×2×3 matrices taking three (x, y) points to three others."""
    ones = torch.ones(*source.shape[:-1], 1, dtype=source.dtype)
    a = torch.cat([source, ones], dim=-1)  # N×3×3
    return torch.linalg.solve(a, target).transpose(1, 2)


def elastic_transform(x: Tensor, c: tuple[float, float, float], rng: SampleRandom) -> Tensor:
    """CIFAR-10-C's elastic: a random affine (three points moved up to ``c[2]`` px; bilinear, reflect-101),
    then a displacement field U(−1, 1) blurred (σ = ``c[1]``, reflect, truncate 3) and scaled by ``c[0]``,
    read bilinearly (SciPy ``map_coordinates``, reflect)."""
    alpha, sigma, shift = c
    n, _, h, w = x.shape
    centre, square = np.float32([h, w]) // 2, min(h, w) // 3
    points = torch.tensor(
        [
            [centre[0] + square, centre[1] + square],
            [centre[0] + square, centre[1] - square],
            [centre[0] - square, centre[1] - square],
        ],
        dtype=torch.float64,
    )
    moved = points + (rng.rand(3, 2).double() * 2 - 1) * shift
    forward = affine_from_points(points.expand(n, 3, 2), moved)
    full = torch.cat([forward, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 1, 3)], dim=1)
    inverse = torch.linalg.inv(full)[:, :2]  # warpAffine reads the source at M⁻¹(x, y)
    rows, cols = filters.affine_grid(inverse, h, w)
    x = filters.bilinear(x, rows.to(x.device), cols.to(x.device), "mirror")
    fields = (rng.rand(2, h, w).double() * 2 - 1).to(x.device)
    fields = filters.gaussian(fields, sigma, mode="reflect", truncate=3) * alpha if sigma > 0 else fields * alpha
    fields = fields.float().double()  # the reference casts the field to float32
    grid_r, grid_c = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    out = filters.bilinear(x, grid_r.to(x.device) + fields[:, 1], grid_c.to(x.device) + fields[:, 0], "reflect")
    return out.clamp(0, 1)
