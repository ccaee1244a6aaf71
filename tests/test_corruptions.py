"""Common corruptions checked against the published parameters: for each, the statistic its parameter fixes,
measured on the output (noise σ, impulse share, blur width, HSV value shift, contrast factor, JPEG tables,
pixel blocks, fog thickness, affine moves), the shared filters against SciPy, and every corruption's
determinism from the seed and independence of the batch."""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from robustkit.corruptions import blur, digital, filters, noise, strokes, weather
from robustkit.corruptions.catalog import CIFAR_10_C, MNIST_C, UNAVAILABLE, select
from robustkit.corruptions.evaluate import corrupt
from robustkit.errors import ConfigError
from robustkit.per_sample_random import SampleRandom

CIFAR = {c.name: c for c in CIFAR_10_C}
MNIST = {c.name: c for c in MNIST_C}


def rng(n: int, seed: int = 0) -> SampleRandom:
    return SampleRandom(seed, torch.arange(n))


def grey(n: int = 4, shape=(3, 32, 32), value: float = 0.5) -> torch.Tensor:
    return torch.full((n, *shape), value)


def test_the_sets_are_the_published_ones():
    assert [c.name for c in CIFAR_10_C] == [
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "fog",
        "brightness",
        "contrast",
        "elastic_transform",
        "pixelate",
        "jpeg_compression",
    ]
    assert "frost" in UNAVAILABLE and len(CIFAR_10_C) + len(UNAVAILABLE) == 15
    assert [c.name for c in MNIST_C] == [
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "shear",
        "scale",
        "rotate",
        "brightness",
        "translate",
        "stripe",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
        "canny_edges",
    ]
    assert len(select(3)) == 14 * 5 and len(select(1)) == 15 and len(select(1, severities="all")) == 11 * 5 + 4
    with pytest.raises(ConfigError, match="unknown corruption frost"):
        select(1, ("frost",))  # not one of MNIST-C's 15
    with pytest.raises(ConfigError, match="frost is unavailable"):
        select(3, ("frost",))
    with pytest.raises(ConfigError, match="unknown corruption"):
        select(1, ("contrast",))


@pytest.mark.parametrize("severity", range(1, 6))
def test_gaussian_noise_std_is_sigma(severity):
    sigma = CIFAR["gaussian_noise"].parameter(severity)
    x = grey(8)
    delta = noise.gaussian_noise(x, sigma, rng(8)) - x  # at 0.5 clipping is ≥ 5σ away
    assert delta.std().item() == pytest.approx(sigma, rel=0.02) and abs(delta.mean().item()) < 0.003


@pytest.mark.parametrize("table,severity", [(CIFAR, s) for s in range(1, 6)] + [(MNIST, 5)])
def test_shot_noise_variance_is_value_over_rate(table, severity):
    rate = table["shot_noise"].parameter(severity)
    x = grey(8, value=0.2)
    out = noise.shot_noise(x, rate, rng(8))
    assert out.var().item() == pytest.approx(0.2 / rate, rel=0.05) and out.mean().item() == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("amount", [0.01, 0.07, 0.17])
def test_impulse_noise_replaces_a_share_amount_half_salt(amount):
    x = grey(16)
    out = noise.impulse_noise(x, amount, rng(16))
    hit = out != 0.5
    assert hit.float().mean().item() == pytest.approx(amount, rel=0.08)
    assert (out[hit] == 1).float().mean().item() == pytest.approx(0.5, abs=0.05)


def _impulse(shape=(1, 1, 33, 33)) -> torch.Tensor:
    x = torch.zeros(shape, dtype=torch.float64)
    x[..., shape[-2] // 2, shape[-1] // 2] = 1
    return x


def _moments(image: torch.Tensor) -> tuple[float, float, float]:
    """Total, and variance along rows and columns, of a response."""
    p = image.double().squeeze()
    r = torch.arange(p.shape[0], dtype=torch.float64)[:, None]
    c = torch.arange(p.shape[1], dtype=torch.float64)[None, :]
    total = p.sum()
    mr, mc = (p * r).sum() / total, (p * c).sum() / total
    return float(total), float((p * (r - mr) ** 2).sum() / total), float((p * (c - mc) ** 2).sum() / total)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 1.5, 3.0])
def test_gaussian_blur_of_an_impulse_has_variance_sigma_squared(sigma):
    total, var_r, var_c = _moments(filters.gaussian(_impulse(), sigma))
    assert (
        total == pytest.approx(1)
        and var_r == pytest.approx(sigma**2, rel=0.02)
        and var_c == pytest.approx(sigma**2, rel=0.02)
    )
    total, var_r, var_c = _moments(blur.gaussian_blur(_impulse(), sigma, rng(1), grey_rows_only=True))
    assert var_r == pytest.approx(sigma**2, rel=0.02) and var_c == 0  # MNIST-C's multichannel=True on a 2-D image


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "constant"])
def test_filters_match_scipy(mode):
    x = torch.rand(2, 1, 12, 9, dtype=torch.float64)
    ours = filters.gaussian(x, 1.3, mode=mode, truncate=3)
    scipy_mode = {"mirror": "mirror"}.get(mode, mode)
    theirs = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, 1.3, 1.3), mode=scipy_mode, truncate=3)
    assert np.allclose(ours.numpy(), theirs, atol=1e-12)
    rows, cols = torch.rand(2, 7, 5, dtype=torch.float64) * 16 - 2, torch.rand(2, 7, 5, dtype=torch.float64) * 13 - 2
    read = filters.bilinear(x, rows, cols, mode)
    scipy_mode = {"constant": "grid-constant"}.get(mode, mode)
    for k in range(2):
        theirs = ndimage.map_coordinates(x[k, 0].numpy(), [rows[k].numpy(), cols[k].numpy()], order=1, mode=scipy_mode)
        assert np.allclose(read[k, 0].numpy(), theirs, atol=1e-10)


@pytest.mark.parametrize("severity", range(1, 6))
def test_defocus_disk_response_has_the_disk_and_alias_blur_widths(severity):
    radius, alias = CIFAR["defocus_blur"].parameter(severity)
    total, var_r, var_c = _moments(blur.defocus_blur(_impulse().float(), (radius, alias), rng(1)))
    grid = np.arange(-8, 9)
    disk = (grid[None] ** 2 + grid[:, None] ** 2) <= radius**2
    disk_var = float((disk * grid[:, None] ** 2).sum() / disk.sum())
    g1 = math.exp(-1 / (2 * alias**2))
    alias_var = 2 * g1 / (1 + 2 * g1)  # the 3-tap Gaussian's variance
    assert total == pytest.approx(1, abs=1e-5)
    assert var_r == pytest.approx(disk_var + alias_var, rel=1e-4) and var_c == pytest.approx(var_r, rel=1e-6)


@pytest.mark.parametrize("radius,sigma", [(6, 1), (9, 2.5), (10, 3), (20, 15)])
def test_motion_blur_is_a_one_sided_gaussian_along_the_angle(radius, sigma):
    x = _impulse((2, 1, 101, 101)).float()
    out = filters.motion_blur(x, radius, sigma, torch.tensor([0.0, 90.0]))
    taps = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    centre = 50
    assert np.allclose(out[0, 0, centre, centre - taps].numpy(), weights, atol=1e-6)  # 0°: along the row, one side
    assert np.allclose(out[1, 0, centre - taps, centre].numpy(), weights, atol=1e-6)  # 90°: along the column
    assert out.sum(dim=(1, 2, 3)).numpy() == pytest.approx([1, 1], abs=1e-5)


def _scipy_clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top : top + ch, top : top + ch], factor, order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


@pytest.mark.parametrize("factor", [1.0, 1.05, 1.13, 1.25, 1.75, 2.25])
def test_clipped_zoom_matches_scipy_zoom(factor):
    img = np.random.default_rng(0).random((32, 32))
    ours = filters.clipped_zoom(torch.from_numpy(img)[None, None], factor)[0, 0].numpy()
    assert np.allclose(ours, _scipy_clipped_zoom(img, factor), atol=1e-10)


def test_zoom_blur_lists_are_the_references_aranges():
    assert [len(c) for c in CIFAR["zoom_blur"].levels] == [7, 12, 16, 21, 26]
    assert CIFAR["zoom_blur"].levels[4][-1] == pytest.approx(1.25)


def test_glass_blur_moves_pixels_without_changing_them():
    x = (torch.randperm(32 * 32 * 2).reshape(2, 1, 32, 32).float() % 256) / 255
    out = blur.glass_blur(x.expand(2, 3, 32, 32).clone(), (0.05, 1, 1), rng(2))  # σ 0.05: a one-tap blur
    for k in range(2):
        assert torch.equal(out[k].flatten().sort().values, x[k].expand(3, 32, 32).flatten().sort().values)
        assert not torch.equal(out[k, 0], x[k, 0])
        assert torch.equal(out[k, 0], out[k, 2])  # a pixel moves with all its channels


@pytest.mark.parametrize("shift", [0.05, 0.3, 0.5])
def test_brightness_raises_hsv_value_keeping_hue_and_saturation(shift):
    x = torch.rand(3, 3, 4, 4)
    out = digital.brightness(x, shift, rng(3))
    for pixel, after in zip(
        x.permute(0, 2, 3, 1).reshape(-1, 3).tolist(), out.permute(0, 2, 3, 1).reshape(-1, 3).tolist(), strict=False
    ):
        h, s, v = colorsys.rgb_to_hsv(*pixel)
        assert colorsys.hsv_to_rgb(h, s, min(v + shift, 1)) == pytest.approx(tuple(after), abs=1e-5)
    g = torch.rand(2, 1, 5, 5)
    assert torch.allclose(digital.brightness(g, shift, rng(2)), (g + shift).clamp(0, 1))  # MNIST-C's grey round trip


@pytest.mark.parametrize("factor", [0.75, 0.5, 0.15, 0.05])
def test_contrast_scales_deviations_from_each_channels_mean(factor):
    x = 0.3 + 0.4 * torch.rand(2, 3, 8, 8)
    out = digital.contrast(x, factor, rng(2))
    mean = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out - mean, factor * (x - mean), atol=1e-6)


IJG_LUMINANCE = [
    16,
    11,
    10,
    16,
    24,
    40,
    51,
    61,
    12,
    12,
    14,
    19,
    26,
    58,
    60,
    55,
    14,
    13,
    16,
    24,
    40,
    57,
    69,
    56,
    14,
    17,
    22,
    29,
    51,
    87,
    80,
    62,
    18,
    22,
    37,
    56,
    68,
    109,
    103,
    77,
    24,
    35,
    55,
    64,
    81,
    104,
    113,
    92,
    49,
    64,
    78,
    87,
    103,
    121,
    120,
    101,
    72,
    92,
    95,
    98,
    112,
    100,
    103,
    99,
]


@pytest.mark.parametrize("quality", [80, 65, 58, 50, 40, 25, 7])
def test_jpeg_file_holds_the_ijg_tables_at_the_quality(quality):
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    tables = Image.open(io.BytesIO(digital.jpeg_bytes(image, quality))).quantization
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    assert list(tables[0]) == [min(max(int((q * scale + 50) // 100), 1), 255) for q in IJG_LUMINANCE]


def test_jpeg_and_pixelate_change_the_image_as_the_published_settings_say():
    x = torch.rand(2, 3, 32, 32)
    assert (CIFAR["jpeg_compression"].levels, CIFAR["pixelate"].levels) == (
        (80, 65, 58, 50, 40),
        (0.95, 0.9, 0.85, 0.75, 0.65),
    )
    worse = [(digital.jpeg_compression(x, q, rng(2)) - x).abs().mean().item() for q in (80, 40)]
    assert 0 < worse[0] < worse[1]


def test_pixelate_makes_blocks_of_the_reduced_size():
    x = torch.rand(2, 1, 28, 28)
    out = digital.pixelate(x, 0.25, rng(2))  # 28 → 7 → 28: 4 × 4 blocks
    blocks = out.reshape(2, 1, 7, 4, 7, 4)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    means = filters.to_bytes(x).reshape(2, 1, 7, 4, 7, 4).mean(dim=(3, 5)) / 255
    assert torch.allclose(blocks[:, :, :, 0, :, 0], means, atol=1 / 255)


@pytest.mark.parametrize("table,severity", [(CIFAR, 1), (CIFAR, 5), (MNIST, 5)])
def test_fog_adds_a_full_range_plasma_scaled_by_thickness(table, severity):
    thickness, _ = table["fog"].parameter(severity)
    x = grey(3, (1, 28, 28), 0.5)
    out = table["fog"].apply(x, table["fog"].parameter(severity), rng(3))
    plasma = (out * (0.5 + thickness) / 0.5 - x) / thickness
    flat = plasma.flatten(1)
    assert flat.min() >= -1e-5 and flat.max() <= 1 + 1e-5 and (flat.max(1).values - flat.min(1).values).min() > 0.1
    if table is CIFAR:  # the whole 32² map is read: it spans [0, 1]
        assert torch.allclose(flat.min(1).values, torch.zeros(3), atol=1e-5)
        assert torch.allclose(flat.max(1).values, torch.ones(3), atol=1e-5)
    maps = weather.plasma_fractal(rng(3), 32, 2.0)
    assert torch.allclose(maps.amin(dim=(1, 2)), torch.zeros(3)) and torch.allclose(
        maps.amax(dim=(1, 2)), torch.ones(3)
    )


def test_spatter_paints_mud_where_the_mask_is_strong():
    x = torch.ones(4, 1, 28, 28)
    out = weather.spatter(x, MNIST["spatter"].parameter(4), rng(4))
    changed = out < 1
    assert changed.any() and (out[changed] <= 1 - 0.8 * (1 - 63 / 255) + 1e-6).all()


def _scipy_warp(img: np.ndarray, linear: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
    """scikit-image's warp(inverse_map) in SciPy's terms: SciPy's matrix works on (row, col)."""
    centre = np.array([13.5, 13.5])
    rc = linear[::-1, ::-1]
    offset = centre - rc @ centre + np.array(shift)[::-1]
    return np.clip(ndimage.affine_transform(img, rc, offset=offset, order=1, mode="grid-constant"), 0, 1)


@pytest.mark.parametrize("name", ["shear", "rotate", "scale", "translate"])
def test_affine_corruptions_match_scipy_at_the_published_settings(name):
    corruption = MNIST[name]
    c = corruption.parameter(corruption.benchmark[0])
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    out = corruption.apply(x, c, rng(6)).numpy()
    if name == "shear":
        options = [np.array([[1, -math.sin(s)], [0, math.cos(s)]]) for s in (c, -c)]
    elif name == "rotate":
        options = [np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) for a in (c, -c)]
    else:
        options = [np.eye(2) * (c if name == "scale" else 1)]
    shifts = [(dx, dy) for dx in (c, -c) for dy in (c, -c)] if name == "translate" else [(0.0, 0.0)]
    for k in range(6):
        refs = [_scipy_warp(x[k, 0].numpy(), m, s) for m in options for s in shifts]
        assert min(np.abs(out[k, 0] - r).max() for r in refs) < 1e-9


def test_stripe_and_dotted_line():
    x = torch.rand(3, 1, 28, 28)
    out = strokes.stripe(x, None, rng(3))
    assert torch.allclose(out[..., :7], 1 - x[..., :7]) and torch.equal(out[..., 7:21], x[..., 7:21])
    dotted = strokes.dotted_line(torch.zeros(3, 1, 28, 28), None, rng(3))
    blank = [c for start in range(0, 28, 4) for c in (start, start + 1)] + [27]
    assert dotted[..., blank].abs().max() == 0 and dotted.max() > 0.9


def test_zigzag_and_canny_edges():
    z = strokes.zigzag(torch.zeros(4, 1, 28, 28), None, rng(4))
    assert z.max() == 1 and (z > 0).float().mean() < 0.3 and (z[..., :2] == 0).all()
    square = torch.zeros(1, 1, 28, 28)
    square[..., 8:20, 8:20] = 1
    edges = strokes.canny_edges(square, None, rng(1))[0, 0]
    assert edges[8:20, 8:20][2:-2, 2:-2].sum() == 0 and edges[:5].sum() == 0  # nothing inside or far outside
    assert edges[:, 7:9].sum() >= 10 and edges[:, 19:21].sum() >= 10  # the vertical sides are found


@pytest.mark.parametrize("corruption", CIFAR_10_C + MNIST_C, ids=lambda c: f"{c.family}-{c.name}")
def test_every_corruption_is_seeded_per_sample_and_leaves_its_input(corruption):
    colour = corruption in CIFAR_10_C
    x = torch.rand(5, 3 if colour else 1, 32 if colour else 28, 32 if colour else 28)
    kept = x.clone()
    severity = corruption.benchmark[-1]
    whole = corrupt(x, corruption, severity, seed=3)
    assert torch.equal(x, kept) and whole.shape == x.shape and whole.min() >= 0 and whole.max() <= 1
    assert torch.equal(whole, torch.round(whole * 255) / 255)  # stored as bytes, as the references store theirs
    alone = torch.cat(
        [corrupt(x[i : i + 2], corruption, severity, seed=3, index=torch.arange(i, i + 2)) for i in (0, 2)]
        + [corrupt(x[4:], corruption, severity, seed=3, index=torch.tensor([4]))]
    )
    assert torch.equal(whole, alone)
    assert torch.equal(whole, corrupt(x, corruption, severity, seed=3))
    if corruption.name not in (
        "brightness",
        "contrast",
        "zoom_blur",
        "defocus_blur",
        "jpeg_compression",
        "pixelate",
        "stripe",
        "canny_edges",
        "scale",
    ):  # fmt: skip  (the deterministic ones)
        assert not torch.equal(whole, corrupt(x, corruption, severity, seed=4))
