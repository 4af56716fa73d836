"""Triton kernels vs the pure-torch reference backend.

On a machine without CUDA these run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by
conftest.py), so the kernels' exact arithmetic is checked on every CI run; on a GPU they run on CUDA.
pil mode must be bit-exact (``torch.equal``); float mode is also bit-exact by construction (float64 sums
of exact float32 products in the same tap order, see kernels.py), and tested so.

The interpreter pays for every program and row, so most tests use small images, and the sweeps over launch
shapes, pass orders and configs that repeat what a default run already covers are marked ``slow``
(``pytest tests -m slow``; ``benchmarks/gpu_check.sh`` runs them all on a GPU, where they take seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep.backends import triton as triton_backend
from qwen_vis_prep.backends.triton import launcher, plans, tuning, warm

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(not triton_backend.can_run(DEVICE)[0],
                                reason=f"Triton cannot run here: {triton_backend.can_run(DEVICE)[1]}")

SMALL = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 24)


def _cfg(**kw) -> qvp.VisionPreprocessConfig:
    return qvp.VisionPreprocessConfig.from_preset(kw.pop("preset", "qwen2-vl"), **{**SMALL, **kw})


def _tiny(**kw) -> qvp.VisionPreprocessConfig:
    """Outputs of 1 to 4 merge windows, for the tests of plans and warm calls, which do not depend on sizes
    (Triton's CPU interpreter pays for every row and tile)."""
    return _cfg(**{"min_pixels": 28 * 28, "max_pixels": 28 * 28 * 4, **kw})


def _tune(monkeypatch, **values) -> None:
    """Set tuning entries for one test. Plans read ``tuning.TUNING`` (the same dict object, imported by
    name), so it is changed in place, key by key, and restored afterwards."""
    for key, value in values.items():
        monkeypatch.setitem(tuning.TUNING, key, value)


SLOW = pytest.mark.slow  # in Triton's CPU interpreter: the long CI step (``pytest tests -m slow``) runs them


def _fresh_caches(monkeypatch) -> None:
    """Empty plan and warm-call caches for one test (so launch counts see every plan built)."""
    monkeypatch.setattr(plans, "PLANS", type(plans.PLANS)(maxsize=256))
    monkeypatch.setattr(warm, "WARM_CALLS", type(warm.WARM_CALLS)(maxsize=256))


def _both(x, cfg, **kw):
    a = qvp.preprocess(x, cfg, backend="triton", **kw)
    b = qvp.preprocess(x, cfg, backend="reference", **kw)
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


TALLEST = {"250x60-taller"}  # the longest input in rows: slow in the interpreter (201x31 stays)


def _orders():
    """Every size in Pillow 12's order; in Pillow 13's too, where it differs (vertical first) by default and
    everywhere in the slow run (the same computation otherwise)."""
    for p in SIZES:
        yield pytest.param("pillow12", *p.values, id=f"pillow12-{p.id}", marks=SLOW if p.id in TALLEST else ())
        vertical_first = "vertical-first" in p.id
        yield pytest.param("pillow13", *p.values, id=f"pillow13-{p.id}", marks=() if vertical_first else SLOW)


@pytest.mark.parametrize("order, size", list(_orders()))
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
    ref = qvp.preprocess(chw, cfg, backend="reference").pixel_values
    assert torch.equal(qvp.preprocess(hwc, cfg, backend="triton", layout="hwc").pixel_values, ref)
    assert torch.equal(qvp.preprocess(cl, cfg, backend="triton").pixel_values, ref)
    assert torch.equal(qvp.preprocess(chw[None], cfg, backend="triton").pixel_values, ref)
    # a non-contiguous crop
    big = _img(80, 120, seed=7)
    crop = big[:, 5:71, 7:106]
    a, b = _both(crop, cfg)
    assert torch.equal(a, b)


def test_ragged_list_and_batch():
    imgs = [_img(29, 47, seed=8), _img(20, 65, seed=9), _img(29, 47, seed=10), _img(28, 28, seed=11)]
    cfg = _tiny()
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
    kw = dict(min_pixels=32 * 32, max_pixels=32 * 32 * 6) if preset == "qwen3-vl" else {}
    x = _img(45, 70, seed=13)
    for compact in (False, True):
        a, b = _both(x, _tiny(preset=preset, compact_images=compact, **kw))
        assert torch.equal(a, b)


def test_normalisation_switches():
    x = _img(56, 84, seed=14)
    for kw in (dict(do_normalize=False), dict(do_rescale=False), dict(do_rescale=False, do_normalize=False)):
        a, b = _both(x, _cfg(**kw))
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["pil", "torch-uint8", "float"])
def test_resize_stage(mode):
    x = _img(40, 61, seed=15)
    for size in [(17, 90), (80, 30), (40, 61), (3, 200)]:
        a = qvp.resize(x, size, mode=mode, backend="triton")
        b = qvp.resize(x, size, mode=mode, backend="reference")
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
    cfg = _tiny()
    flat = torch.randint(0, 256, (3 * 29 * 47 + 1,), generator=torch.Generator().manual_seed(17),
                         dtype=torch.uint8).to(DEVICE)
    aligned = flat[:-1].view(3, 29, 47)
    odd = flat[1:].view(3, 29, 47)
    assert aligned.data_ptr() % 16 == 0 and odd.data_ptr() % 16 == 1
    for x in (aligned, odd, aligned, odd):  # twice each: the second call runs from the cached plan
        a, b = _both(x, cfg)
        assert torch.equal(a, b)


@pytest.mark.parametrize("values", [
    pytest.param({}, id="current", marks=SLOW),  # what every other test here runs
    pytest.param(tuning.GPU_TUNING, id="gpu-defaults", marks=SLOW),  # every test's shapes on a GPU
    pytest.param(dict(pass_block_r=8, pass_block_q=64, patch_block=4, patch_warps=4), id="small-tiles", marks=SLOW),
    pytest.param(dict(pass_block_r=32, pass_block_q=32, pass_warps=8, patch_block=8, patch_warps=8),
                 id="large-blocks", marks=SLOW),
    pytest.param(dict(pass_taps="tap-major", patch_taps="tap-major"), id="tap-major-tables", marks=SLOW),
    pytest.param(dict(tuning.GPU_TUNING, pass_taps="tap-major", patch_taps="tap-major"),
                 id="gpu-defaults-tap-major", marks=SLOW),
    pytest.param(dict(tuning.GPU_TUNING, pipeline="tiles"), id="gpu-defaults-tile-pipeline", marks=SLOW),
    pytest.param(dict(tuning.GPU_TUNING, pass_taps="out-major"), id="gpu-defaults-out-major", marks=SLOW),
    pytest.param(dict(tuning.GPU_TUNING, rows_per_program=8), id="gpu-defaults-8-rows-per-program", marks=SLOW),
    pytest.param(dict(tuning.GPU_TUNING, rows_prefetch=8), id="gpu-defaults-rows-prefetch", marks=SLOW),  # CUDA
    pytest.param(dict(tuning.GPU_TUNING, rows_tap_loads=8, rows_warps=1, rows_block_q=128),
                 id="gpu-defaults-rows-column-cap", marks=SLOW),  # 4 outputs per thread, fewer as the taps grow
    pytest.param(dict(pipeline="rows", rows_per_program=2, rows_block_q=32, rows_patch_block=1, rows_warps=4,
                      rows_patch_warps=2, pass_taps="tap-major", patch_taps="tap-major"),
                 id="rows-pipeline-small-tiles-tap-major"),
])
def test_launch_shapes_do_not_change_results(monkeypatch, values):
    """Every launch shape the GPU sweep may pick gives the same bits (edge tiles are clamped and masked):
    a resize of both sides (the rows pipeline where it is on), Pillow 13's vertical-first order, one side up
    and the other down, no resize, float arithmetic on levels with bf16 output, and float16 input. Small
    images: the GPU's launch shapes run many tiny programs, which Triton's interpreter pays for one by one."""
    _tune(monkeypatch, **values)
    small = dict(min_pixels=28 * 28, max_pixels=28 * 28 * 6)
    # -> 28x56 (both sides down), 28x56 (vertical first in Pillow 13), 84x28, 28x56 (no resize)
    imgs = [_img(31, 65, seed=18), _img(30, 45, seed=17), _img(71, 33, seed=19), _img(28, 56, seed=20)]
    for x, cfg in ((imgs, _cfg(pillow_order="pillow13", **small)),
                   (imgs[::2], _cfg(resize_mode="float", output_dtype=torch.bfloat16, **small)),
                   (_img(35, 50, dtype=torch.float16, seed=21), _cfg(resize_mode="float", **small))):
        a, b = _both(x, cfg)
        assert torch.equal(a, b)


def test_rows_pass_columns_follow_the_tap_loads_cap(monkeypatch):
    """``plans.rows_block_q``: ``rows_block_q`` halved while columns / (32 * warps) outputs of ``taps`` loads
    each exceed ``rows_tap_loads``, never below one output per thread; a cap of 0 keeps ``rows_block_q``."""
    _tune(monkeypatch, rows_block_q=256, rows_warps=4, rows_tap_loads=16)
    assert [plans.rows_block_q(t) for t in (1, 7, 8, 9, 13, 16, 17, 48)] == \
        [256, 256, 256, 128, 128, 128, 128, 128]
    _tune(monkeypatch, rows_tap_loads=8)
    assert [plans.rows_block_q(t) for t in (4, 5, 8, 9)] == [256, 128, 128, 128]
    _tune(monkeypatch, rows_tap_loads=0)
    assert plans.rows_block_q(48) == 256
    _tune(monkeypatch, rows_tap_loads=16, rows_block_q=1024, rows_warps=2)
    assert [plans.rows_block_q(t) for t in (1, 2, 3, 4, 5, 7, 13)] == [1024, 512, 256, 256, 128, 128, 64]


def test_batches_beyond_the_grid_limit_are_split(monkeypatch):
    """Images ride on grid dim 2 (at most 65535); larger groups go in slices (limit shrunk here to 2)."""
    monkeypatch.setattr(plans, "MAX_GRID_YZ", 2)
    batch = torch.stack([_img(29, 47, seed=21 + i) for i in range(5)])
    ragged = [_img(29, 47, seed=30 + i) for i in range(3)] + [_img(20, 25, seed=40)]
    for x in (batch, ragged):
        a, b = _both(x, _tiny())
        assert torch.equal(a, b)


def _keep_tuning(monkeypatch) -> None:
    """Restore every entry of ``tuning.TUNING`` after the test (which may update it in place)."""
    _tune(monkeypatch, **tuning.TUNING)


@pytest.mark.parametrize("raw, match", [
    ("not json", "JSON object"),
    ('{"patch_block": 1000}', "power of two"),
    ('{"patch_block": true}', "power of two"),
    ('{"block": 64}', "takes keys"),
    ('{"pass_taps": "rows"}', "one of"),
    ('[1, 2]', "JSON object"),
    ('{"rows_prefetch": 3}', "one of"),
    ('{"rows_prefetch": true}', "one of"),
    ('{"rows_tap_loads": 12}', "one of"),
    ('{"pipeline": "fused"}', "one of"),
    ('{"pipeline": "single"}', "one of"),  # a pipeline that no longer exists
    ('{"single_ctas": 4}', "takes keys"),
])
def test_tuning_override_is_validated(monkeypatch, raw, match):
    _keep_tuning(monkeypatch)
    before = dict(tuning.TUNING)
    monkeypatch.setenv(tuning.TUNING_ENV, raw)
    with pytest.raises(ValueError, match=match):
        tuning.apply_tuning_override()
    assert tuning.TUNING == before


# every kernel variant that was removed, with a value it used to take
REMOVED_SETTINGS = {"pass_loads": "words", "patch_norm": "arith", "ragged": "descriptors", "rows_unroll": 2,
                    "rows_prefetch_to": "L1"}


@pytest.mark.parametrize("key", sorted(REMOVED_SETTINGS))
def test_removed_tuning_keys_are_refused(monkeypatch, key):
    """The kernel variants that were exact but no faster on the H200 are gone; naming one in the override
    is an error that says so (alone, or next to valid keys, which are then not applied either)."""
    assert set(tuning.REMOVED) == set(REMOVED_SETTINGS)
    assert key not in tuning.TUNING and key not in tuning.GPU_TUNING
    _keep_tuning(monkeypatch)
    before = dict(tuning.TUNING)
    for values in ({key: REMOVED_SETTINGS[key]}, {"patch_block": 2, key: REMOVED_SETTINGS[key]}):
        monkeypatch.setenv(tuning.TUNING_ENV, json.dumps(values))
        with pytest.raises(ValueError, match=f"{key}.*removed"):
            tuning.apply_tuning_override()
        assert tuning.TUNING == before


def test_removed_tuning_key_fails_the_import(tmp_path):
    """The override is read at import: a process exporting a removed key fails there, with the message."""
    env = dict(os.environ, **{tuning.TUNING_ENV: '{"ragged": "descriptors"}'})
    run = subprocess.run([sys.executable, "-c", "import qwen_vis_prep.backends.triton.tuning"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "ValueError" in run.stderr and "were removed" in run.stderr and "ragged" in run.stderr


def test_tuning_override_applies(monkeypatch):
    _keep_tuning(monkeypatch)
    monkeypatch.setenv(tuning.TUNING_ENV, '{"patch_block": 512, "pass_warps": 2}')
    tuning.apply_tuning_override()
    assert tuning.TUNING["patch_block"] == 512 and tuning.TUNING["pass_warps"] == 2
    assert tuning.tuning_key() == tuple(tuning.TUNING.values())


def test_same_shape_lists_are_read_in_place():
    """Same-shape images of a list that lie at one step in one buffer (``list(batch.unbind(0))``) are read
    through a strided view, not stacked into a copy; anything else is stacked. Same bits either way."""
    g = torch.Generator().manual_seed(46)
    batch = torch.randint(0, 256, (3, 3, 29, 47), generator=g, dtype=torch.uint8).to(DEVICE)
    views = list(batch.unbind(0))
    for members, expected in ((views, batch), (views[::2], batch[::2]), ([views[1]] * 3, batch[[1, 1, 1]])):
        src = plans.group_source(members)
        assert src.data_ptr() == members[0].data_ptr() and torch.equal(src, expected)
    separate = [v.clone() for v in views]
    crops = [batch[i, :, :28, :45] for i in range(3)]
    for members in (views[::-1], separate, [views[0], separate[1]], crops[:1] + [c.contiguous() for c in crops[1:]]):
        src = plans.group_source(members)
        assert torch.equal(src, torch.stack(members))
        assert all(src.data_ptr() != m.data_ptr() for m in members)
    other = _img(20, 25, seed=47)
    for images in (views, views[::-1], [views[0], other, views[2]], crops):
        a, b = _both(images, _tiny())
        assert torch.equal(a, b)
    assert torch.equal(qvp.preprocess(views, _tiny(), backend="triton").pixel_values,
                       qvp.preprocess(batch, _tiny(), backend="triton").pixel_values)


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
    """Stands in for a ``@triton.jit`` function with three runtime and two constexpr parameters."""

    __name__ = "_fake_kernel"
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
    """The first launch binds through ``kernel[grid](...)``, every argument in signature order. Without CUDA,
    later ones call the kept ``compiled[grid]`` with the fixed arguments and the constexprs appended in
    signature order. With CUDA (faked here) they call the compiled kernel's own launcher: grid, the device's
    current stream, function, packed metadata, no launch metadata or hooks, the fixed tensors as addresses;
    with a launch hook registered (a profiler), ``compiled[grid]`` again. If a direct call fails, it warns
    once, launches the regular way and turns the direct paths off for the process."""
    import triton

    if cuda and not launcher._fast_launch_supported():
        pytest.skip(f"the direct launch is not written for Triton {triton.__version__}")
    monkeypatch.setattr(launcher.Launcher, "enabled", True)
    monkeypatch.setattr(launcher.Launcher, "_warned", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 1000 + device, raising=False)
    table = torch.arange(4)
    kernel = _FakeKernel(fail)
    launch = launcher.Launcher(kernel, (3, 1, 2), inputs=("x_ptr", "n"), args=dict(t_ptr=table),
                               constexprs=dict(B=True, A=7), num_warps=4)
    launch(x_ptr="x", n=5)
    regular = ("regular", (3, 1, 2), ("x", 5, table), dict(B=True, A=7, num_warps=4))
    if fail:
        with pytest.warns(RuntimeWarning, match="direct Triton launch failed"):
            launch(n=6, x_ptr="y")
        assert kernel.log == [regular, ("regular", (3, 1, 2), ("y", 6, table), dict(B=True, A=7, num_warps=4))]
        assert launcher.Launcher.enabled is False
        return
    launch(n=6, x_ptr="y")  # by name, in any order
    if not cuda:
        assert kernel.log == [regular, ("direct", (3, 1, 2), ("y", 6, table, 7, True))]
        return
    lean = ("lean", (3, 1, 2, 1003, 0xF00, (4, 1, 0), None, None, None, "y", 6, table.data_ptr(), 7, True))
    assert kernel.log == [regular, lean]
    hook = lambda metadata: None  # noqa: E731
    triton.knobs.runtime.launch_enter_hook.add(hook)
    try:
        launch(x_ptr="z", n=8)
    finally:
        triton.knobs.runtime.launch_enter_hook.remove(hook)
    launch(x_ptr="w", n=9)
    assert kernel.log[2:] == [("direct", (3, 1, 2), ("z", 8, table, 7, True)), (*lean[:1], (*lean[1][:9], "w", 9,
                                                                                              *lean[1][11:]))]


@pytest.mark.parametrize("inputs, args, match", [
    pytest.param(("x_ptr", "n"), {}, r"missing \['t_ptr'\]", id="missing"),
    pytest.param(("x_ptr", "n"), dict(t_ptr=1, s_ptr=2), r"unknown \['s_ptr'\]", id="unknown"),
    pytest.param(("x_ptr", "n"), dict(t_ptr=1, A=2), r"unknown \['A'\]", id="constexpr-as-argument"),
    pytest.param(("x_ptr", "n", "n"), dict(t_ptr=1), "once", id="twice"),
    pytest.param(("n", "x_ptr"), dict(t_ptr=1), "leading parameters", id="inputs-not-leading"),
])
def test_launcher_checks_argument_names(inputs, args, match):
    """A plan that misses, misnames or repeats a kernel argument fails when it is built, naming it."""
    with pytest.raises(TypeError, match=match):
        launcher.Launcher(_FakeKernel(), (1, 1, 1), inputs=inputs, args=args, constexprs=dict(A=1, B=2),
                          num_warps=1)


def test_launcher_names_every_argument_of_the_real_kernels():
    """Each plan kind builds its launches against the real kernels' signatures (checked in ``Launcher``):
    the tile pass, the rows pass, and both fused kernels with and without a row table or a resize."""
    cfg = _cfg()
    shape, strides = (2, 3, 60, 90), (3 * 60 * 90, 60 * 90, 90, 1)
    assert plans.Pass(shape, strides, 56, True, "pil", DEVICE).launch.kernel.__name__ == "_resample_pass_kernel"
    rows = plans.RowsPass(shape, strides, 84, 14, "pil", DEVICE)
    assert rows.launch.kernel.__name__ == "_rows_pass_kernel" and rows.dst_shape == (2, 3, 60, 84 // 14 * 16)
    for size, row_offsets in (((56, 84), None), ((56, 84), (0, 24)), ((60, 84), None), ((60, 90), (0, 0))):
        plan = plans.GroupPlan(shape, strides, 0, size, cfg, 0, row_offsets, DEVICE)
        names = plan.launch.kernel.arg_names
        fixed = dict(zip([n for n in names if n not in plan.launch.constexprs][2:], plan.launch.fixed))
        assert (fixed["rows_ptr"] is None) == (row_offsets is None)
        if size == (60, 90):  # no resize: no filter tables
            assert fixed["idx_ptr"] is None and fixed["w_ptr"] is None


def test_rows_prefetch_only_on_cuda(monkeypatch):
    """The rows pass's L2 prefetch is PTX, which the interpreter cannot run: plans for other devices compile
    without it whatever the tuning says (a prefetch changes no value, so results are the same either way)."""
    shape = (1, 3, 60, 90)
    strides = (3 * 60 * 90, 60 * 90, 90, 1)
    _tune(monkeypatch, rows_prefetch=8)
    assert plans.RowsPass(shape, strides, 56, 14, "pil", torch.device("cpu")).launch.constexprs["PREFETCH"] == 0
    if torch.cuda.is_available():
        assert plans.RowsPass(shape, strides, 56, 14, "pil", torch.device("cuda")).launch.constexprs["PREFETCH"] == 8


@pytest.mark.parametrize("tap_layout", [pytest.param("out-major", marks=SLOW), "tap-major"])
def test_long_filters_use_padded_tap_counts(monkeypatch, tap_layout):
    """Downscales beyond 3.75x (and filters of more than 16 taps) compile for a tap count rounded up to a
    multiple of 16 (zero-weight taps added to the tables); the result must not change. 400 -> 23 is 17.4x:
    71 taps, run as 80; here 200 -> 23 (37 taps, run as 48) in the first pass, 200 -> 56 (17, run as 32) in
    the fused one."""
    from qwen_vis_prep.resample_tables import padded_taps, pil_taps

    _tune(monkeypatch, pass_taps=tap_layout, patch_taps=tap_layout)
    assert pil_taps(400, 23)[0].shape[1] == 71 and padded_taps(71) == 80 and padded_taps(13) == 13
    assert padded_taps(pil_taps(200, 23)[0].shape[1]) == 48 and padded_taps(pil_taps(200, 56)[0].shape[1]) == 32
    x = _img(200, 45, seed=22)
    for mode in ("pil", "float"):
        a = qvp.resize(x, (23, 45), mode=mode, backend="triton")
        b = qvp.resize(x, (23, 45), mode=mode, backend="reference")
        assert torch.equal(a, b)
        a, b = _both(x, _cfg(resize_mode=mode, min_pixels=28 * 28, max_pixels=28 * 28 * 2))  # -> 56x28
        assert torch.equal(a, b)


class _CountingKernel:
    """Stands in for a Triton kernel: counts ``kernel[grid](...)`` launches and runs the real one (its
    signature and name stay visible to ``Launcher``)."""

    def __init__(self, kernel):
        self.kernel, self.grids = kernel, []

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def __getitem__(self, grid):
        self.grids.append(grid)
        return self.kernel[grid]


KERNELS = ("_rows_pass_kernel", "_patch_rows_kernel", "_resample_pass_kernel", "_patchify_kernel")


def count_launches(monkeypatch) -> dict[str, list]:
    """Every Triton kernel the plans launch replaced by a :class:`_CountingKernel` for the test, with fresh
    plan and warm-call caches and the direct launches off (so every launch goes through ``kernel[grid]``, on
    CUDA too); returns the grid list of each, by kernel name."""
    _fresh_caches(monkeypatch)
    monkeypatch.setattr(launcher.Launcher, "enabled", False)  # every launch through kernel[grid], on CUDA too
    counters = {}
    for name in KERNELS:
        counters[name] = _CountingKernel(getattr(plans, name))
        monkeypatch.setattr(plans, name, counters[name])  # plans.py imported the kernels by name
    return {name: c.grids for name, c in counters.items()}


def _ragged_list():
    """Sizes that need every kind of pass (for :func:`_tiny`): both sides resized (width first; vertical
    first in Pillow 13), one side only (either), both up, none at all; plus a strided crop, a channels-last
    view and a gray and an RGBA image (expanded / composited first), and one size twice (a same-size group of
    a ragged list: its rows come from a row table)."""
    g = torch.Generator().manual_seed(50)
    gray = torch.randint(0, 256, (1, 25, 35), generator=g, dtype=torch.uint8).to(DEVICE)
    rgba = torch.randint(0, 256, (4, 31, 23), generator=g, dtype=torch.uint8).to(DEVICE)
    hwc = _img(41, 29, seed=51).permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last strides
    return [_img(31, 65, seed=52), _img(30, 45, seed=53), _img(71, 33, seed=59), _img(28, 28, seed=54),
            _img(28, 47, seed=55), _img(35, 56, seed=56), _img(20, 25, seed=60),
            _img(70, 201, seed=57)[:, 3:60:2, 5:100], hwc, gray, rgba, _img(31, 65, seed=58)]


def _rows_eligible(h: int, w: int, cfg: qvp.VisionPreprocessConfig) -> bool:
    """Whether an ``h x w`` uint8 image goes through the rows pipeline in a fixed-point mode: resized width
    then height (both sides change, not Pillow 13's vertical-first order)."""
    from qwen_vis_prep.sizing import vertical_pass_first

    oh, ow = qvp.smart_resize(h, w, cfg.patch_size * cfg.merge_size, cfg.min_pixels, cfg.max_pixels)
    return ow != w and oh != h and not vertical_pass_first(h, w, oh, ow, cfg)


@pytest.mark.parametrize("config, pipeline", [
    pytest.param(dict(pillow_order="pillow13"), "rows", id="pil-pillow13-rows"),
    pytest.param(dict(pillow_order="pillow13"), "tiles", id="pil-pillow13-tiles", marks=SLOW),
    pytest.param(dict(pillow_order="pillow12", output_dtype=torch.float16), "rows", id="pil-pillow12-fp16-rows",
                 marks=SLOW),
    pytest.param(dict(pillow_order="pillow12", output_dtype=torch.float16), "tiles",
                 id="pil-pillow12-fp16-tiles"),
    pytest.param(dict(resize_mode="torch-uint8"), "rows", id="torch-uint8-rows", marks=SLOW),
    pytest.param(dict(resize_mode="torch-uint8", output_dtype=torch.bfloat16), "tiles", id="torch-uint8-bf16-tiles",
                 marks=SLOW),
    # float arithmetic always takes the tile kernels
    pytest.param(dict(resize_mode="float", output_dtype=torch.bfloat16), "rows", id="float-bf16"),
    pytest.param(dict(preset="qwen3-vl", min_pixels=32 * 32, max_pixels=32 * 32 * 4), "rows", id="qwen3-rows",
                 marks=SLOW),
    pytest.param(dict(preset="qwen3-vl", min_pixels=32 * 32, max_pixels=32 * 32 * 4), "tiles", id="qwen3-tiles",
                 marks=SLOW),
])
def test_ragged_list_of_every_kind_bit_exact(monkeypatch, config, pipeline):
    """A list of many sizes and kinds runs as one group per distinct (shape, dtype, target size): two
    launches per resized group (one without a resize), the same-size pair in one launch with a row table,
    the Pillow width-then-height groups through the rows kernels (``pipeline="rows"``), everything else
    through the tile kernels; the reference backend's bits either way."""
    _tune(monkeypatch, pipeline=pipeline)
    grids = count_launches(monkeypatch)
    images = _ragged_list()
    cfg = _tiny(**config)
    a, b = _both(images, cfg)
    assert torch.equal(a, b)
    shapes = [tuple(i.shape[-2:]) for i in images]
    groups = set(shapes)
    fused = grids["_patchify_kernel"] + grids["_patch_rows_kernel"]
    assert len(fused) == len(groups) < len(images)  # one fused launch per group
    assert sum(g[2] for g in fused) == len(images)  # images ride on grid dim 2
    fixed = cfg.resize_mode in ("pil", "torch-uint8")
    rows = {s for s in groups if pipeline == "rows" and fixed and _rows_eligible(*s, cfg)}
    assert len(grids["_rows_pass_kernel"]) == len(grids["_patch_rows_kernel"]) == len(rows)
    if pipeline == "rows" and fixed:
        assert len(rows) >= 4 and (31, 65) in rows  # the same-size pair is one of them
    assert sum(g[2] for g in grids["_patch_rows_kernel"]) == sum(s in rows for s in shapes)


def test_ragged_float_inputs():
    """Float images in a ragged list: rounded to levels per image in pil mode; float arithmetic in float
    mode."""
    for dtype in (torch.float32, torch.float16):
        images = [_img(29, 47, dtype, seed=60), _img(20, 65, dtype, seed=61), _img(28, 28, dtype, seed=62)]
        for mode in ("pil", "float"):
            a, b = _both(images, _tiny(resize_mode=mode))
            assert torch.equal(a, b)


def test_cached_plans_keep_their_tables_alive():
    """A cached plan (and the warm call recorded with it) points into its filter tables; evicting them from
    the table cache (and reusing their memory) must not change a later call's result."""
    from qwen_vis_prep import resample_tables

    images = [_img(29, 47, seed=80), _img(20, 65, seed=81), _img(35, 50, seed=82)]
    cfg = _tiny()
    first = qvp.preprocess(images, cfg, backend="triton").pixel_values
    resample_tables.DEVICE_TABLES.clear()
    junk = [torch.full((n,), -7, dtype=torch.int32, device=DEVICE) for n in range(1, 400) for _ in range(4)]
    again = qvp.preprocess(images, cfg, backend="triton").pixel_values
    del junk
    assert torch.equal(first, again)
    assert torch.equal(again, qvp.preprocess(images, cfg, backend="reference").pixel_values)


ROWS_CONFIGS = [
    pytest.param(dict(pillow_order="pillow12"), id="fp32"),
    pytest.param(dict(pillow_order="pillow13", output_dtype=torch.bfloat16), id="bf16", marks=SLOW),
    pytest.param(dict(output_dtype=torch.float16), id="fp16", marks=SLOW),
    pytest.param(dict(preset="qwen3-vl", min_pixels=32 * 32, max_pixels=32 * 32 * 6), id="qwen3-patch16", marks=SLOW),
]


@pytest.mark.parametrize("config", ROWS_CONFIGS)
def test_rows_pipeline_bit_exact(monkeypatch, config):
    """pipeline="rows": the horizontal pass writes the patch-packed scratch (every patch row 16-byte
    aligned) and the fused pass reads it back with vector loads. Stacked batches, same-shape lists (row
    tables), channels-last and HWC-strided crops, gray and upscales must give the reference backend's bits, and
    both new kernels must have run (two launches per same-shape group)."""
    _tune(monkeypatch, pipeline="rows")
    grids = count_launches(monkeypatch)
    cfg = _cfg(**{"min_pixels": 28 * 28, "max_pixels": 28 * 28 * 6, **config})
    crop = _img(70, 201, seed=90)[:, 3:60:2, 5:100]  # 29x95
    hwc = _img(55, 83, seed=91).permute(1, 2, 0).contiguous().permute(2, 0, 1)
    gray = _img(25, 87, seed=92)[:1]
    inputs = [torch.stack([_img(29, 87, seed=93), _img(29, 87, seed=94)]),
              [_img(31, 65, seed=95), _img(31, 65, seed=96), crop], hwc, gray]
    for x in inputs:
        a, b = _both(x, cfg)
        assert torch.equal(a, b)
    first, fused = grids["_rows_pass_kernel"], grids["_patch_rows_kernel"]
    assert len(first) == len(fused) >= len(inputs) + 1


def test_rows_pipeline_only_where_it_applies(monkeypatch):
    """The rows pipeline takes Pillow arithmetic with a width-then-height resize; other groups (no resize,
    height only, vertical first, float arithmetic) keep the tile kernels, and the results stay exact."""
    _tune(monkeypatch, pipeline="rows")
    grids = count_launches(monkeypatch)
    cases = [(_img(56, 112, seed=97), _cfg()), (_img(70, 112, seed=98), _cfg()),
             (_img(150, 58, seed=99), _cfg(pillow_order="pillow13")),
             (_img(60, 90, seed=100), _cfg(resize_mode="float"))]
    for x, cfg in cases:
        a, b = _both(x, cfg)
        assert torch.equal(a, b)
    assert grids["_rows_pass_kernel"] == [] and len(grids["_patchify_kernel"]) == len(cases)


def test_rows_pipeline_needs_rows_as_wide_as_the_window(monkeypatch):
    """The rows pass reads each output's filter window unclamped, so it only takes images at least as wide
    as the window (here 4 px wide upscaled to 28: 5 taps). A narrower one goes to the tile kernels, exactly."""
    from qwen_vis_prep.resample_tables import pil_taps

    assert pil_taps(4, 28)[1].shape[1] == 5
    _tune(monkeypatch, pipeline="rows")
    grids = count_launches(monkeypatch)
    narrow, wide = _img(60, 4, seed=101), _img(31, 65, seed=102)
    for x in (narrow, [wide, narrow], [wide, wide[:, :, 1:]]):
        a, b = _both(x, _tiny())
        assert torch.equal(a, b)
    # one launch per wide size (31x65 in each list, 31x64 once); the narrow image never
    assert len(grids["_rows_pass_kernel"]) == 3


def test_named_sizes_cover_both_pass_orders():
    """The sizes above named for it really do take Pillow 13's vertical-first order (and the rest do not)."""
    from qwen_vis_prep.sizing import pillow_vertical_first

    cfg = _cfg()
    for h, w in [(150, 58), (250, 60), (60, 90)]:
        out = qvp.smart_resize(h, w, 28, cfg.min_pixels, cfg.max_pixels)
        assert pillow_vertical_first(h, w, *out, "pillow13") == ((h, w) == (150, 58))


# ------------------------------------------------------------------------------------ warm calls
@pytest.fixture
def warm_hits(monkeypatch):
    """Fresh plans and warm calls (so no earlier test's entries), and a list with one True per call served
    by ``warm.warm_call`` (misses are not listed: before any entry exists the lookup is skipped)."""
    _fresh_caches(monkeypatch)
    hits: list[bool] = []
    real = triton_backend.warm_call

    def spy(*args):
        result = real(*args)
        if result is not None:
            hits.append(True)
        return result

    monkeypatch.setattr(triton_backend, "warm_call", spy)  # what functional.preprocess calls
    return hits


def _warm_inputs():
    """Tensors a warm call takes: each layout and rank, a strided crop, float input, two output dtypes."""
    g = torch.Generator().manual_seed(40)
    batch = torch.randint(0, 256, (2, 3, 29, 47), generator=g, dtype=torch.uint8).to(DEVICE)
    hwc = torch.randint(0, 256, (2, 30, 75, 3), generator=g, dtype=torch.uint8).to(DEVICE)
    yield pytest.param(batch, {}, {}, id="batch-chw")
    yield pytest.param(batch.contiguous(memory_format=torch.channels_last), {}, {}, id="batch-channels-last")
    yield pytest.param(hwc, {"layout": "hwc"}, {}, id="batch-hwc")
    yield pytest.param(hwc[1, 2:27, 5:70], {"layout": "hwc"}, {}, id="image-hwc-crop")
    yield pytest.param(batch[1], {}, {"output_dtype": torch.bfloat16}, id="image-chw-bf16")
    yield pytest.param(batch[:, :, :28, :28], {}, {}, id="no-resize-crop")
    yield pytest.param(batch.float(), {"check_values": False}, {}, id="float-input-pil")
    yield pytest.param(batch.float() / 255, {"check_values": False}, {"resize_mode": "float", "input_range": "0-1"},
                       id="unit-float-input-float-mode")


@pytest.mark.parametrize("x, kw, cfg_kw", list(_warm_inputs()))
def test_warm_calls_repeat_the_full_path(warm_hits, x, kw, cfg_kw):
    """A repeated call with the same tensor metadata runs from its recorded group launches (``warm.warm_call``)
    and gives the reference backend's bits, a fresh output and a fresh ``grid_thw`` every time; the input is
    untouched. The entry lives in its own LRU (``warm.WARM_CALLS``), beside the plans it points to."""
    cfg = _tiny(**cfg_kw)
    before, version = x.clone(), x._version
    ref = qvp.preprocess(x, cfg, backend="reference", **kw)
    first = qvp.preprocess(x, cfg, backend="triton", **kw)
    assert warm_hits == []  # nothing recorded yet: the full path ran and recorded this call
    assert len(warm.WARM_CALLS) == 1 and len(plans.PLANS) == 1  # one group: one plan, one recorded call
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
    flat = torch.randint(0, 256, (3 * 29 * 47 + 1,), generator=torch.Generator().manual_seed(41),
                         dtype=torch.uint8).to(DEVICE)
    aligned, odd = flat[:-1].view(1, 3, 29, 47), flat[1:].view(1, 3, 29, 47)
    calls = [(aligned, _tiny(), {}), (odd, _tiny(), {}), (aligned.transpose(2, 3).contiguous().transpose(2, 3),
                                                        _tiny(), {}),
             (aligned, _tiny(output_dtype=torch.float16), {}), (aligned, _tiny(pillow_order="pillow13"), {}),
             (aligned[:, :, :, :31], _tiny(), {}), (aligned, _tiny(), {"layout": "chw"})]
    for x, cfg, kw in calls:
        ref = qvp.preprocess(x, cfg, backend="reference", **kw).pixel_values
        assert torch.equal(qvp.preprocess(x, cfg, backend="triton", **kw).pixel_values, ref)
    assert warm_hits == []
    for x, cfg, kw in calls:  # every one of them now repeats from its own entry
        ref = qvp.preprocess(x, cfg, backend="reference", **kw).pixel_values
        assert torch.equal(qvp.preprocess(x, cfg, backend="triton", **kw).pixel_values, ref)
    assert warm_hits == [True] * len(calls)
    _tune(monkeypatch, pipeline="tiles" if tuning.TUNING["pipeline"] == "rows" else "rows")
    x, cfg, _ = calls[0]
    assert torch.equal(qvp.preprocess(x, cfg, backend="triton").pixel_values,
                       qvp.preprocess(x, cfg, backend="reference").pixel_values)
    assert len(warm_hits) == len(calls)  # new launch shapes: a new plan, not the old entry


def test_warm_calls_keep_value_checks_and_conversions(warm_hits):
    """Calls whose checks or conversions look at the pixels are never repeated from metadata alone: a
    value check still rejects a bad image after good ones, gray and RGBA still convert."""
    good = _img(29, 47, dtype=torch.float32, seed=42)[None]
    bad = good.clone()
    bad[0, 1, 5, 7] = float("nan")
    for _ in range(2):
        qvp.preprocess(good, _tiny(), backend="triton", check_values=True)
    with pytest.raises(ValueError, match="finite"):
        qvp.preprocess(bad, _tiny(), backend="triton", check_values=True)
    assert not any(warm_hits)
    g = torch.Generator().manual_seed(43)
    for c in (1, 4):
        x = torch.randint(0, 256, (2, c, 29, 47), generator=g, dtype=torch.uint8).to(DEVICE)
        for _ in range(2):
            a, b = _both(x, _tiny())
            assert torch.equal(a, b)
    assert not any(warm_hits)


def test_warm_calls_never_drop_gradients(warm_hits):
    """An entry recorded without gradients does not serve a call that needs them: ``backend="triton"``
    still refuses it, ``"auto"`` (Triton only on CUDA) still takes the differentiable torch path."""
    cfg = _tiny(resize_mode="float")
    x = _img(29, 47, dtype=torch.float32, seed=44)[None].requires_grad_()
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
    x = _img(29, 47, seed=45)[None]
    cfg, kw = _tiny(), {}
    if form != "uint8":
        x, cfg, kw = x.float() / 255, _tiny(resize_mode="float", input_range="0-1"), {"check_values": False}
    ref = qvp.preprocess(x, cfg, backend="reference", **kw).pixel_values
    qvp.preprocess(x, cfg, backend="triton", **kw)

    def unaligned(shape, dtype, device):
        n = shape[0] * shape[1]
        return torch.empty(n + 1, dtype=dtype, device=device)[1:].view(shape)

    monkeypatch.setattr(warm, "_empty_out", unaligned)
    got = qvp.preprocess(x, cfg, backend="triton", **kw).pixel_values
    assert warm_hits == [True] and got.data_ptr() % 16 != 0
    assert torch.equal(got, ref)


def _ragged_tensors():
    """A ragged list with every kind of group: a same-size pair in one buffer (read in place), a same-size
    pair in separate buffers (stacked), and sizes of their own (one not resized)."""
    g = torch.Generator().manual_seed(48)
    buf = torch.randint(0, 256, (2, 3, 29, 47), generator=g, dtype=torch.uint8).to(DEVICE)
    pair = [torch.randint(0, 256, (3, 20, 25), generator=g, dtype=torch.uint8).to(DEVICE) for _ in range(2)]
    alone = [torch.randint(0, 256, (3, 66, 16), generator=g, dtype=torch.uint8).to(DEVICE),
             torch.randint(0, 256, (3, 28, 56), generator=g, dtype=torch.uint8).to(DEVICE)]
    return [buf[0], pair[0], alone[0], buf[1], pair[1], alone[1]]


@pytest.mark.parametrize("form", ["chw", pytest.param("hwc", marks=SLOW), "float",
                                  pytest.param("bf16-out", marks=SLOW)])
def test_warm_calls_repeat_lists(warm_hits, form):
    """A list of image tensors with the same metadata is repeated from its recorded group launches too."""
    images, kw, cfg = _ragged_tensors(), {}, _tiny()
    if form == "hwc":
        images, kw = [t.permute(1, 2, 0) for t in images], {"layout": "hwc"}
    elif form == "float":
        images, kw = [t.float() for t in images], {"check_values": False}
    elif form == "bf16-out":
        cfg = _tiny(output_dtype=torch.bfloat16)
    ref = qvp.preprocess(images, cfg, backend="reference", **kw)
    outs = [qvp.preprocess(images, cfg, backend="triton", **kw) for _ in range(2)]
    assert warm_hits == [True]
    for out in outs:
        assert torch.equal(out.pixel_values, ref.pixel_values) and torch.equal(out.grid_thw, ref.grid_thw)


def test_warm_list_whose_group_source_changes(warm_hits):
    """Same per-image metadata, but the same-size pair now lies in two buffers: the recorded in-place plan
    does not fit the stacked copy, so that group takes the regular launch path; same bits."""
    g = torch.Generator().manual_seed(49)
    one = torch.randint(0, 256, (2, 3, 29, 50), generator=g, dtype=torch.uint8).to(DEVICE)[..., :47]
    two = [torch.randint(0, 256, (2, 3, 29, 50), generator=g, dtype=torch.uint8).to(DEVICE)[..., :47]
           for _ in range(2)]
    cfg = _tiny()
    together, apart = [one[0], one[1]], [two[0][0], two[1][1]]
    assert plans.group_source(together).data_ptr() == one.data_ptr()
    assert plans.group_source(apart).stride() != plans.group_source(together).stride()
    assert warm.warm_key(together, cfg, "triton", "auto", None) == warm.warm_key(apart, cfg, "triton", "auto", None)
    for images in (together, apart, together):
        a, b = _both(images, cfg)
        assert torch.equal(a, b)
    assert warm_hits == [True, True]


def test_lists_not_repeated_from_metadata(warm_hits):
    """Lists with a non-tensor or a gray image are never served from an entry (their conversions look at more
    than the metadata)."""
    images = _ragged_tensors()
    gray = [images[0], images[2][:1]]
    with_numpy = [images[0], images[2].permute(1, 2, 0).cpu().numpy()]
    lists = [gray, with_numpy]
    if DEVICE.type == "cuda":  # a numpy array is host memory: it cannot join a list of CUDA tensors
        with pytest.raises(ValueError, match="one device, got cpu after cuda"):
            qvp.preprocess(with_numpy, _tiny(), backend="triton")
        lists = [gray]
    for x in lists:
        for _ in range(2):
            a, b = _both(x, _tiny())
            assert torch.equal(a, b)
    assert warm_hits == [] and len(warm.WARM_CALLS) == 0


def test_warm_lists_never_drop_gradients(warm_hits):
    cfg = _tiny(resize_mode="float")
    images = [_img(29, 47, dtype=torch.float32, seed=50), _img(20, 25, dtype=torch.float32, seed=51)]
    images[1].requires_grad_()
    with torch.no_grad():
        for _ in range(2):
            qvp.preprocess(images, cfg, backend="triton", check_values=False)
    assert warm_hits == [True]
    with pytest.raises(ValueError, match="backward"):
        qvp.preprocess(images, cfg, backend="triton", check_values=False)
    assert warm_hits == [True]


# ------------------------------------------------------------------------------------------------ clips

def _clips(*shapes, seed=0, dtype=torch.uint8):
    g = torch.Generator().manual_seed(seed)
    out = [torch.randint(0, 256, s, generator=g, dtype=torch.uint8) for s in shapes]
    return [c.to(dtype).to(DEVICE) for c in out]


def _both_videos(x, video_config, config=None):
    config = config or _cfg()
    a, ga = qvp.preprocess_videos(x, config, video_config, backend="triton")
    b, gb = qvp.preprocess_videos(x, config, video_config, backend="reference")
    assert torch.equal(ga, gb)
    return a, b


def _video_cfg(mode="torch-uint8", preset="qwen2-vl", **kw):
    f = 32 if preset == "qwen3-vl" else 28
    return qvp.VideoConfig.from_preset(preset, **{"min_pixels": f * f * 2, "max_pixels": f * f * 4,
                                                  "resize_mode": mode, **kw})


@pytest.mark.parametrize("mode, pipeline", [
    pytest.param("torch-uint8", "rows", marks=SLOW),
    pytest.param("torch-uint8", "tiles", marks=SLOW),
    pytest.param("pil", "rows", marks=SLOW),
    pytest.param("float", "rows", marks=SLOW),
])
def test_clips_bit_exact_two_launches_per_clip(monkeypatch, mode, pipeline):
    """Each clip is one group: its frames write their own temporal slots (odd counts repeat the last frame
    into the padding slot), two launches per clip however many frames, and the reference's bits; a stacked
    batch of clips is one group too."""
    _tune(monkeypatch, pipeline=pipeline)
    grids = count_launches(monkeypatch)
    clips = _clips((3, 3, 40, 60), (2, 3, 30, 64), (1, 3, 28, 28))
    a, b = _both_videos(clips, _video_cfg(mode))
    assert torch.equal(a, b)
    fused = grids["_patchify_kernel"] + grids["_patch_rows_kernel"]
    assert sorted(g[2] for g in fused) == [1, 2, 3]  # one fused launch per clip, its frames on grid dim 2
    if mode != "pil":  # (Pillow 13 resizes one of these clips vertically first: tile kernels)
        # every clip here resizes both sides, width first in torch-uint8 mode: the rows pipeline takes them
        assert len(grids["_patch_rows_kernel"]) == (3 if pipeline == "rows" and mode != "float" else 0)
    a, b = _both_videos(torch.stack([clips[1], clips[1].flip(-1)]), _video_cfg(mode))
    assert torch.equal(a, b)
    assert max(g[2] for g in grids["_patchify_kernel"] + grids["_patch_rows_kernel"]) == 4  # 2 clips x 2 frames


@SLOW
def test_clips_float_frames_dtypes_and_patch16():
    """Float frames (resized, and kept at their size), bf16 output, Qwen3-VL's patch 16 and odd counts."""
    x = _clips((3, 3, 40, 60), seed=1, dtype=torch.float32)
    for mode in ("torch-uint8", "float"):
        a, b = _both_videos(x, _video_cfg(mode))
        assert torch.equal(a, b)
    kept = _clips((3, 3, 56, 56), seed=2, dtype=torch.float16)
    a, b = _both_videos(kept, _video_cfg(), _cfg(do_resize=False))
    assert torch.equal(a, b)
    a, b = _both_videos(_clips((3, 3, 45, 70), seed=3), _video_cfg(preset="qwen3-vl", sizing="qwen3-vl"),
                        _cfg(preset="qwen3-vl", output_dtype=torch.bfloat16))
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)


@SLOW
def test_clips_split_over_grids_at_clip_boundaries(monkeypatch):
    """More frames than one grid takes: a stacked batch is split at whole clips, each part placed after the
    clips before it."""
    monkeypatch.setattr(plans, "MAX_GRID_YZ", 7)
    x = torch.stack(_clips((3, 3, 30, 40), (3, 3, 30, 40), (3, 3, 30, 40), seed=4))
    a, b = _both_videos(x, _video_cfg())
    assert torch.equal(a, b)
    monkeypatch.setattr(plans, "MAX_GRID_YZ", 2)
    with pytest.raises(ValueError, match="clips of at most 2 frames, got 3"):
        qvp.preprocess_videos(x, _cfg(), _video_cfg(), backend="triton")
