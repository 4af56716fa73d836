"""The backend registry: each backend is a module named for what runs, with one contract.

* ``reference``: pure torch on any device (the oracle, the fallback, the differentiable path);
* ``native``: CPU tensors in both fixed-point modes, the package's compiled resampler (``_resample.c``) with
  normalisation and layout fused into its last pass; optional (built by pip where a C compiler is found);
* ``pillow``: CPU tensors in ``"pil"`` mode, Pillow's own resampler with normalisation and layout fused in
  NumPy (``cpu_fusion``): the fallback of ``native``;
* ``aten``: CPU tensors in ``"torch-uint8"`` mode, torch's own uint8 antialiased kernel, fused the same way;
* ``triton``: CUDA tensors (or Triton's CPU interpreter), fused Triton kernels.

The contract (``Plan``, ``ImageBatch`` and ``VideoBatch`` from ``qwen_vis_prep.contract``):

* ``can_run(device) -> (ok, why_not)``;
* ``preprocess_into(batch, plan, out)``: every image's patches into its rows of ``out``; may return a record
  the backend can replay for a repeated call (Triton's warm calls), else ``None``;
* ``videos_into(batch, plan, out)``: the same for clips;
* ``resize(images, sizes, config, stacked=None) -> list``: the resize stage alone, uint8 in and out.

Backends import nothing from the front end (``functional``, ``module``). Adding one is one module and one
entry in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch

#: name -> module (imported on first use, so Triton is only imported where it is asked for).
BACKENDS: dict[str, str] = {"reference": "reference", "native": "native", "pillow": "pillow", "aten": "aten",
                            "triton": "triton"}
#: What ``backend=`` accepts: a registered name, ``"auto"``, or ``"torch"`` (the backends without Triton:
#: the CPU backend of the resize mode where it applies, the reference elsewhere).
CHOICES = ("auto", "torch", *BACKENDS)


_LOADED: dict[str, ModuleType] = {}
# the CPU backend of a resize mode when the compiled one cannot run: the library that defines the mode
_CPU_FALLBACK_OF_MODE = {"pil": "pillow", "torch-uint8": "aten"}
_WARNED_NO_NATIVE: list[bool] = []


def get(name: str) -> ModuleType:
    """The backend module registered as ``name`` (imported once)."""
    module = _LOADED.get(name)
    if module is None:
        if name not in BACKENDS:
            raise ValueError(f"backend must be one of {CHOICES}, got {name!r}")
        module = _LOADED[name] = importlib.import_module(f".{BACKENDS[name]}", __name__)
    return module


def _can_run(name: str, device: torch.device) -> tuple[bool, str]:
    try:
        return get(name).can_run(device)
    except ImportError as e:  # pragma: no cover - depends on the install (Triton missing)
        return False, f"the {name} backend cannot be imported ({e})"


def check_choice(backend: object) -> None:
    """``ValueError`` unless ``backend`` is one of :data:`CHOICES`."""
    if backend not in CHOICES:
        raise ValueError(f"backend must be one of {CHOICES}, got {backend!r}")


def _warn_no_native(why: str, fallback: str) -> None:
    """Say once per process that the compiled resampler is missing and what runs instead."""
    if not _WARNED_NO_NATIVE:
        _WARNED_NO_NATIVE.append(True)
        warnings.warn(f"{why}; CPU images and clips run on Pillow / torch's own kernels instead (exact, "
                      f"slower; now: {fallback!r}). Reinstall with a C compiler available to build it "
                      "(pip install --force-reinstall --no-deps qwen_vis_prep)", RuntimeWarning, stacklevel=4)


def select(backend: str, device: torch.device, *, needs_grad: bool = False, resize_mode: str = "pil"
           ) -> ModuleType:
    """The backend a call runs on. ``"auto"``: Triton for CUDA tensors where it can run; for CPU tensors in a
    fixed-point mode the native backend, or where it was not built (warned once) the library that defines
    the mode (Pillow for ``"pil"``, ATen for ``"torch-uint8"``); the reference otherwise. ``"torch"``: the
    same without Triton. Anything that needs gradients runs the reference. A backend asked for by name that
    cannot run raises ``ValueError``."""
    check_choice(backend)
    if backend in ("auto", "torch"):
        if not needs_grad:
            if backend == "auto" and device.type == "cuda" and _can_run("triton", device)[0]:
                return get("triton")
            fallback = _CPU_FALLBACK_OF_MODE.get(resize_mode)
            if device.type == "cpu" and fallback:
                native_ok, why = _can_run("native", device)
                if native_ok:
                    return get("native")
                _warn_no_native(why, fallback)
                if _can_run(fallback, device)[0]:
                    return get(fallback)
        return get("reference")
    ok, why = _can_run(backend, device)
    if not ok:
        raise ValueError(f"backend={backend!r} cannot run here: {why}")
    chosen = get(backend)
    if needs_grad and backend != "reference":
        raise ValueError(f"backend={backend!r} has no backward pass; the input requires grad, use "
                         "backend='reference' (or 'auto') with resize_mode='float'")
    return chosen
