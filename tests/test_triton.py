"""Triton kernels vs the pure-torch reference backend.

On a machine without CUDA these run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by
conftest.py), so the kernels' exact arithmetic is checked on every CI run; on a GPU they run on CUDA.
pil mode must be bit-exact (``torch.equal``); float mode is also bit-exact by construction (float64 sums
of exact float32 products in the same tap order, see kernels.py), and tested so.
"""

from __future__ import annotations

import os

import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep.backends.triton import ops as triton_ops

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(not triton_ops.can_run(DEVICE)[0],
                                reason=f"Triton cannot run here: {triton_ops.can_run(DEVICE)[1]}")

SMALL = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 24)


def _cfg(**kw) -> qvp.VisionPreprocessConfig:
    return qvp.VisionPreprocessConfig.from_preset(kw.pop("preset", "qwen2-vl"), **{**SMALL, **kw})


def _both(x, cfg, **kw):
    a = qvp.preprocess(x, cfg, backend="triton", **kw)
    b = qvp.preprocess(x, cfg, backend="torch", **kw)
    assert torch.equal(a.grid_thw, b.grid_thw)
    return a.pixel_values, b.pixel_values


def _img(h, w, dtype=torch.uint8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    return x.to(DEVICE) if dtype == torch.uint8 else x.to(dtype).to(DEVICE)


SIZES = [
    pytest.param((60, 90), id="60x90-up"),
    pytest.param((120, 40), id="120x40-mixed"),
    pytest.param((57, 171), id="57x171-odd"),
    pytest.param((201, 31), id="201x31-tall"),
    pytest.param((56, 112), id="56x112-identity"),
    pytest.param((56, 97), id="56x97-width-only"),
    pytest.param((250, 60), id="250x60-taller"),
    pytest.param((150, 58), id="150x58-vertical-first-in-pillow13"),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("order", ["pillow12", "pillow13"])
def test_pil_mode_bit_exact(size, order):
    a, b = _both(_img(*size), _cfg(pillow_order=order))
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("mode", ["pil", "float"])
def test_output_dtypes_bit_exact(dtype, mode):
    a, b = _both(_img(75, 130, seed=1), _cfg(output_dtype=dtype, resize_mode=mode))
    assert a.dtype == dtype
    assert torch.equal(a, b)


@pytest.mark.parametrize("size", SIZES[:5])
def test_float_mode_uint8_bit_exact(size):
    a, b = _both(_img(*size, seed=2), _cfg(resize_mode="float"))
    assert torch.equal(a, b)


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("mode", ["pil", "float"])
def test_float_inputs(in_dtype, mode):
    x = _img(70, 100, dtype=in_dtype, seed=3)
    a, b = _both(x, _cfg(resize_mode=mode))
    assert torch.equal(a, b)
    # no resize needed: float values are normalised as they are
    y = _img(56, 84, dtype=in_dtype, seed=4) * 0.5 + 0.25
    a, b = _both(y, _cfg(resize_mode=mode))
    assert torch.equal(a, b)


def test_unit_range_float_input():
    x = _img(64, 90, dtype=torch.float32, seed=5) / 255.0
    for mode in ("pil", "float"):
        a, b = _both(x, _cfg(resize_mode=mode, input_range="0-1"))
        assert torch.equal(a, b)


def test_layouts_without_copy_semantics():
    chw = _img(66, 99, seed=6)
    hwc = chw.permute(1, 2, 0).contiguous()
    cl = chw[None].contiguous(memory_format=torch.channels_last)
    cfg = _cfg()
    ref = qvp.preprocess(chw, cfg, backend="torch").pixel_values
    assert torch.equal(qvp.preprocess(hwc, cfg, backend="triton", layout="hwc").pixel_values, ref)
    assert torch.equal(qvp.preprocess(cl, cfg, backend="triton").pixel_values, ref)
    assert torch.equal(qvp.preprocess(chw[None], cfg, backend="triton").pixel_values, ref)
    # a non-contiguous crop
    big = _img(80, 120, seed=7)
    crop = big[:, 5:71, 7:106]
    a, b = _both(crop, cfg)
    assert torch.equal(a, b)


def test_ragged_list_and_batch():
    imgs = [_img(60, 90, seed=8), _img(45, 130, seed=9), _img(60, 90, seed=10), _img(56, 56, seed=11)]
    cfg = _cfg()
    a, b = _both(imgs, cfg)
    assert torch.equal(a, b)
    one_by_one = torch.cat([qvp.preprocess(i, cfg, backend="triton").pixel_values for i in imgs])
    assert torch.equal(a, one_by_one)
    batch = torch.stack([imgs[0], imgs[2]])
    a, b = _both(batch, cfg)
    assert torch.equal(a, b)


def test_gray_and_rgba():
    g = torch.Generator().manual_seed(12)
    gray = torch.randint(0, 256, (1, 50, 70), generator=g, dtype=torch.uint8).to(DEVICE)
    rgba = torch.randint(0, 256, (4, 50, 70), generator=g, dtype=torch.uint8).to(DEVICE)
    for x in (gray, rgba):
        a, b = _both(x, _cfg())
        assert torch.equal(a, b)


@pytest.mark.parametrize("preset", ["qwen2.5-vl", "qwen3-vl"])
def test_presets_and_compact(preset):
    kw = dict(min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 20) if preset == "qwen3-vl" else {}
    x = _img(90, 70, seed=13)
    for compact in (False, True):
        a, b = _both(x, _cfg(preset=preset, compact_images=compact, **kw))
        assert torch.equal(a, b)


def test_normalisation_switches():
    x = _img(56, 84, seed=14)
    for kw in (dict(do_normalize=False), dict(do_rescale=False), dict(do_rescale=False, do_normalize=False)):
        a, b = _both(x, _cfg(**kw))
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["pil", "float"])
def test_resize_stage(mode):
    x = _img(40, 61, seed=15)
    for size in [(17, 90), (80, 30), (40, 61), (3, 450)]:
        a = qvp.resize(x, size, mode=mode, backend="triton")
        b = qvp.resize(x, size, mode=mode, backend="torch")
        assert a.shape == (3, *size) and torch.equal(a, b)


def test_input_not_modified_and_not_aliased():
    x = _img(60, 90, seed=16)
    before, version = x.clone(), x._version
    out = qvp.preprocess(x, _cfg(), backend="triton").pixel_values
    assert x._version == version and torch.equal(x, before)
    assert out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def test_triton_rejects_what_it_cannot_run():
    x = _img(56, 56, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64"):
        qvp.preprocess(x, _cfg(resize_mode="float"), backend="triton")
    if DEVICE.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return
    with pytest.raises(ValueError, match="cannot run"):
        qvp.preprocess(torch.zeros(3, 56, 56, dtype=torch.uint8), _cfg(), backend="triton")


def test_requires_grad_is_refused():
    x = _img(56, 56, dtype=torch.float32).requires_grad_()
    with pytest.raises(ValueError, match="backward"):
        qvp.preprocess(x, _cfg(resize_mode="float"), backend="triton")


# ------------------------------------------------------------------------------------ launch plans
def test_same_shape_different_alignment():
    """Regression guard for the launch plans: Triton specialises on 16-byte pointer alignment, so a view
    with the same shape and strides at an odd address must get its own plan (and the same pixels)."""
    cfg = _cfg()
    flat = torch.randint(0, 256, (3 * 61 * 95 + 1,), generator=torch.Generator().manual_seed(17),
                         dtype=torch.uint8).to(DEVICE)
    aligned = flat[:-1].view(3, 61, 95)
    odd = flat[1:].view(3, 61, 95)
    assert aligned.data_ptr() % 16 == 0 and odd.data_ptr() % 16 == 1
    for x in (aligned, odd, aligned, odd):  # twice each: the second call runs from the cached plan
        a, b = _both(x, cfg)
        assert torch.equal(a, b)


@pytest.mark.parametrize("tuning", [
    pytest.param({}, id="current"),
    pytest.param(triton_ops.GPU_TUNING, id="gpu-defaults"),
    pytest.param(dict(pass_block_r=8, pass_block_q=64, patch_block=4, patch_warps=4, patch_norm="table"),
                 id="table-norm"),
    pytest.param(dict(pass_block_r=32, pass_block_q=32, pass_warps=8, patch_block=8, patch_warps=8),
                 id="large-blocks"),
    pytest.param(dict(pass_taps="tap-major", patch_taps="tap-major"), id="tap-major-tables"),
    pytest.param(dict(triton_ops.GPU_TUNING, pass_taps="tap-major", patch_taps="tap-major"),
                 id="gpu-defaults-tap-major"),
    pytest.param(dict(triton_ops.GPU_TUNING, ragged="descriptors"), id="gpu-defaults-ragged-descriptors"),
    pytest.param(dict(pass_loads="words", pass_taps="tap-major"), id="word-loads-tap-major"),
    pytest.param(dict(pass_taps="tap-major", patch_taps="tap-major", patch_norm="table", ragged="descriptors"),
                 id="ragged-descriptors-tap-major-table"),
    pytest.param(dict(triton_ops.GPU_TUNING, pipeline="tiles"), id="gpu-defaults-tile-pipeline"),
    pytest.param(dict(triton_ops.GPU_TUNING, pass_taps="out-major", patch_norm="arith"),
                 id="gpu-defaults-out-major-arith"),
    pytest.param(dict(triton_ops.GPU_TUNING, rows_unroll=4, rows_per_program=8), id="gpu-defaults-rows-unroll"),
    pytest.param(dict(triton_ops.GPU_TUNING, rows_prefetch=8), id="gpu-defaults-rows-prefetch"),  # CUDA only
    pytest.param(dict(triton_ops.GPU_TUNING, rows_unroll=2, rows_prefetch=4), id="gpu-defaults-rows-unroll-prefetch"),
    pytest.param(dict(triton_ops.GPU_TUNING, rows_prefetch=4, rows_prefetch_to="L1"),
                 id="gpu-defaults-rows-prefetch-l1"),
    pytest.param(dict(triton_ops.GPU_TUNING, rows_tap_loads=8, rows_warps=1, rows_block_q=128),
                 id="gpu-defaults-rows-column-cap"),  # 4 outputs per thread, fewer as the taps grow
    pytest.param(dict(triton_ops.GPU_TUNING, rows_tap_loads=8, rows_warps=1, rows_block_q=128, ragged="descriptors"),
                 id="gpu-defaults-rows-column-cap-descriptors"),
    pytest.param(dict(pipeline="rows", rows_per_program=2, rows_block_q=32, rows_patch_block=1, rows_warps=4,
                      rows_unroll=4, rows_patch_warps=2, pass_taps="tap-major", patch_taps="tap-major",
                      patch_norm="table"),
                 id="rows-pipeline-small-tiles-tap-major-table"),
])
def test_launch_shapes_do_not_change_results(monkeypatch, tuning):
    """Every launch shape the GPU sweep may pick gives the same bits (edge tiles are clamped and masked)."""
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, **tuning})
    imgs = [_img(57, 121, seed=18), _img(131, 31, seed=19), _img(56, 84, seed=20)]
    for cfg in (_cfg(pillow_order="pillow12"), _cfg(pillow_order="pillow13"),
                _cfg(resize_mode="float", output_dtype=torch.bfloat16)):
        a, b = _both(imgs, cfg)
        assert torch.equal(a, b)
    a, b = _both(_img(70, 100, dtype=torch.float16, seed=21), _cfg(resize_mode="float"))
    assert torch.equal(a, b)


def test_rows_pass_columns_follow_the_tap_loads_cap(monkeypatch):
    """``_rows_block_q``: ``rows_block_q`` halved while columns / (32 * warps) outputs of ``taps`` loads each
    exceed ``rows_tap_loads``, never below one output per thread; a cap of 0 keeps ``rows_block_q``."""
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "rows_block_q": 256, "rows_warps": 4,
                                               "rows_tap_loads": 16})
    assert [triton_ops._rows_block_q(t) for t in (1, 7, 8, 9, 13, 16, 17, 48)] == \
        [256, 256, 256, 128, 128, 128, 128, 128]
    triton_ops.TUNING.update(rows_tap_loads=8)
    assert [triton_ops._rows_block_q(t) for t in (4, 5, 8, 9)] == [256, 128, 128, 128]
    triton_ops.TUNING.update(rows_tap_loads=0)
    assert triton_ops._rows_block_q(48) == 256
    triton_ops.TUNING.update(rows_tap_loads=16, rows_block_q=1024, rows_warps=2)
    assert [triton_ops._rows_block_q(t) for t in (1, 2, 3, 4, 5, 7, 13)] == [1024, 512, 256, 256, 128, 128, 64]


def test_batches_beyond_the_grid_limit_are_split(monkeypatch):
    """Images ride on grid dim 2 (at most 65535); larger groups go in slices (limit shrunk here to 2)."""
    monkeypatch.setattr(triton_ops, "_MAX_GRID_YZ", 2)
    batch = torch.stack([_img(60, 90, seed=21 + i) for i in range(5)])
    ragged = [_img(60, 90, seed=30 + i) for i in range(3)] + [_img(40, 50, seed=40)]
    for x in (batch, ragged):
        a, b = _both(x, _cfg())
        assert torch.equal(a, b)


@pytest.mark.parametrize("raw, match", [
    ("not json", "JSON object"),
    ('{"patch_block": 1000}', "power of two"),
    ('{"patch_block": true}', "power of two"),
    ('{"block": 64}', "takes keys"),
    ('{"patch_norm": "lut"}', "one of"),
    ('{"pass_taps": "rows"}', "one of"),
    ('{"ragged": "one"}', "one of"),
    ('[1, 2]', "takes keys"),
    ('{"rows_prefetch": 3}', "one of"),
    ('{"rows_prefetch": true}', "one of"),
    ('{"rows_prefetch_to": "L3"}', "one of"),
    ('{"rows_tap_loads": 12}', "one of"),
    ('{"pipeline": "fused"}', "one of"),
    ('{"pipeline": "single"}', "one of"),  # removed in session 10
    ('{"single_ctas": 4}', "takes keys"),
])
def test_tuning_override_is_validated(monkeypatch, raw, match):
    monkeypatch.setenv(triton_ops.TUNING_ENV, raw)
    monkeypatch.setattr(triton_ops, "TUNING", dict(triton_ops.TUNING))
    with pytest.raises(ValueError, match=match):
        triton_ops._apply_tuning_override()


def test_tuning_override_applies(monkeypatch):
    monkeypatch.setenv(triton_ops.TUNING_ENV, '{"patch_block": 512, "pass_warps": 2}')
    monkeypatch.setattr(triton_ops, "TUNING", dict(triton_ops.TUNING))
    triton_ops._apply_tuning_override()
    assert triton_ops.TUNING["patch_block"] == 512 and triton_ops.TUNING["pass_warps"] == 2


def test_same_shape_lists_are_read_in_place():
    """Same-shape images of a list that lie at one step in one buffer (``list(batch.unbind(0))``) are read
    through a strided view, not stacked into a copy; anything else is stacked. Same bits either way."""
    g = torch.Generator().manual_seed(46)
    batch = torch.randint(0, 256, (4, 3, 61, 95), generator=g, dtype=torch.uint8).to(DEVICE)
    views = list(batch.unbind(0))
    for members, expected in ((views, batch), (views[::2], batch[::2]), ([views[1]] * 3, batch[[1, 1, 1]])):
        src = triton_ops._group_source(members)
        assert src.data_ptr() == members[0].data_ptr() and torch.equal(src, expected)
    separate = [v.clone() for v in views]
    crops = [batch[i, :, :60, :90] for i in range(4)]
    for members in (views[::-1], separate, [views[0], separate[1]], crops[:1] + [c.contiguous() for c in crops[1:]]):
        src = triton_ops._group_source(members)
        assert torch.equal(src, torch.stack(members))
        assert all(src.data_ptr() != m.data_ptr() for m in members)
    other = _img(40, 50, seed=47)
    for images in (views, views[::-1], [views[0], other, views[2], views[3]], separate, crops):
        a, b = _both(images, _cfg())
        assert torch.equal(a, b)
    assert torch.equal(qvp.preprocess(views, _cfg(), backend="triton").pixel_values,
                       qvp.preprocess(batch, _cfg(), backend="triton").pixel_values)


class _FakeCompiled:
    """Stands in for Triton's compiled kernel: ``compiled[grid]`` gives a launcher that records its calls, and
    ``run`` (its own launcher, which the lean path calls) records its calls too."""

    function, packed_metadata = 0xF00, (4, 1, 0)

    def __init__(self, log, fail=False):
        self.log, self.fail = log, fail

    def run(self, *args):
        if self.fail:
            raise RuntimeError("launcher signature changed")
        self.log.append(("lean", args))

    def __getitem__(self, grid):
        def runner(*args):
            if self.fail:
                raise RuntimeError("launcher signature changed")
            self.log.append(("direct", grid, args))
        return runner


class _FakeKernel:
    """Stands in for a ``@triton.jit`` function with two constexpr parameters."""

    arg_names = ["x_ptr", "n", "t_ptr", "A", "B"]

    def __init__(self, fail=False):
        self.log, self.fail = [], fail

    def __getitem__(self, grid):
        def launch(*args, **meta):
            self.log.append(("regular", grid, args, meta))
            return _FakeCompiled(self.log, self.fail)
        return launch


@pytest.mark.parametrize("fail", [False, True])
@pytest.mark.parametrize("cuda", [False, True])
def test_launcher_reuses_the_compiled_launcher(monkeypatch, fail, cuda):
    """The first launch binds through ``kernel[grid](...)``. Without CUDA, later ones call the kept
    ``compiled[grid]`` with the static arguments and the constexprs appended in signature order. With CUDA
    (faked here) they call the compiled kernel's own launcher: grid, the device's current stream, function,
    packed metadata, no launch metadata or hooks, the static tensors as addresses; with a launch hook
    registered (a profiler), ``compiled[grid]`` again. If a direct call fails, it launches the regular way
    and turns the direct paths off for the process."""
    import triton

    monkeypatch.setattr(triton_ops._Launcher, "enabled", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 1000 + device, raising=False)
    table = torch.arange(4)
    kernel = _FakeKernel(fail)
    launch = triton_ops._Launcher(kernel, (3, 1, 2), dict(A=7, B=True, num_warps=4), (table,))
    launch("x", 5)
    launch("y", 6)
    regular = ("regular", (3, 1, 2), ("x", 5, table), dict(A=7, B=True, num_warps=4))
    if fail:
        assert kernel.log == [regular, ("regular", (3, 1, 2), ("y", 6, table), dict(A=7, B=True, num_warps=4))]
        assert triton_ops._Launcher.enabled is False
        return
    if not cuda:
        assert kernel.log == [regular, ("direct", (3, 1, 2), ("y", 6, table, 7, True))]
        return
    lean = ("lean", (3, 1, 2, 1003, 0xF00, (4, 1, 0), None, None, None, "y", 6, table.data_ptr(), 7, True))
    assert kernel.log == [regular, lean]
    hook = lambda metadata: None  # noqa: E731
    triton.knobs.runtime.launch_enter_hook.add(hook)
    try:
        launch("z", 8)
    finally:
        triton.knobs.runtime.launch_enter_hook.remove(hook)
    launch("w", 9)
    assert kernel.log[2:] == [("direct", (3, 1, 2), ("z", 8, table, 7, True)), (*lean[:1], (*lean[1][:9], "w", 9,
                                                                                              *lean[1][11:]))]


def test_rows_prefetch_only_on_cuda(monkeypatch):
    """The rows pass's L2 prefetch is PTX, which the interpreter cannot run: plans for other devices compile
    without it whatever the tuning says (a prefetch changes no value, so results are the same either way)."""
    shape = (1, 3, 60, 90)
    strides = (3 * 60 * 90, 60 * 90, 90, 1)
    for level in ("L2", "L1"):
        monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "rows_prefetch": 8, "rows_prefetch_to": level})
        assert triton_ops._RowsPass(shape, strides, 56, 14, torch.device("cpu")).launch.meta["PREFETCH"] == 0
        if torch.cuda.is_available():
            meta = triton_ops._RowsPass(shape, strides, 56, 14, torch.device("cuda")).launch.meta
            assert (meta["PREFETCH"], meta["PREFETCH_LEVEL"]) == (8, int(level[1]))


@pytest.mark.parametrize("tap_layout", ["out-major", "tap-major"])
def test_long_filters_use_padded_tap_counts(monkeypatch, tap_layout):
    """Downscales beyond 3.75x compile for a tap count rounded up to a multiple of 16 (zero-weight taps added
    to the tables); the result must not change. 400 -> 23 is 17.4x: 71 taps, run as 80."""
    from qwen_vis_prep.resample_tables import padded_taps, pil_taps

    monkeypatch.setattr(triton_ops, "TUNING",
                        {**triton_ops.TUNING, "pass_taps": tap_layout, "patch_taps": tap_layout})
    assert pil_taps(400, 23)[0].shape[1] == 71 and padded_taps(71) == 80 and padded_taps(13) == 13
    x = _img(400, 90, seed=22)
    for mode in ("pil", "float"):
        a = qvp.resize(x, (23, 90), mode=mode, backend="triton")
        b = qvp.resize(x, (23, 90), mode=mode, backend="torch")
        assert torch.equal(a, b)
        a, b = _both(x, _cfg(resize_mode=mode, min_pixels=28 * 28, max_pixels=28 * 28 * 2))
        assert torch.equal(a, b)


class _CountingKernel:
    """Stands in for a Triton kernel: counts ``kernel[grid](...)`` launches and runs the real one."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


def count_launches(monkeypatch) -> dict[str, list]:
    """Every Triton kernel of ``kernels`` replaced by a :class:`_CountingKernel` for the test; returns the
    grid list of each, by kernel name."""
    from qwen_vis_prep.backends.triton import kernels

    counters = {}
    for name in ("_rows_pass_kernel", "_patch_rows_kernel", "_resample_pass_kernel",
                 "_patchify_kernel"):
        counters[name] = _CountingKernel(getattr(kernels, name))
        monkeypatch.setattr(kernels, name, counters[name])
    return {name: c.grids for name, c in counters.items()}


def _ragged_list():
    """Sizes that need every kind of pass: both first-pass axes, each last-pass axis, no resize at all,
    plus a strided crop, a channels-last view and a gray and an RGBA image (expanded / composited first)."""
    g = torch.Generator().manual_seed(50)
    gray = torch.randint(0, 256, (1, 50, 70), generator=g, dtype=torch.uint8).to(DEVICE)
    rgba = torch.randint(0, 256, (4, 61, 47), generator=g, dtype=torch.uint8).to(DEVICE)
    hwc = _img(83, 57, seed=51).permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last strides
    return [_img(60, 90, seed=52), _img(150, 58, seed=53), _img(250, 60, seed=59), _img(56, 56, seed=54),
            _img(56, 97, seed=55),
            _img(120, 40, seed=56), _img(130, 201, seed=57)[:, 3:110:2, 5:190], hwc, gray, rgba,
            _img(60, 90, seed=58)]


@pytest.mark.parametrize("config", [
    pytest.param(dict(pillow_order="pillow13"), id="pil-pillow13"),
    pytest.param(dict(pillow_order="pillow12", output_dtype=torch.float16), id="pil-pillow12-fp16"),
    pytest.param(dict(resize_mode="float", output_dtype=torch.bfloat16), id="float-bf16"),
    pytest.param(dict(preset="qwen3-vl", min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 20), id="qwen3"),
])
def test_ragged_descriptors_bit_exact_in_few_launches(monkeypatch, config):
    """ragged="descriptors": a list of many sizes runs in at most two launches per kind of image (source
    kind and pass axes), not two per size, and gives the torch backend's bits and the grouped path's."""
    from qwen_vis_prep.backends.triton import kernels

    images = _ragged_list()
    cfg = _cfg(**config)
    grouped = qvp.preprocess(images, cfg, backend="triton").pixel_values
    # the tile kernels for every kind (the rows pipeline's ragged plan is tested below)
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "ragged": "descriptors", "pipeline": "tiles"})
    monkeypatch.setattr(triton_ops, "PLANS", type(triton_ops.PLANS)(maxsize=256))  # plans built below
    first = _CountingKernel(kernels._resample_pass_kernel)
    fused = _CountingKernel(kernels._patchify_kernel)
    monkeypatch.setattr(kernels, "_resample_pass_kernel", first)
    monkeypatch.setattr(kernels, "_patchify_kernel", fused)
    a, b = _both(images, cfg)
    assert torch.equal(a, b)
    assert torch.equal(a, grouped)
    sizes = {tuple(i.shape[-2:]) for i in images}
    kinds = len(fused.grids)
    assert 1 <= kinds <= 4 < len(sizes)  # at most (first axis or none) x (last axis or none)
    assert len(first.grids) <= kinds
    assert all(grid[2] >= 1 for grid in fused.grids) and sum(grid[2] for grid in fused.grids) == len(images)


def test_ragged_descriptors_float_inputs(monkeypatch):
    """Float images: rounded to levels per image in pil mode; float arithmetic in float mode."""
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "ragged": "descriptors"})
    for dtype in (torch.float32, torch.float16):
        images = [_img(60, 90, dtype, seed=60), _img(45, 130, dtype, seed=61), _img(56, 56, dtype, seed=62)]
        for mode in ("pil", "float"):
            a, b = _both(images, _cfg(resize_mode=mode))
            assert torch.equal(a, b)


def test_ragged_descriptors_not_used_while_capturing(monkeypatch):
    """Descriptor tables are per-call data: a CUDA-graph capture would replay one call's tables, so
    capture takes the grouped path (here: the capture check is forced on)."""
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "ragged": "descriptors"})
    monkeypatch.setattr(triton_ops, "_capturing", lambda device: True)
    calls = []
    monkeypatch.setattr(triton_ops, "launch_ragged", lambda *a: calls.append(a) or True)
    images = [_img(60, 90, seed=63), _img(45, 130, seed=64)]
    a, b = _both(images, _cfg())
    assert torch.equal(a, b) and calls == []


WORD_OUT_WIDTHS = [250, 200, 90, 60, 30]
WORD_CROPS = [(0, 211), (1, 201), (2, 187), (3, 150)]  # (x offset, width): rows start at every address mod 4


@pytest.mark.parametrize("out_w", WORD_OUT_WIDTHS)
def test_word_loads_exact_at_every_alignment(monkeypatch, out_w):
    """pass_loads="words": a horizontal Pillow pass reads its taps as aligned 32-bit words. Rows starting
    at every address mod 4 (crops at x = 0..3 of odd widths), the right edge's clamped taps, and tap counts
    from 2 to 5 words (and past 5, where bytes are used) must give the torch backend's bits."""
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "pass_loads": "words"})
    big = _img(40, 211, seed=70)
    for x0, width in WORD_CROPS:
        img = big[:, 1:38, x0:x0 + width]
        a = qvp.resize(img, (37, out_w), mode="pil", backend="triton")
        b = qvp.resize(img, (37, out_w), mode="pil", backend="torch")
        assert torch.equal(a, b), (x0, width)
    a, b = _both(big[:, :, 3:], _cfg(pillow_order="pillow12"))
    assert torch.equal(a, b)


def test_word_load_cases_cover_every_word_count():
    """The sizes above exercise every word count the kernel has (2-5) and the byte fallback beyond."""
    from qwen_vis_prep.resample_tables import padded_taps, pil_taps

    words = {-(-(padded_taps(pil_taps(width, out_w)[0].shape[1]) + 3) // 4)
             for out_w in WORD_OUT_WIDTHS for _, width in WORD_CROPS}
    assert {2, 3, 4, 5} <= words and max(words) > 5
    plan = triton_ops._Pass((1, 3, 37, 150), (3 * 37 * 211, 37 * 211, 211, 1), 90, False, True, DEVICE)
    assert plan.launch.meta["WORDS"] == 0  # default tuning: byte loads


def test_ragged_plans_keep_their_tables_alive(monkeypatch):
    """A cached ragged plan points into every member's filter tables; evicting them from the table cache
    (and reusing their memory) must not change a later call's result."""
    from qwen_vis_prep import resample_tables

    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "ragged": "descriptors"})
    images = [_img(60, 90, seed=80), _img(45, 130, seed=81), _img(70, 100, seed=82)]
    cfg = _cfg()
    first = qvp.preprocess(images, cfg, backend="triton").pixel_values
    resample_tables.DEVICE_TABLES.clear()
    junk = [torch.full((n,), -7, dtype=torch.int32, device=DEVICE) for n in range(1, 400) for _ in range(4)]
    again = qvp.preprocess(images, cfg, backend="triton").pixel_values
    del junk
    assert torch.equal(first, again)
    assert torch.equal(again, qvp.preprocess(images, cfg, backend="torch").pixel_values)


ROWS_CONFIGS = [
    pytest.param(dict(pillow_order="pillow12"), id="fp32"),
    pytest.param(dict(pillow_order="pillow13", output_dtype=torch.bfloat16), id="bf16"),
    pytest.param(dict(output_dtype=torch.float16, patch_norm="table"), id="fp16-level-table"),
    pytest.param(dict(preset="qwen3-vl", min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 20), id="qwen3-patch16"),
]


@pytest.mark.parametrize("config", ROWS_CONFIGS)
def test_rows_pipeline_bit_exact(monkeypatch, config):
    """pipeline="rows": the horizontal pass writes the patch-packed scratch (every patch row 16-byte
    aligned) and the fused pass reads it back with vector loads. Stacked batches, same-shape lists (row
    tables), channels-last and HWC-strided crops, gray and upscales must give the torch backend's bits, and
    both new kernels must have run (two launches per same-shape group)."""
    from qwen_vis_prep.backends.triton import kernels

    config = dict(config)
    norm = config.pop("patch_norm", "arith")
    # ragged="groups": a same-shape list pair must take the grouped path the launch count below assumes,
    # whatever tuning the environment exports
    monkeypatch.setattr(triton_ops, "TUNING",
                        {**triton_ops.TUNING, "pipeline": "rows", "patch_norm": norm, "ragged": "groups"})
    monkeypatch.setattr(triton_ops, "PLANS", type(triton_ops.PLANS)(maxsize=256))
    first = _CountingKernel(kernels._rows_pass_kernel)
    fused = _CountingKernel(kernels._patch_rows_kernel)
    monkeypatch.setattr(kernels, "_rows_pass_kernel", first)
    monkeypatch.setattr(kernels, "_patch_rows_kernel", fused)
    cfg = _cfg(**config)
    crop = _img(130, 201, seed=90)[:, 3:110:2, 5:190]
    hwc = _img(83, 157, seed=91).permute(1, 2, 0).contiguous().permute(2, 0, 1)
    gray = _img(50, 171, seed=92)[:1]
    inputs = [torch.stack([_img(57, 171, seed=93), _img(57, 171, seed=94)]),
              [_img(60, 90, seed=95), _img(60, 90, seed=96), crop], hwc, gray]
    for x in inputs:
        a, b = _both(x, cfg)
        assert torch.equal(a, b)
    assert len(first.grids) == len(fused.grids) >= len(inputs) + 1


def test_rows_pipeline_only_where_it_applies(monkeypatch):
    """The rows pipeline takes Pillow arithmetic with a width-then-height resize; other groups (no resize,
    height only, vertical first, float arithmetic) keep the tile kernels, and the results stay exact."""
    from qwen_vis_prep.backends.triton import kernels

    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "pipeline": "rows"})
    monkeypatch.setattr(triton_ops, "PLANS", type(triton_ops.PLANS)(maxsize=256))
    first = _CountingKernel(kernels._rows_pass_kernel)
    monkeypatch.setattr(kernels, "_rows_pass_kernel", first)
    cases = [(_img(56, 112, seed=97), _cfg()), (_img(70, 112, seed=98), _cfg()),
             (_img(150, 58, seed=99), _cfg(pillow_order="pillow13")),
             (_img(60, 90, seed=100), _cfg(resize_mode="float"))]
    for x, cfg in cases:
        a, b = _both(x, cfg)
        assert torch.equal(a, b)
    assert first.grids == []


@pytest.mark.parametrize("ragged", ["groups", "descriptors"])
def test_rows_pipeline_needs_rows_as_wide_as_the_window(monkeypatch, ragged):
    """The rows pass reads each output's filter window unclamped, so it only takes images at least as wide
    as the window (here 4 px wide upscaled to 28: 5 taps). A narrower one goes to the tile kernels: alone,
    or with the whole sub-group when a ragged="descriptors" launch would share its tap count; and exactly."""
    from qwen_vis_prep.backends.triton import kernels
    from qwen_vis_prep.resample_tables import pil_taps

    assert pil_taps(4, 28)[1].shape[1] == 5
    monkeypatch.setattr(triton_ops, "TUNING", {**triton_ops.TUNING, "pipeline": "rows", "ragged": ragged})
    monkeypatch.setattr(triton_ops, "PLANS", type(triton_ops.PLANS)(maxsize=256))
    first = _CountingKernel(kernels._rows_pass_kernel)
    monkeypatch.setattr(kernels, "_rows_pass_kernel", first)
    narrow, wide = _img(140, 4, seed=101), _img(60, 90, seed=102)
    for x in (narrow, [wide, narrow], [wide, wide[:, :, 1:]]):
        a, b = _both(x, _cfg())
        assert torch.equal(a, b)
    # groups: one launch per wide size (60x90 twice, 60x89 once); descriptors: one for the list without the
    # narrow image, none for the list with it
    assert len(first.grids) == (3 if ragged == "groups" else 1)


def test_named_sizes_cover_both_pass_orders():
    """The sizes above named for it really do take Pillow 13's vertical-first order (and the rest do not)."""
    from qwen_vis_prep.sizing import pillow_vertical_first

    cfg = _cfg()
    for h, w in [(150, 58), (250, 60), (60, 90)]:
        out = qvp.smart_resize(h, w, 28, cfg.min_pixels, cfg.max_pixels)
        assert pillow_vertical_first(h, w, *out, "pillow13") == ((h, w) == (150, 58))


@pytest.mark.parametrize("config", ROWS_CONFIGS)
def test_ragged_rows_plan_bit_exact_in_two_launches(monkeypatch, config):
    """ragged="descriptors" with the rows pipeline: every image of the list resized width then height with
    Pillow arithmetic, whatever its size, goes through one launch of each rows kernel on a flat grid (the
    other kinds through the tile kernels), with the torch backend's bits and the grouped path's."""
    from qwen_vis_prep.sizing import pillow_vertical_first

    config = dict(config)
    norm = config.pop("patch_norm", "arith")
    cfg = _cfg(**config)
    images = _ragged_list()
    base = {**triton_ops.TUNING, "pipeline": "rows", "patch_norm": norm}
    monkeypatch.setattr(triton_ops, "TUNING", {**base, "ragged": "groups"})
    grouped = qvp.preprocess(images, cfg, backend="triton").pixel_values
    monkeypatch.setattr(triton_ops, "TUNING", {**base, "ragged": "descriptors"})
    monkeypatch.setattr(triton_ops, "PLANS", type(triton_ops.PLANS)(maxsize=256))
    grids = count_launches(monkeypatch)
    a, b = _both(images, cfg)
    assert torch.equal(a, b)
    assert torch.equal(a, grouped)
    unit = cfg.patch_size * cfg.merge_size
    eligible = 0
    for img in images:
        h, w = img.shape[-2:]
        oh, ow = qvp.smart_resize(h, w, unit, cfg.min_pixels, cfg.max_pixels)
        eligible += ow != w and oh != h and not pillow_vertical_first(h, w, oh, ow, cfg.pillow_order)
    assert eligible >= 4
    rows_first, rows_fused = grids["_rows_pass_kernel"], grids["_patch_rows_kernel"]
    assert len(rows_first) == len(rows_fused) == 1  # all eligible images, whatever their sizes: two launches
    assert rows_first[0][1:] == rows_fused[0][1:] == (1, 1)  # one flat grid
    assert sum(g[2] for g in grids["_patchify_kernel"]) == len(images) - eligible


# ------------------------------------------------------------------------------------ warm calls
@pytest.fixture
def warm_hits(monkeypatch):
    """Fresh plans (so no earlier test's entries), and a list with one True per call served by
    ``ops.warm_call`` (misses are not listed: before any entry exists the lookup is skipped). Ragged lists
    run per size (``ragged="groups"``, the default) whatever tuning the process exported: under descriptor
    tables a list of several sizes is never recorded, and the hit counts below assume it is."""
    monkeypatch.setattr(triton_ops, "PLANS", type(triton_ops.PLANS)(maxsize=256))
    monkeypatch.setitem(triton_ops.TUNING, "ragged", "groups")
    hits: list[bool] = []
    real = triton_ops.warm_call

    def spy(*args):
        result = real(*args)
        if result is not None:
            hits.append(True)
        return result

    monkeypatch.setattr(triton_ops, "warm_call", spy)
    return hits


def _warm_inputs():
    """Tensors a warm call takes: each layout and rank, a strided crop, float input, two output dtypes."""
    g = torch.Generator().manual_seed(40)
    batch = torch.randint(0, 256, (2, 3, 61, 95), generator=g, dtype=torch.uint8).to(DEVICE)
    hwc = torch.randint(0, 256, (2, 58, 150, 3), generator=g, dtype=torch.uint8).to(DEVICE)
    yield pytest.param(batch, {}, {}, id="batch-chw")
    yield pytest.param(batch.contiguous(memory_format=torch.channels_last), {}, {}, id="batch-channels-last")
    yield pytest.param(hwc, {"layout": "hwc"}, {}, id="batch-hwc")
    yield pytest.param(hwc[1, 3:50, 7:120], {"layout": "hwc"}, {}, id="image-hwc-crop")
    yield pytest.param(batch[1], {}, {"output_dtype": torch.bfloat16}, id="image-chw-bf16")
    yield pytest.param(batch[:, :, :56, :56], {}, {}, id="no-resize-crop")
    yield pytest.param(batch.float(), {"check_values": False}, {}, id="float-input-pil")
    yield pytest.param(batch.float() / 255, {"check_values": False}, {"resize_mode": "float", "input_range": "0-1"},
                       id="unit-float-input-float-mode")


@pytest.mark.parametrize("x, kw, cfg_kw", list(_warm_inputs()))
def test_warm_calls_repeat_the_full_path(warm_hits, x, kw, cfg_kw):
    """A repeated call with the same tensor metadata runs from its cached plan (``ops.warm_call``) and gives
    the torch backend's bits, a fresh output and a fresh ``grid_thw`` every time; the input is untouched."""
    cfg = _cfg(**cfg_kw)
    before, version = x.clone(), x._version
    ref = qvp.preprocess(x, cfg, backend="torch", **kw)
    first = qvp.preprocess(x, cfg, backend="triton", **kw)
    assert warm_hits == []  # nothing recorded yet: the full path ran and recorded this call
    second = qvp.preprocess(x, cfg, backend="triton", **kw)
    second.grid_thw[0, 1] = -1  # the caller owns what it got back
    third = qvp.preprocess(x, cfg, backend="triton", **kw)
    assert warm_hits == [True, True]
    for got in (first, third):
        assert torch.equal(got.pixel_values, ref.pixel_values)
        assert torch.equal(got.grid_thw, ref.grid_thw)
    assert torch.equal(second.pixel_values, ref.pixel_values)
    assert len({first.pixel_values.data_ptr(), second.pixel_values.data_ptr(), third.pixel_values.data_ptr()}) == 3
    assert x._version == version and torch.equal(x, before)


def test_warm_calls_are_keyed_on_all_metadata(warm_hits, monkeypatch):
    """Whatever changes a plan (strides, alignment, config, layout, launch shapes) gets its own entry."""
    flat = torch.randint(0, 256, (2 * 3 * 61 * 95 + 1,), generator=torch.Generator().manual_seed(41),
                         dtype=torch.uint8).to(DEVICE)
    aligned, odd = flat[:-1].view(2, 3, 61, 95), flat[1:].view(2, 3, 61, 95)
    calls = [(aligned, _cfg(), {}), (odd, _cfg(), {}), (aligned.transpose(2, 3).contiguous().transpose(2, 3),
                                                        _cfg(), {}),
             (aligned, _cfg(output_dtype=torch.float16), {}), (aligned, _cfg(pillow_order="pillow13"), {}),
             (aligned[:, :, :, :61], _cfg(), {}), (aligned, _cfg(), {"layout": "chw"})]
    for x, cfg, kw in calls:
        ref = qvp.preprocess(x, cfg, backend="torch", **kw).pixel_values
        assert torch.equal(qvp.preprocess(x, cfg, backend="triton", **kw).pixel_values, ref)
    assert warm_hits == []
    for x, cfg, kw in calls:  # every one of them now repeats from its own entry
        ref = qvp.preprocess(x, cfg, backend="torch", **kw).pixel_values
        assert torch.equal(qvp.preprocess(x, cfg, backend="triton", **kw).pixel_values, ref)
    assert warm_hits == [True] * len(calls)
    monkeypatch.setitem(triton_ops.TUNING, "pipeline", "tiles" if triton_ops.TUNING["pipeline"] == "rows" else "rows")
    x, cfg, _ = calls[0]
    assert torch.equal(qvp.preprocess(x, cfg, backend="triton").pixel_values,
                       qvp.preprocess(x, cfg, backend="torch").pixel_values)
    assert len(warm_hits) == len(calls)  # new launch shapes: a new plan, not the old entry


def test_warm_calls_keep_value_checks_and_conversions(warm_hits):
    """Calls whose checks or conversions look at the pixels are never repeated from metadata alone: a
    value check still rejects a bad image after good ones, gray and RGBA still convert."""
    good = _img(61, 95, dtype=torch.float32, seed=42)[None]
    bad = good.clone()
    bad[0, 1, 5, 7] = float("nan")
    for _ in range(2):
        qvp.preprocess(good, _cfg(), backend="triton", check_values=True)
    with pytest.raises(ValueError, match="finite"):
        qvp.preprocess(bad, _cfg(), backend="triton", check_values=True)
    assert not any(warm_hits)
    g = torch.Generator().manual_seed(43)
    for c in (1, 4):
        x = torch.randint(0, 256, (2, c, 61, 95), generator=g, dtype=torch.uint8).to(DEVICE)
        for _ in range(2):
            a, b = _both(x, _cfg())
            assert torch.equal(a, b)
    assert not any(warm_hits)


def test_warm_calls_never_drop_gradients(warm_hits):
    """An entry recorded without gradients does not serve a call that needs them: ``backend="triton"``
    still refuses it, ``"auto"`` (Triton only on CUDA) still takes the differentiable torch path."""
    cfg = _cfg(resize_mode="float")
    x = _img(61, 95, dtype=torch.float32, seed=44)[None].requires_grad_()
    backends = ["triton", "auto"] if DEVICE.type == "cuda" else ["triton"]
    with torch.no_grad():
        for backend in backends:
            for _ in range(2):
                qvp.preprocess(x, cfg, backend=backend, check_values=False)
    assert warm_hits == [True] * len(backends)
    with pytest.raises(ValueError, match="backward"):
        qvp.preprocess(x, cfg, backend="triton", check_values=False)
    if "auto" in backends:
        out = qvp.preprocess(x, cfg, backend="auto", check_values=False).pixel_values
        assert out.requires_grad
        out.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
    assert warm_hits == [True] * len(backends)  # no call with gradients was served from an entry


@pytest.mark.parametrize("form", ["uint8", "unit-float-float-mode"])
def test_warm_call_with_an_unaligned_output(warm_hits, monkeypatch, form):
    """A warm call whose new output lands at another alignment than the recorded one takes the full launch
    path (Triton specialised the plan's kernels on the old alignment) and still gives the same bits, also
    for inputs the launch path converts (float in [0, 1]: scaled once, not twice)."""
    x = _img(61, 95, seed=45)[None]
    cfg, kw = _cfg(), {}
    if form != "uint8":
        x, cfg, kw = x.float() / 255, _cfg(resize_mode="float", input_range="0-1"), {"check_values": False}
    ref = qvp.preprocess(x, cfg, backend="torch", **kw).pixel_values
    qvp.preprocess(x, cfg, backend="triton", **kw)

    def unaligned(shape, dtype, device):
        n = shape[0] * shape[1]
        return torch.empty(n + 1, dtype=dtype, device=device)[1:].view(shape)

    monkeypatch.setattr(triton_ops, "_empty_out", unaligned)
    got = qvp.preprocess(x, cfg, backend="triton", **kw).pixel_values
    assert warm_hits == [True] and got.data_ptr() % 16 != 0
    assert torch.equal(got, ref)


def _ragged_tensors():
    """A ragged list with every kind of group: a same-size pair in one buffer (read in place), a same-size
    pair in separate buffers (stacked), and sizes of their own (one not resized)."""
    g = torch.Generator().manual_seed(48)
    buf = torch.randint(0, 256, (2, 3, 61, 95), generator=g, dtype=torch.uint8).to(DEVICE)
    pair = [torch.randint(0, 256, (3, 40, 50), generator=g, dtype=torch.uint8).to(DEVICE) for _ in range(2)]
    alone = [torch.randint(0, 256, (3, 131, 31), generator=g, dtype=torch.uint8).to(DEVICE),
             torch.randint(0, 256, (3, 56, 112), generator=g, dtype=torch.uint8).to(DEVICE)]
    return [buf[0], pair[0], alone[0], buf[1], pair[1], alone[1]]


@pytest.mark.parametrize("form", ["chw", "hwc", "float", "bf16-out"])
def test_warm_calls_repeat_lists(warm_hits, form):
    """A list of image tensors with the same metadata is repeated from its recorded group launches too."""
    images, kw, cfg = _ragged_tensors(), {}, _cfg()
    if form == "hwc":
        images, kw = [t.permute(1, 2, 0) for t in images], {"layout": "hwc"}
    elif form == "float":
        images, kw = [t.float() for t in images], {"check_values": False}
    elif form == "bf16-out":
        cfg = _cfg(output_dtype=torch.bfloat16)
    ref = qvp.preprocess(images, cfg, backend="torch", **kw)
    outs = [qvp.preprocess(images, cfg, backend="triton", **kw) for _ in range(3)]
    assert warm_hits == [True, True]
    for out in outs:
        assert torch.equal(out.pixel_values, ref.pixel_values) and torch.equal(out.grid_thw, ref.grid_thw)


def test_warm_list_whose_group_source_changes(warm_hits):
    """Same per-image metadata, but the same-size pair now lies in two buffers: the recorded in-place plan
    does not fit the stacked copy, so that group takes the regular launch path; same bits."""
    g = torch.Generator().manual_seed(49)
    one = torch.randint(0, 256, (2, 3, 61, 100), generator=g, dtype=torch.uint8).to(DEVICE)[..., :95]
    two = [torch.randint(0, 256, (2, 3, 61, 100), generator=g, dtype=torch.uint8).to(DEVICE)[..., :95]
           for _ in range(2)]
    cfg = _cfg()
    together, apart = [one[0], one[1]], [two[0][0], two[1][1]]
    assert triton_ops._group_source(together).data_ptr() == one.data_ptr()
    assert triton_ops._group_source(apart).stride() != triton_ops._group_source(together).stride()
    assert triton_ops._warm_key(together, cfg, "triton", "auto", None) == \
        triton_ops._warm_key(apart, cfg, "triton", "auto", None)
    for images in (together, apart, together):
        a, b = _both(images, cfg)
        assert torch.equal(a, b)
    assert warm_hits == [True, True]


def test_lists_not_repeated_from_metadata(warm_hits, monkeypatch):
    """Lists with a non-tensor, a gray image or (with descriptor tables on) several sizes are never served
    from an entry; a one-size list under descriptor tables is (it runs as one group)."""
    images = _ragged_tensors()
    gray = [images[0], images[2][:1]]
    with_numpy = [images[0], images[2].permute(1, 2, 0).cpu().numpy()]
    lists = [gray, with_numpy]
    if DEVICE.type == "cuda":  # a numpy array is host memory: it cannot join a list of CUDA tensors
        with pytest.raises(ValueError, match="one device, got cpu after cuda"):
            qvp.preprocess(with_numpy, _cfg(), backend="triton")
        lists = [gray]
    for x in lists:
        for _ in range(2):
            a, b = _both(x, _cfg())
            assert torch.equal(a, b)
    assert warm_hits == []
    monkeypatch.setitem(triton_ops.TUNING, "ragged", "descriptors")
    for x in (images, [images[0], images[3]]):
        for _ in range(2):
            a, b = _both(x, _cfg())
            assert torch.equal(a, b)
    assert warm_hits == [True]  # only the one-size list


def test_warm_lists_never_drop_gradients(warm_hits):
    cfg = _cfg(resize_mode="float")
    images = [_img(61, 95, dtype=torch.float32, seed=50), _img(40, 50, dtype=torch.float32, seed=51)]
    images[1].requires_grad_()
    with torch.no_grad():
        for _ in range(2):
            qvp.preprocess(images, cfg, backend="triton", check_values=False)
    assert warm_hits == [True]
    with pytest.raises(ValueError, match="backward"):
        qvp.preprocess(images, cfg, backend="triton", check_values=False)
    assert warm_hits == [True]
