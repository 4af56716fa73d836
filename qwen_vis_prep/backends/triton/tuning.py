"""Launch shapes and kernel choices of the Triton backend (plans are keyed by them).

The defaults (:data:`GPU_TUNING`) won ``benchmarks/gpu_sweep.py`` on an H200 (``benchmarks/RESULTS.md``).
``pipeline="rows"`` runs the usual Pillow resize (width first, then height) as a horizontal pass that holds
its taps in registers over ``rows_per_program`` rows, prefetches the source row ``rows_prefetch`` rows ahead
into L2 (CUDA only) and writes a patch-packed scratch, then a fused pass that reads each patch row of that
scratch with one 16-byte load per tap and writes whole patches; its columns per program are capped per
filter by ``rows_tap_loads`` (see ``plans.rows_block_q``). Every other group (no resize, one side only,
vertical first, float arithmetic) takes the tile kernels, whose shapes are the ``pass_*`` / ``patch_*``
entries. ``"tap-major"`` filter tables make one tap of neighbouring outputs contiguous.

``QWEN_VIS_PREP_TRITON_TUNING`` (a JSON object of entries, read at import) overrides the defaults, for
sweeps and experts.
"""

from __future__ import annotations

import json
import os

GPU_TUNING = {"pass_block_r": 1, "pass_block_q": 256, "pass_warps": 2, "pass_taps": "tap-major",
              "patch_block": 1, "patch_warps": 2, "patch_taps": "out-major", "pipeline": "rows",
              "rows_per_program": 16, "rows_block_q": 256, "rows_warps": 4, "rows_prefetch": 4,
              "rows_tap_loads": 16, "rows_patch_block": 1, "rows_patch_warps": 1}
TUNING = dict(GPU_TUNING)
_TAP_LAYOUTS = ("out-major", "tap-major")
_CHOICES = {"pass_taps": _TAP_LAYOUTS, "patch_taps": _TAP_LAYOUTS, "pipeline": ("tiles", "rows"),
            "rows_prefetch": (0, 1, 2, 4, 8, 16), "rows_tap_loads": (0, 8, 16, 32)}
# Kernel variants that were exact but no faster on the H200, and were removed (CHANGELOG, RESULTS.md).
REMOVED = ("pass_loads", "patch_norm", "ragged", "rows_unroll", "rows_prefetch_to")
# Triton's CPU interpreter pays per program, so it runs bigger tiles; the results do not depend on the
# launch shape (the tests check the GPU defaults and others in the interpreter too).
_INTERPRETER_TUNING = {"pass_block_r": 8, "pass_block_q": 128, "pass_warps": 4, "patch_block": 16,
                       "patch_warps": 4, "rows_per_program": 16, "rows_block_q": 256, "rows_tap_loads": 0,
                       "rows_patch_block": 8}
TUNING_ENV = "QWEN_VIS_PREP_TRITON_TUNING"


def apply_tuning_override() -> None:
    """Update :data:`TUNING` from :data:`TUNING_ENV`; ``ValueError`` naming the bad key or value."""
    raw = os.environ.get(TUNING_ENV)
    if not raw:
        return
    try:
        values = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"{TUNING_ENV} must be a JSON object, got {raw!r} ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{TUNING_ENV} must be a JSON object, got {raw!r}")
    removed = sorted(set(values) & set(REMOVED))
    if removed:
        raise ValueError(f"{TUNING_ENV}: {removed} were removed (slower or no faster on the H200); expected "
                         f"keys {sorted(TUNING)}")
    if set(values) - set(TUNING):
        raise ValueError(f"{TUNING_ENV} takes keys {sorted(TUNING)}, got {raw!r}")
    for key, value in values.items():
        if key in _CHOICES:
            if isinstance(value, bool) or value not in _CHOICES[key]:
                raise ValueError(f"{TUNING_ENV}: {key} must be one of {_CHOICES[key]}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
            raise ValueError(f"{TUNING_ENV}: {key} must be a positive power of two, got {value!r}")
    TUNING.update(values)


def tuning_key() -> tuple:
    """The current tuning as a hashable key (part of every plan key)."""
    return tuple(TUNING.values())


if os.environ.get("TRITON_INTERPRET", "0") == "1":
    TUNING.update(_INTERPRETER_TUNING)
apply_tuning_override()
