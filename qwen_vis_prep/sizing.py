"""Output-size planning: pure integer logic on host ints (no tensors, no device)."""

from __future__ import annotations

import functools
import math

from .config import check_positive_int

MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Target ``(h, w)`` of Qwen-VL's resize, as transformers 5.x computes it.

    Both sides become multiples of ``factor``, ``h * w`` lands in ``[min_pixels, max_pixels]`` and the aspect
    ratio is kept as closely as possible. Sides smaller than ``factor`` are allowed (they round up through
    the ``min_pixels`` branch); an aspect ratio above 200 raises ``ValueError``.
    """
    for name, v in (("height", height), ("width", width), ("factor", factor)):
        check_positive_int(name, v)
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, got {ratio} "
                         f"for an image of height {height} and width {width}")
    return fit_pixel_budget(height, width, factor, min_pixels, max_pixels)


def fit_pixel_budget(height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                     frames: int = 1, rounded_frames: int = 1) -> tuple[int, int]:
    """The rounding core of transformers' ``smart_resize`` (images: one frame) and of Qwen3-VL's video
    sizing (``frames`` real frames, ``rounded_frames`` after rounding to the temporal factor): sides to
    multiples of ``factor``, then scaled so ``rounded_frames * h * w`` lands in ``[min_pixels, max_pixels]``.
    Same float expressions as transformers, so the truncations agree."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if rounded_frames * h_bar * w_bar > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif rounded_frames * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# Sizing runs on every call; the same few image sizes come back again and again. Keyed on plain ints only
# (target_size converts), so a bool can never hit an int's entry and skip smart_resize's checks.
_smart_resize_cached = functools.lru_cache(maxsize=4096)(smart_resize)


def target_size(height: int, width: int, config) -> tuple[int, int]:
    """The resized ``(h, w)`` of one image under ``config`` (``smart_resize``, or the input size when
    ``do_resize`` is off, which must then already be a multiple of ``patch_size * merge_size``)."""
    if config.do_resize:
        return _smart_resize_cached(int(height), int(width), config.factor, config.min_pixels, config.max_pixels)
    if height % config.factor or width % config.factor:
        raise ValueError(f"with do_resize=False both sides must be multiples of patch_size*merge_size="
                         f"{config.factor}, got height={height}, width={width}")
    return height, width


def grid_hw(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """Patch grid ``(grid_h, grid_w)`` of a resized image."""
    return height // patch_size, width // patch_size


def pillow_vertical_first(in_h: int, in_w: int, out_h: int, out_w: int, order: str) -> bool:
    """Whether Pillow's separable BICUBIC resize runs its vertical pass before the horizontal one.

    Pillow <= 12 always resizes horizontally first. Pillow 13 (PR python-pillow/Pillow#9549) goes vertical
    first when the width changes and the height shrinks by more than twice as many pixels as the width:
    ``in_h - out_h > 0 and in_h - out_h > 2 * (in_w - out_w)`` (integer, strict; read off the compiled
    13.0.0 library and checked against it on thousands of sizes). ``order`` is ``"pillow12"``,
    ``"pillow13"`` or ``"installed"``.
    """
    if order == "installed":
        order = installed_pillow_order()
    if order == "pillow12" or out_w == in_w or out_h == in_h:
        return False
    dy, dx = in_h - out_h, in_w - out_w
    return dy > 0 and dy > 2 * dx


def separable_passes(in_h: int, in_w: int, out_h: int, out_w: int, vertical_first: bool
                     ) -> list[tuple[bool, int]]:
    """The passes of a separable resize, in order, as ``(vertical, new_size)``; a side that keeps its size
    gets no pass (as in Pillow). Every backend walks this one list."""
    order = [(True, out_h), (False, out_w)] if vertical_first else [(False, out_w), (True, out_h)]
    return [(vertical, n) for vertical, n in order if (in_h if vertical else in_w) != n]


def installed_pillow_order() -> str:
    """``"pillow13"`` when the installed Pillow is 13 or newer, else ``"pillow12"``."""
    import PIL

    major = int(PIL.__version__.split(".")[0])
    return "pillow13" if major >= 13 else "pillow12"
