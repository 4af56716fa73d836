"""Launching one prepared Triton kernel with every argument by name, as cheaply as Triton allows."""

from __future__ import annotations

import os
import warnings

import torch

FAST_LAUNCH_ENV = "QWEN_VIS_PREP_FAST_LAUNCH"   # "0" turns off the direct launch of compiled kernels
# The direct launch calls CompiledKernel.run with the arguments CompiledKernel.__getitem__'s runner gives it;
# written against Triton 3.6 (run on an H200) and read against 3.8's compiler.py, which passes the same.
FAST_LAUNCH_TRITON = ((3, 6), (3, 8))


def _fast_launch_supported() -> bool:
    import triton

    try:
        version = tuple(int(v) for v in triton.__version__.split(".")[:2])
    except ValueError:  # pragma: no cover - unusual version strings
        return False
    return FAST_LAUNCH_TRITON[0] <= version <= FAST_LAUNCH_TRITON[1]


class Launcher:
    """One kernel with a fixed grid, fixed constexprs and fixed arguments, all by name.

    ``Launcher(kernel, grid, inputs=("src_ptr", "dst_ptr"), args={...}, constexprs={...}, num_warps=4)``:
    ``inputs`` are the arguments a call passes (``launch(src_ptr=x, dst_ptr=y)``), ``args`` the rest (the
    plan's tables and sizes). Every runtime parameter of the kernel must be named exactly once (checked
    here, so a plan that misses or misnames one fails when it is built, naming it).

    The first launch goes through ``kernel[grid](...)``, which specialises, compiles if needed and returns
    the compiled kernel. Later launches skip Triton's per-call binding and cache lookup: on CUDA with no
    launch hook registered (a profiler registers one) and a Triton in :data:`FAST_LAUNCH_TRITON`, the
    compiled kernel's own launcher is called with the current stream and the fixed tensors as their device
    addresses, taken once; otherwise ``compiled[grid]``. Setting ``Launcher.enabled = False`` sends every
    later launch the regular way at once. This is only valid while every specialisation input
    stays the same: the caller keys its plan on all integer arguments and on the 16-byte alignment of every
    pointer it passes, and the plan keeps the fixed tensors alive. If a direct launch fails, the process
    warns once and launches the regular way from then on.
    """

    __slots__ = ("kernel", "grid", "inputs", "fixed", "constexprs", "num_warps", "tail", "runner", "lean")
    enabled = os.environ.get(FAST_LAUNCH_ENV, "1") != "0"
    _warned = False

    def __init__(self, kernel, grid: tuple[int, int, int], *, inputs: tuple[str, ...], args: dict,
                 constexprs: dict, num_warps: int) -> None:
        names = list(kernel.arg_names)
        runtime = [n for n in names if n not in constexprs]
        given = [*inputs, *args]
        missing = [n for n in runtime if n not in given]
        unknown = [n for n in given if n not in runtime]
        if missing or unknown or len(set(given)) != len(given):
            raise TypeError(f"{kernel.__name__}: arguments must name each of {runtime} once; missing {missing}, "
                            f"unknown {unknown}")
        if list(inputs) != runtime[:len(inputs)]:
            raise TypeError(f"{kernel.__name__}: the per-call inputs must be its leading parameters "
                            f"{runtime[:len(inputs)]}, got {list(inputs)}")
        self.kernel, self.grid, self.inputs = kernel, grid, tuple(inputs)
        self.fixed = tuple(args[n] for n in runtime[len(inputs):])
        self.constexprs, self.num_warps = dict(constexprs), num_warps
        self.tail = tuple(constexprs[n] for n in names if n in constexprs)
        self.runner = self.lean = None

    def __call__(self, **inputs: torch.Tensor) -> None:
        head = [inputs[n] for n in self.inputs]
        lean = self.lean if Launcher.enabled else None
        if lean is not None and _hooks_idle(lean[5]):
            run, function, packed, stream_of, device, _, fixed = lean
            try:
                run(*self.grid, stream_of(device), function, packed, None, None, None, *head, *fixed, *self.tail)
                return
            except Exception as e:  # pragma: no cover - depends on the Triton version
                self._fall_back(e)
        if self.runner is not None and Launcher.enabled:
            try:
                self.runner(*head, *self.fixed, *self.tail)
                return
            except Exception as e:  # pragma: no cover - depends on the Triton version
                self._fall_back(e)
        result = self.kernel[self.grid](*head, *self.fixed, **self.constexprs, num_warps=self.num_warps)
        if Launcher.enabled and hasattr(result, "run") and hasattr(result, "__getitem__"):
            try:
                self.runner = result[self.grid]
                self.lean = _lean_launch(result, self.fixed)
            except Exception as e:  # pragma: no cover - depends on the Triton version
                self._fall_back(e)

    def _fall_back(self, error: Exception) -> None:
        """Turn the direct launches off for the process (warning once) and forget this plan's."""
        Launcher.enabled = False
        self.lean = self.runner = None
        if not Launcher._warned:
            Launcher._warned = True
            warnings.warn(f"qwen_vis_prep: the direct Triton launch failed ({type(error).__name__}: {error}); "
                          f"launching through Triton's regular path from now on (same results, more host "
                          f"time per call)", RuntimeWarning, stacklevel=3)


def _hooks_idle(runtime) -> bool:
    """Whether Triton has no launch hook registered (``triton.knobs.runtime``: empty hook chains or None)."""
    for hook in (runtime.launch_enter_hook, runtime.launch_exit_hook):
        if hook is not None and getattr(hook, "calls", True):
            return False
    return True


def _lean_launch(compiled, fixed: tuple) -> tuple | None:
    """What the direct launch of ``compiled`` needs (see :class:`Launcher`), or None where it cannot be had:
    no CUDA, a Triton outside :data:`FAST_LAUNCH_TRITON`, or one without ``knobs``, the launcher's handles or
    torch's raw-stream query."""
    import triton

    runtime = getattr(getattr(triton, "knobs", None), "runtime", None)
    stream_of = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    function, packed = getattr(compiled, "function", None), getattr(compiled, "packed_metadata", None)
    if (runtime is None or stream_of is None or function is None or packed is None or not _fast_launch_supported()
            or not hasattr(runtime, "launch_exit_hook") or not torch.cuda.is_available()):
        return None
    addresses = tuple(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in fixed)
    return compiled.run, function, packed, stream_of, torch.cuda.current_device(), runtime, addresses
