"""Synthetic digits drawn with Pillow, in the spirit of the "Syn Numbers" of Ganin et al. (2016).

Each 32x32 RGB image holds one digit in a random font, size, position, small rotation,
stroke weight and blur, in a random colour over a random two-colour gradient, with a
little noise. Fonts: Pillow's bundled TrueType font plus the DejaVu, STIX and Computer
Modern fonts that matplotlib ships (so the set is the same on every machine with the same
packages); without matplotlib, DejaVu/Liberation fonts found on disk are used instead.
A fixed seed per split makes the set deterministic.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

from tl_core.data import builtin

SIZE = 32
CANVAS = 48
COUNTS = {"train": 5000, "test": 1000}
SEEDS = {"train": 3_000_017, "test": 4_000_037}
FONT_SIZES = (18, 31)  # [low, high) in pixels
MAX_ROTATION = 15.0  # degrees
MAX_SHIFT = 4  # pixels
MIN_CONTRAST = 70.0  # luminance difference between digit and background
MPL_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf",
             "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
             "STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf")
SYSTEM_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
                "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf",
                "LiberationMono-Regular.ttf")
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"),
                    "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts")


def _matplotlib_font_dir() -> str | None:
    spec = importlib.util.find_spec("matplotlib")  # locate without importing (importing is slow)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = os.path.join(list(spec.submodule_search_locations)[0], "mpl-data", "fonts", "ttf")
    return d if os.path.isdir(d) else None


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """TrueType files used besides Pillow's bundled font, in a fixed order."""
    if not features.check("freetype2"):
        return ()
    mpl = _matplotlib_font_dir()
    if mpl:
        return tuple(p for p in (os.path.join(mpl, f) for f in MPL_FONTS) if os.path.isfile(p))
    found: dict[str, str] = {}
    for root_dir in SYSTEM_FONT_DIRS:
        if not os.path.isdir(root_dir):
            continue
        for dirpath, _dirs, files in sorted(os.walk(root_dir)):
            for f in sorted(files):
                if f in SYSTEM_FONTS and f not in found:
                    found[f] = os.path.join(dirpath, f)
    return tuple(found[f] for f in SYSTEM_FONTS if f in found)


@functools.lru_cache(maxsize=512)
def _font(index: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Font ``index`` (0 = Pillow's bundled font, i = font_files()[i-1]) at ``size`` pixels."""
    if index == 0:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(font_files()[index - 1], size=size, layout_engine=ImageFont.Layout.BASIC)


def _glyph_mask(digit: int, font_index: int, size: int, bold: int, angle: float, dx: int, dy: int,
                blur: float) -> np.ndarray:
    """One digit as a float mask (SIZE, SIZE) in 0..1."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    c = CANVAS / 2
    if features.check("freetype2"):
        draw.text((c + dx, c + dy), str(digit), fill=255, font=_font(font_index, size), anchor="mm",
                  stroke_width=bold, stroke_fill=255)
    else:  # bitmap fallback: draw small, then scale up
        small = Image.new("L", (12, 12), 0)
        ImageDraw.Draw(small).text((3, 0), str(digit), fill=255, font=ImageFont.load_default())
        small = small.resize((size, size), Image.Resampling.BILINEAR)
        canvas.paste(small, (int(c - size / 2 + dx), int(c - size / 2 + dy)))
    if angle:
        canvas = canvas.rotate(angle, resample=Image.Resampling.BILINEAR, center=(c, c))
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    off = (CANVAS - SIZE) // 2
    return np.asarray(canvas.crop((off, off, off + SIZE, off + SIZE)), dtype=np.float32) / 255.0


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background colours (n, 3) float with a luminance contrast of at least MIN_CONTRAST."""
    bg = rng.integers(0, 256, (n, 3)).astype(np.float32)
    fg = rng.integers(0, 256, (n, 3)).astype(np.float32)
    for _ in range(20):
        bad = np.abs(_luminance(fg) - _luminance(bg)) < MIN_CONTRAST
        if not bad.any():
            break
        fg[bad] = rng.integers(0, 256, (int(bad.sum()), 3))
    bad = np.abs(_luminance(fg) - _luminance(bg)) < MIN_CONTRAST
    fg[bad] = np.where(_luminance(bg[bad])[:, None] > 127, 0.0, 255.0)
    return fg, bg


def render(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` synthetic digits, about balanced over classes.

    Args:
        n: number of images.
        seed: random seed; the same seed gives the same images.

    Returns:
        (images uint8 (n, 32, 32, 3), labels int64 (n,)).
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    n_fonts = 1 + len(font_files())
    fonts = rng.integers(0, n_fonts, n)
    sizes = rng.integers(FONT_SIZES[0], FONT_SIZES[1], n)
    bold = (rng.random(n) < 0.3).astype(int)
    angles = rng.uniform(-MAX_ROTATION, MAX_ROTATION, n)
    shifts = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2))
    blurs = np.where(rng.random(n) < 0.3, rng.uniform(0.3, 1.0, n), 0.0)
    masks = np.stack([
        _glyph_mask(int(labels[i]), int(fonts[i]), int(sizes[i]), int(bold[i]), float(angles[i]),
                    int(shifts[i, 0]), int(shifts[i, 1]), float(blurs[i]))
        for i in range(n)
    ])[..., None]
    fg, bg = _colours(rng, n)
    bg2 = np.clip(bg + rng.normal(0.0, 40.0, (n, 3)), 0, 255).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1) - 0.5
    t = (xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]) + 0.5
    t = np.clip(t, 0, 1)[..., None]
    background = bg[:, None, None, :] * (1 - t) + bg2[:, None, None, :] * t
    images = background * (1 - masks) + fg[:, None, None, :] * masks
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    noise *= rng.uniform(0, 8, n).astype(np.float32)[:, None, None, None]
    images = np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)
    return images, labels


@functools.lru_cache(maxsize=2)
def syn_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic digits split: train 5,000 / test 1,000 images uint8 (N, 32, 32, 3)."""
    return builtin.readonly(*render(COUNTS[split], SEEDS[split]))  # type: ignore[return-value]
