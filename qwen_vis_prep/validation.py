"""Argument checks shared by the configs and the sizing rules: errors name what was expected and what came."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def check_positive_int(name: str, value: Any) -> None:
    """``TypeError`` unless ``value`` is an int (not a bool), ``ValueError`` unless it is positive."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def check_pixel_bounds(min_pixels: Any, max_pixels: Any) -> None:
    """Both positive ints and ``min_pixels <= max_pixels``."""
    check_positive_int("min_pixels", min_pixels)
    check_positive_int("max_pixels", max_pixels)
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels must be <= max_pixels, got min_pixels={min_pixels} > "
                         f"max_pixels={max_pixels}")


def replace_fields(obj: Any, changes: dict[str, Any], what: str) -> Any:
    """``dataclasses.replace`` that names unknown fields (a ``TypeError`` listing the valid ones)."""
    names = [f.name for f in dataclasses.fields(obj)]
    unknown = set(changes) - set(names)
    if unknown:
        raise TypeError(f"unknown {what} field(s) {sorted(unknown)}; expected some of {names}")
    return dataclasses.replace(obj, **changes)


def three_floats(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,) * 3
    try:
        if isinstance(value, (str, bytes)):  # iterable, but "123" is not three numbers
            raise TypeError
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float or a sequence of 3 floats, got {value!r}") from None
    if len(out) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {len(out)}: {out}")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
