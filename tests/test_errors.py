"""Bad input gets a clear error, and nothing is lost (issue #6).

Every input error is raised before a backend is chosen, so each case runs once per entry point
(``preprocess`` and the module, on the CPU and on CUDA): it must raise ``TypeError`` or ``ValueError`` whose
message names both what was expected and what came, or be handled the documented way (docs/reliability.md).
Every backend that can run here (``DEVICE_BACKENDS``) passes the shared invariants (``conftest.check_backend``):
inputs never modified in place, outputs never aliasing them, batched equal to one by one, CPU equal to CUDA.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import qwen_vis_prep as qvp
from qwen_vis_prep import sizing
from qwen_vis_prep import backends

from conftest import check_backend

HAS_CUDA = torch.cuda.is_available()
NEEDS_CUDA = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]


def triton_runs(device: str) -> bool:
    """Whether the Triton backend can run on ``device`` here (CUDA, or the CPU under TRITON_INTERPRET=1)."""
    try:
        return bool(backends.get("triton").can_run(torch.device(device))[0])
    except Exception:  # a half-written backend must not break collection
        return False


def device_backends() -> list:
    """``(device, backend)`` pairs: every backend on every device where it can run (the others skip)."""
    no_triton = pytest.mark.skipif(not triton_runs("cuda"), reason="the Triton backend cannot run here")
    params = [pytest.param("cpu", "reference", id="cpu-reference"), pytest.param("cpu", "native", id="cpu-native"),
              pytest.param("cpu", "pillow", id="cpu-pillow"), pytest.param("cpu", "auto", id="cpu-auto")]
    if triton_runs("cpu"):
        params.append(pytest.param("cpu", "triton", id="cpu-triton"))
    return params + [pytest.param("cuda", "reference", marks=NEEDS_CUDA, id="cuda-reference"),
                     pytest.param("cuda", "auto", marks=NEEDS_CUDA, id="cuda-auto"),
                     pytest.param("cuda", "triton", marks=[*NEEDS_CUDA, no_triton], id="cuda-triton")]


DEVICE_BACKENDS = device_backends()
#: Where an input error is checked: each entry point on each device (the errors come before any backend).
ENTRY_POINTS = [pytest.param("cpu", "preprocess", id="cpu-preprocess"), pytest.param("cpu", "module", id="cpu-module"),
                pytest.param("cuda", "preprocess", marks=NEEDS_CUDA, id="cuda-preprocess"),
                pytest.param("cuda", "module", marks=NEEDS_CUDA, id="cuda-module")]


def _u8(*shape, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(device)


def _full(value, *shape, dtype=torch.float32, device="cpu"):
    return torch.full(shape, value, dtype=dtype, device=device)


def _raises(exc, fragments, fn):
    """``fn()`` raises ``exc`` and the message holds every fragment (what was expected, what came)."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    missing = [f for f in fragments if f not in msg]
    assert not missing, f"message {msg!r} lacks {missing}"
    return msg


# ---------------------------------------------------------------------------------------------- input errors
# (id, make(device) -> images, preprocess kwargs, exception, fragments the message must hold)
INPUT_CASES = [
    # wrong ndim
    ("ndim-1", lambda d: _u8(10, device=d), {}, ValueError, ["expected a tensor [H, W]", "got 1 dims", "(10,)"]),
    ("ndim-0", lambda d: torch.tensor(1.0, device=d), {}, ValueError, ["batch [B, C, H, W]", "got 0 dims"]),
    ("ndim-5", lambda d: _u8(1, 2, 3, 8, 8, device=d), {}, ValueError, ["batch [B, C, H, W]", "got 5 dims"]),
    ("ndim-1-in-list", lambda d: [_u8(3, 8, 8, device=d), _u8(8, device=d)], {}, ValueError,
     ["images[1]", "a single image", "got 1 dims"]),
    ("ndim-numpy-4", lambda d: np.zeros((2, 8, 8, 3), np.uint8), {}, ValueError,
     ["a numpy image [H, W] or [H, W, C]", "got 4 dims"]),
    # channel counts other than 1/3/4
    ("channels-2", lambda d: _u8(2, 8, 8, device=d), {}, ValueError, ["1, 3 or 4 channels", "(2, 8, 8)"]),
    ("channels-5", lambda d: _u8(5, 8, 8, device=d), {}, ValueError, ["1, 3 or 4 channels", "(5, 8, 8)"]),
    ("channels-0", lambda d: _u8(0, 8, 8, device=d), {}, ValueError, ["1, 3 or 4 channels", "(0, 8, 8)"]),
    ("channels-2-batch", lambda d: _u8(2, 2, 8, 8, device=d), {}, ValueError,
     ["C in (1, 3, 4)", "(2, 2, 8, 8)"]),
    ("channels-5-hwc", lambda d: _u8(8, 8, 5, device=d), {"layout": "hwc"}, ValueError,
     ["last dim to be 1, 3 or 4 channels", "(8, 8, 5)"]),
    ("channels-2-numpy", lambda d: np.zeros((8, 8, 2), np.uint8), {}, ValueError,
     ["last dim to be 1, 3 or 4 channels", "(8, 8, 2)"]),
    # channels-last where channels-first was declared, and the reverse (when the shape tells them apart)
    ("hwc-given-auto", lambda d: _u8(20, 30, 3, device=d), {}, ValueError,
     ["first dim to be 1, 3 or 4 channels", "(20, 30, 3)", "looks channels-last", "layout='hwc'"]),
    ("hwc-given-chw", lambda d: _u8(20, 30, 3, device=d), {"layout": "chw"}, ValueError,
     ["(20, 30, 3)", "looks channels-last"]),
    ("chw-given-hwc", lambda d: _u8(3, 20, 30, device=d), {"layout": "hwc"}, ValueError,
     ["last dim to be 1, 3 or 4 channels", "(3, 20, 30)", "looks channels-first", "layout='chw'"]),
    ("bhwc-given-bchw", lambda d: _u8(2, 20, 30, 3, device=d), {}, ValueError,
     ["[B, C, H, W]", "(2, 20, 30, 3)", "looks channels-last"]),
    ("bchw-given-bhwc", lambda d: _u8(2, 3, 20, 30, device=d), {"layout": "hwc"}, ValueError,
     ["[B, H, W, C]", "(2, 3, 20, 30)", "looks channels-first"]),
    ("numpy-chw-given-hwc", lambda d: np.zeros((3, 20, 30), np.uint8), {}, ValueError,
     ["(3, 20, 30)", "looks channels-first"]),
    ("bad-layout", lambda d: _u8(3, 8, 8, device=d), {"layout": "nchw"}, ValueError,
     ["'auto', 'chw' or 'hwc'", "'nchw'"]),
    # NaN / Inf (checked by default on the CPU; opt-in on CUDA, see test_nan_inf_check_is_opt_in_on_cuda)
    ("nan-float32", lambda d: _full(math.nan, 3, 8, 8, device=d), {"check_values": True}, ValueError,
     ["expected finite", "NaN or Inf", "min=nan"]),
    ("inf-float16", lambda d: _full(math.inf, 3, 8, 8, dtype=torch.float16, device=d), {"check_values": True},
     ValueError, ["expected finite", "max=inf"]),
    ("neg-inf-bfloat16", lambda d: _full(-math.inf, 3, 8, 8, dtype=torch.bfloat16, device=d),
     {"check_values": True}, ValueError, ["expected finite", "min=-inf"]),
    ("nan-float64-batch", lambda d: _full(math.nan, 2, 3, 8, 8, dtype=torch.float64, device=d),
     {"check_values": True}, ValueError, ["expected finite", "NaN or Inf"]),
    ("nan-in-list", lambda d: [_full(1.0, 3, 8, 8, device=d), _full(math.nan, 3, 8, 8, device=d)],
     {"check_values": True}, ValueError, ["images[1]", "expected finite"]),
    # values outside the documented range of float inputs
    ("range-above-255", lambda d: _full(255.5, 3, 8, 8, device=d), {"check_values": True}, ValueError,
     ["must lie in [0, 255]", "input_range='0-255'", "255.5"]),
    ("range-negative", lambda d: _full(-1.0, 3, 8, 8, device=d), {"check_values": True}, ValueError,
     ["must lie in [0, 255]", "-1"]),
    ("range-above-1", lambda d: _full(1.5, 3, 8, 8, device=d),
     {"check_values": True, "config": qvp.VisionPreprocessConfig(input_range="0-1")}, ValueError,
     ["must lie in [0, 1]", "input_range='0-1'", "1.5"]),
    # zero-sized images, empty containers
    ("zero-height", lambda d: _u8(3, 0, 8, device=d), {}, ValueError, ["non-empty image", "height=0"]),
    ("zero-width", lambda d: _u8(3, 8, 0, device=d), {}, ValueError, ["non-empty image", "width=0"]),
    ("zero-batch", lambda d: _u8(0, 3, 8, 8, device=d), {}, ValueError, ["at least one image", "batch of 0"]),
    ("zero-in-batch", lambda d: _u8(2, 3, 0, 8, device=d), {}, ValueError, ["non-empty image", "height=0"]),
    ("zero-in-list", lambda d: [_u8(3, 8, 8, device=d), _u8(3, 8, 0, device=d)], {}, ValueError,
     ["images[1]", "width=0"]),
    ("zero-numpy", lambda d: np.zeros((0, 0, 3), np.uint8), {}, ValueError, ["non-empty image", "height=0"]),
    ("empty-list", lambda d: [], {}, ValueError, ["at least one image", "empty list"]),
    ("empty-tuple", lambda d: (), {}, ValueError, ["at least one image", "empty"]),
    # aspect ratio over 200
    ("aspect-1x201", lambda d: _u8(3, 1, 201, device=d), {}, ValueError,
     ["aspect ratio must be at most 200", "got 201", "height 1 and width 201"]),
    ("aspect-402x2", lambda d: _u8(3, 402, 2, device=d), {}, ValueError, ["at most 200", "got 201"]),
    ("aspect-in-list", lambda d: [_u8(3, 8, 8, device=d), _u8(3, 2, 401, device=d)], {}, ValueError,
     ["images[1]", "at most 200", "200.5"]),
    # do_resize=False needs sides that are multiples of the factor
    ("no-resize-odd-size", lambda d: _u8(3, 30, 56, device=d),
     {"config": qvp.VisionPreprocessConfig(do_resize=False)}, ValueError,
     ["multiples of patch_size*merge_size=28", "height=30"]),
    ("no-convert-rgb-gray", lambda d: _u8(1, 28, 28, device=d),
     {"config": qvp.VisionPreprocessConfig(do_convert_rgb=False)}, ValueError,
     ["do_convert_rgb=False needs 3 channels", "got 1"]),
    # mixed kinds: a clip [T, C, H, W] inside a list of images
    ("clip-in-image-list", lambda d: [_u8(3, 8, 8, device=d), _u8(4, 3, 8, 8, device=d)], {}, ValueError,
     ["images[1]", "a single image", "got 4 dims", "not inside a list"]),
    # mixed devices ("meta" stands in for a second device where there is no GPU)
    ("mixed-devices-meta", lambda d: [_u8(3, 8, 8, device=d), torch.empty(3, 8, 8, dtype=torch.uint8,
                                                                           device="meta")],
     {}, ValueError, ["images[1]", "all images must be on one device", "got meta after"]),
]

BAD_DTYPES = [torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.complex64, torch.uint16,
              torch.uint32]
INPUT_CASES += [(f"dtype-{str(dt)[6:]}", (lambda dt: lambda d: torch.zeros(3, 8, 8, dtype=dt, device=d))(dt), {},
                 TypeError, ["expected dtype uint8, float32, float16, bfloat16 or float64", f"got {dt}"])
                for dt in BAD_DTYPES]
INPUT_CASES += [(f"dtype-{str(dt)[6:]}-batch", (lambda dt: lambda d: torch.zeros(2, 3, 8, 8, dtype=dt,
                                                                                  device=d))(dt),
                 {}, TypeError, ["expected dtype uint8", f"got {dt}"]) for dt in (torch.bool, torch.int32)]
INPUT_CASES += [(f"dtype-numpy-{np.dtype(dt).name}", (lambda dt: lambda d: np.zeros((8, 8, 3), dtype=dt))(dt), {},
                 TypeError, ["expected a uint8 or float numpy array", f"got dtype {np.dtype(dt)}"])
                for dt in (np.bool_, np.int8, np.int16, np.int32, np.uint16, np.complex64, np.object_)]

GARBAGE = [None, "image.png", 3, 2.5, {}, {"pixel_values": 1}, b"\x89PNG", object(), {1, 2}, [[0, 1]],
           np.array(["a", "b"])]
INPUT_CASES += [(f"garbage-in-list-{type(g).__name__}", (lambda g: lambda d: [_u8(3, 8, 8, device=d), g])(g), {},
                 TypeError, ["images[1]", "expected a torch.Tensor, numpy.ndarray or PIL.Image", "got "])
                for g in GARBAGE if not isinstance(g, np.ndarray)]
INPUT_CASES += [(f"garbage-{type(g).__name__}", (lambda g: lambda d: g)(g), {}, TypeError, ["expected ", "got "])
                for g in GARBAGE if not isinstance(g, (list, tuple))]
INPUT_CASES += [("garbage-numpy-str-in-list", lambda d: [_u8(3, 8, 8, device=d), np.array(["a"])], {}, TypeError,
                 ["images[1]", "expected a uint8 or float numpy array", "got dtype <U1"])]


@pytest.mark.parametrize("device,entry", ENTRY_POINTS)
@pytest.mark.parametrize("make,kwargs,exc,fragments",
                         [pytest.param(*c[1:], id=c[0]) for c in INPUT_CASES])
def test_bad_input_raises_clear_error(make, kwargs, exc, fragments, device, entry):
    kwargs = dict(kwargs)
    config = kwargs.pop("config", None)
    if entry == "preprocess":
        _raises(exc, fragments, lambda: qvp.preprocess(make(device), config, **kwargs))
    else:
        prep = qvp.QwenVisionPreprocessor(config=config) if config is not None else qvp.QwenVisionPreprocessor()
        images = make(device)
        if images is None:  # the module's forward takes images=None to mean "videos only"
            exc, fragments = ValueError, ["pass images=..., videos=... or both", "got neither"]
        _raises(exc, fragments, lambda: prep(images, **kwargs))


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_module_raises_the_same_errors(device, backend):
    prep = qvp.QwenVisionPreprocessor("qwen2-vl", backend=backend)
    _raises(ValueError, ["looks channels-last"], lambda: prep(_u8(20, 30, 3, device=device)))
    _raises(TypeError, ["expected dtype uint8", "torch.int32"],
            lambda: prep(torch.zeros(3, 8, 8, dtype=torch.int32, device=device)))
    _raises(ValueError, ["expected finite"], lambda: prep(_full(math.nan, 3, 8, 8, device=device),
                                                          check_values=True))


@pytest.mark.parametrize("value", [math.nan, math.inf, 300.0, -1.0], ids=["nan", "inf", "300", "neg"])
def test_value_check_is_on_by_default_on_cpu(value):
    x = _full(value, 3, 8, 8)
    with pytest.raises(ValueError):
        qvp.preprocess(x)
    # check_values=False skips it (documented: the output is then unspecified, but it is produced)
    out = qvp.preprocess(x, check_values=False)
    assert out.pixel_values.shape == (16, 1176)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_nan_inf_check_is_opt_in_on_cuda(backend):
    x = _full(math.nan, 3, 28, 28, device="cuda")
    out = qvp.preprocess(x, backend=backend)  # no sync by default: nothing is checked
    # 28x28 is below min_pixels (56*56): it is resized up to 56x56, 4x4 patches
    assert out.pixel_values.is_cuda and out.pixel_values.shape == (16, 1176)
    _raises(ValueError, ["expected finite", "NaN or Inf"],
            lambda: qvp.preprocess(x, backend=backend, check_values=True))
    _raises(ValueError, ["must lie in [0, 255]"],
            lambda: qvp.preprocess(_full(256.0, 3, 28, 28, device="cuda"), backend=backend, check_values=True))


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("order", ["cpu-cuda", "cuda-cpu"])
def test_mixed_cpu_and_cuda_in_one_list(order):
    a, b = _u8(3, 8, 8), _u8(3, 8, 8, device="cuda")
    images = [a, b] if order == "cpu-cuda" else [b, a]
    _raises(ValueError, ["images[1]", "all images must be on one device", "got "], lambda: qvp.preprocess(images))


def test_mixed_image_and_video_kinds():
    video = pytest.importorskip("qwen_vis_prep.video", reason="qwen_vis_prep.video is not written yet")
    fn = getattr(video, "preprocess_videos", None)
    if fn is None:
        pytest.skip("qwen_vis_prep.video has no preprocess_videos yet")
    clip, image = _u8(4, 3, 56, 56), _u8(3, 56, 56)
    # an image among clips: a clip needs 4 dims
    _raises(ValueError, ["videos[1]", "4 dims", "got 3 dims"], lambda: fn([clip, image]))
    # a clip among images
    _raises(ValueError, ["images[1]", "got 4 dims"], lambda: qvp.preprocess([image, clip]))
    # garbage among clips
    with pytest.raises((TypeError, ValueError)) as info:
        fn([clip, "clip.mp4"])
    assert "clip" in str(info.value)


# ---------------------------------------------------------------------------------------------- config errors
CONFIG_CASES = [
    ("patch-size-0", dict(patch_size=0), ValueError, ["patch_size must be positive", "got 0"]),
    ("merge-size-neg", dict(merge_size=-2), ValueError, ["merge_size must be positive", "got -2"]),
    ("temporal-0", dict(temporal_patch_size=0), ValueError, ["temporal_patch_size must be positive"]),
    ("min-pixels-0", dict(min_pixels=0), ValueError, ["min_pixels must be positive", "got 0"]),
    ("max-pixels-neg", dict(max_pixels=-1), ValueError, ["max_pixels must be positive", "got -1"]),
    ("patch-size-float", dict(patch_size=14.0), TypeError, ["patch_size must be an int", "float"]),
    ("patch-size-bool", dict(patch_size=True), TypeError, ["patch_size must be an int", "bool"]),
    ("min-gt-max", dict(min_pixels=5000, max_pixels=4000), ValueError,
     ["min_pixels must be <= max_pixels", "min_pixels=5000 > max_pixels=4000"]),
    ("max-below-factor-sq", dict(min_pixels=100, max_pixels=700), ValueError,
     ["max_pixels must be at least (patch_size * merge_size)**2 = ", "got max_pixels=700"]),
    ("mean-len-2", dict(image_mean=(0.5, 0.5)), ValueError, ["image_mean must have 3 values", "got 2"]),
    ("std-len-4", dict(image_std=(0.5,) * 4), ValueError, ["image_std must have 3 values", "got 4"]),
    ("std-zero", dict(image_std=(0.5, 0.0, 0.5)), ValueError, ["image_std must be non-zero", "0.0"]),
    ("std-scalar-zero", dict(image_std=0), ValueError, ["image_std must be non-zero"]),
    ("std-str", dict(image_std="0.5"), TypeError, ["image_std must be a float or a sequence of 3 floats", "'0.5'"]),
    ("mean-none", dict(image_mean=None), TypeError, ["image_mean must be a float or a sequence", "None"]),
    ("mean-nan", dict(image_mean=(math.nan, 0.5, 0.5)), ValueError, ["image_mean must be finite", "nan"]),
    ("rescale-0", dict(rescale_factor=0), ValueError, ["rescale_factor must be a positive finite number", "0"]),
    ("rescale-inf", dict(rescale_factor=math.inf), ValueError, ["rescale_factor must be a positive", "inf"]),
    ("resize-mode", dict(resize_mode="bilinear"), ValueError, ["resize_mode must be one of", "'bilinear'"]),
    ("pillow-order", dict(pillow_order="pillow9"), ValueError, ["pillow_order must be one of", "'pillow9'"]),
    ("input-range", dict(input_range="0-65535"), ValueError, ["input_range must be one of", "'0-65535'"]),
    ("output-dtype", dict(output_dtype=torch.int8), ValueError, ["output_dtype must be", "torch.int8"]),
    ("output-dtype-str", dict(output_dtype="float64"), ValueError, ["output_dtype must be one of", "'float64'"]),
    ("flag-not-bool", dict(do_resize="yes"), TypeError, ["do_resize must be a bool", "'yes'"]),
    ("unknown-field", dict(pixels=3), TypeError, ["unknown config field(s) ['pixels']", "expected some of"]),
]


@pytest.mark.parametrize("entry", ["from_preset", "module", "replace"])
@pytest.mark.parametrize("kwargs,exc,fragments", [pytest.param(*c[1:], id=c[0]) for c in CONFIG_CASES])
def test_bad_config_raises_clear_error(kwargs, exc, fragments, entry):
    make = {"from_preset": lambda: qvp.VisionPreprocessConfig.from_preset("qwen2-vl", **kwargs),
            "module": lambda: qvp.QwenVisionPreprocessor("qwen2-vl", **kwargs),
            "replace": lambda: qvp.PRESETS["qwen3-vl"].replace(**kwargs)}[entry]
    _raises(exc, fragments, make)


def test_bad_config_arguments():
    _raises(ValueError, ["unknown preset 'qwen4-vl'", "expected one of"],
            lambda: qvp.VisionPreprocessConfig.from_preset("qwen4-vl"))
    _raises(TypeError, ["config must be a VisionPreprocessConfig or a preset name", "got dict"],
            lambda: qvp.preprocess(_u8(3, 8, 8), {"patch_size": 14}))
    _raises(ValueError, ["either a preset name or config=..., not both"],
            lambda: qvp.QwenVisionPreprocessor("qwen2-vl", config=qvp.PRESETS["qwen2-vl"]))


# ---------------------------------------------------------------------------------------------- backends
def test_unknown_backend_raises():
    _raises(ValueError, ["backend must be one of", "'reference', 'native', 'pillow', 'aten', 'triton'", "got 'cuda'"],
            lambda: qvp.preprocess(_u8(3, 8, 8), backend="cuda"))
    _raises(ValueError, ["backend must be one of", "got 'numba'"],
            lambda: qvp.QwenVisionPreprocessor(backend="numba"))
    _raises(ValueError, ["backend='pillow' cannot run here", "CPU tensors"],
            lambda: qvp.preprocess(_u8(3, 8, 8).to("meta"), backend="pillow"))
    _raises(ValueError, ["backend must be", "got 'numpy'"],
            lambda: qvp.resize(_u8(3, 8, 8), (4, 4), backend="numpy"))


def test_requested_backend_that_cannot_run_raises(monkeypatch):
    monkeypatch.setattr(backends.get("triton"), "can_run", lambda device: (False, "no GPU in this test"))
    x = _u8(3, 30, 40)
    _raises(ValueError, ["backend='triton' cannot run here", "no GPU in this test"],
            lambda: qvp.preprocess(x, backend="triton"))
    _raises(ValueError, ["backend='triton' cannot run here"], lambda: qvp.resize(x, (20, 20), backend="triton"))
    _raises(ValueError, ["backend='triton' cannot run here"],
            lambda: qvp.QwenVisionPreprocessor(backend="triton")(x))
    # "auto" falls back to torch quietly
    assert torch.equal(qvp.preprocess(x, backend="auto").pixel_values, qvp.preprocess(x, backend="torch").pixel_values)


def test_triton_without_backward_raises_for_inputs_that_require_grad(monkeypatch):
    monkeypatch.setattr(backends.get("triton"), "can_run", lambda device: (True, ""))  # checked before any launch
    x = torch.rand(3, 30, 40, requires_grad=True)
    _raises(ValueError, ["backend='triton' has no backward pass", "backend='reference'"],
            lambda: qvp.preprocess(x, config=qvp.VisionPreprocessConfig(resize_mode="float"), backend="triton"))


def test_gradient_through_pil_mode_raises():
    x = torch.rand(3, 30, 40, requires_grad=True) * 255
    _raises(ValueError, ["gradients flow only through resize_mode='float'", "resize_mode='pil'"],
            lambda: qvp.preprocess(x, backend="torch"))


def test_float64_where_supported():
    """The torch backend takes float64: integer-valued float64 gives the uint8 result bit for bit."""
    x = _u8(3, 45, 61)
    ref = qvp.preprocess(x, backend="torch").pixel_values
    assert torch.equal(qvp.preprocess(x.to(torch.float64), backend="torch").pixel_values, ref)


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.skipif(
    not triton_runs("cpu"), reason="Triton does not run on the CPU here (TRITON_INTERPRET=1 to try)")),
    pytest.param("cuda", marks=[*NEEDS_CUDA, pytest.mark.skipif(not triton_runs("cuda"),
                                                               reason="the Triton backend cannot run here")])])
def test_float64_on_triton_raises_or_matches_torch(device):
    x = torch.rand(3, 56, 84, dtype=torch.float64, device=device) * 255  # no resize: float64 reaches the kernel
    cfg = qvp.VisionPreprocessConfig(resize_mode="float")
    try:
        out = qvp.preprocess(x, cfg, backend="triton").pixel_values
    except (TypeError, ValueError) as e:
        assert "float64" in str(e)
        return
    ref = qvp.preprocess(x, cfg, backend="torch").pixel_values
    torch.testing.assert_close(out, ref)


# ---------------------------------------------------------------------------------------------- handled cases
@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (27, 27), (13, 100), (1, 200), (200, 1), (2, 400)])
@pytest.mark.parametrize("preset", ["qwen2-vl", "qwen3-vl"])
def test_images_smaller_than_the_factor_are_upscaled_like_hf(h, w, preset):
    """transformers 5.x smart_resize takes them (the min_pixels branch rounds up); so do we."""
    hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    cfg = qvp.PRESETS[preset]
    th, tw = hf.smart_resize(h, w, factor=cfg.factor, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    out = qvp.preprocess(_u8(3, h, w), cfg)
    assert out.grid_thw.tolist() == [[1, th // cfg.patch_size, tw // cfg.patch_size]]
    assert out.pixel_values.shape == (th * tw // cfg.patch_size ** 2, cfg.patch_dim)


@pytest.mark.parametrize("h,w", [(1, 201), (2, 401), (1000, 4)])
def test_aspect_ratio_limit_matches_hf(h, w):
    hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    with pytest.raises(ValueError):
        hf.smart_resize(h, w)
    with pytest.raises(ValueError):
        qvp.smart_resize(h, w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_rgba_unit_range_floats_composite_on_their_own_scale(dtype):
    """Regression: with input_range="0-1", alpha and white were taken on the 0..255 scale, which turned every
    RGBA float image white. Opaque RGBA must equal its RGB; half-transparent RGBA must equal its 0..255 twin."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 56, 84, generator=g, dtype=dtype)
    unit = qvp.VisionPreprocessConfig(input_range="0-1")
    x[3] = 1.0
    assert torch.equal(qvp.preprocess(x, unit).pixel_values, qvp.preprocess(x[:3], unit).pixel_values)
    x[3] = 0.5
    torch.testing.assert_close(qvp.preprocess(x, unit).pixel_values, qvp.preprocess(x * 255).pixel_values,
                               rtol=0, atol=1e-5)  # a few float32 ulps of values up to ~2.2


def test_ambiguous_shapes_follow_the_declared_layout():
    """[3, H, 3] cannot be told apart: it is CHW unless layout='hwc' says otherwise."""
    x = _u8(3, 40, 3)
    assert qvp.preprocess(x).grid_thw.tolist() == [[1, *[s // 14 for s in qvp.smart_resize(40, 3)]]]
    assert qvp.preprocess(x, layout="hwc").grid_thw.tolist() == [[1, *[s // 14 for s in qvp.smart_resize(3, 40)]]]


def test_output_never_exceeds_max_pixels_for_the_presets():
    """Over every aspect ratio up to 200 and sides up to 100k: h * w <= max_pixels (so the output is bounded
    by the worst case of docs/reliability.md); where max_pixels is the square of a multiple of the factor,
    smart_resize reaches the bound exactly with that square."""
    for name, cfg in qvp.PRESETS.items():
        for ratio in np.geomspace(1, 200, 60):
            for short in np.unique(np.geomspace(1, 100_000 / ratio, 40).astype(int)):
                h, w = int(short), max(1, int(short * ratio))
                if max(h, w) / min(h, w) > 200:
                    continue
                th, tw = sizing.target_size(h, w, cfg)
                assert th * tw <= cfg.max_pixels, (name, h, w, th, tw)
        side = math.isqrt(cfg.max_pixels)
        if cfg.sizing == "qwen2-vl" and side * side == cfg.max_pixels and side % cfg.factor == 0:
            assert sizing.target_size(side, side, cfg) == (side, side), name


def test_max_pixels_overshoot_of_tiny_budgets_matches_hf():
    """Below 200 * factor**2 a thin image's short side is clamped up to one factor, so h * w can exceed
    max_pixels; transformers does the same, and we follow it (documented, not an error)."""
    hf = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    cfg = qvp.VisionPreprocessConfig(min_pixels=784, max_pixels=28 * 28 * 4)
    th, tw = hf.smart_resize(28, 5600, factor=28, min_pixels=784, max_pixels=28 * 28 * 4)
    assert th * tw > cfg.max_pixels
    out = qvp.preprocess(_u8(3, 28, 5600), cfg)
    assert out.grid_thw.tolist() == [[1, th // 14, tw // 14]]


# ---------------------------------------------------------------------------------------------- nothing is lost
INPUT_KINDS = [
    ("uint8-chw", lambda d: _u8(3, 45, 61, device=d), {}),
    ("uint8-same-size", lambda d: _u8(3, 56, 84, device=d), {}),
    ("uint8-hwc", lambda d: _u8(45, 61, 3, device=d), {"layout": "hwc"}),
    ("uint8-noncontiguous", lambda d: _u8(3, 90, 122, device=d)[:, ::2, ::2], {}),
    ("gray-2d", lambda d: _u8(45, 61, device=d), {}),
    ("rgba", lambda d: _u8(4, 45, 61, device=d), {}),
    ("float32", lambda d: torch.rand(3, 45, 61, device=d) * 255, {}),
    ("float32-same-size", lambda d: torch.rand(3, 56, 84, device=d) * 255, {}),
    ("float16-0-1", lambda d: torch.rand(3, 45, 61, device=d).half(),
     {"config": qvp.VisionPreprocessConfig(input_range="0-1")}),
    ("bfloat16-rgba", lambda d: (torch.rand(4, 45, 61, device=d) * 255).bfloat16(), {}),
    ("float-mode", lambda d: torch.rand(3, 45, 61, device=d) * 255,
     {"config": qvp.VisionPreprocessConfig(resize_mode="float")}),
    ("float-mode-uint8", lambda d: _u8(3, 45, 61, device=d),
     {"config": qvp.VisionPreprocessConfig(resize_mode="float")}),
    ("batch", lambda d: _u8(2, 3, 45, 61, device=d), {}),
    ("batch-gray", lambda d: _u8(2, 1, 45, 61, device=d), {}),
    ("ragged-list", lambda d: [_u8(3, 45, 61, device=d), _u8(3, 30, 90, device=d, seed=1)], {}),
    ("no-resize", lambda d: _u8(3, 56, 56, device=d), {"config": qvp.VisionPreprocessConfig(do_resize=False)}),
    ("compact", lambda d: _u8(3, 45, 61, device=d), {"config": qvp.VisionPreprocessConfig(compact_images=True)}),
]


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the storages of ``a`` and ``b`` share any byte."""
    sa, sb = a.untyped_storage(), b.untyped_storage()
    a0, b0 = sa.data_ptr(), sb.data_ptr()
    return a.device == b.device and a0 < b0 + sb.nbytes() and b0 < a0 + sa.nbytes()


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("make,kwargs", [pytest.param(*k[1:], id=k[0]) for k in INPUT_KINDS])
def test_backend_invariants(make, kwargs, device, backend):
    """Every backend, every kind of input: the shared invariants of ``conftest.check_backend``."""
    kwargs = dict(kwargs)
    config = kwargs.pop("config", None)
    check_backend(backend, make(device), config, **kwargs)


@pytest.mark.parametrize("backend", ["aten", "native"])
@pytest.mark.parametrize("make,kwargs", [pytest.param(*k[1:], id=k[0]) for k in INPUT_KINDS])
def test_torch_uint8_backend_invariants(make, kwargs, backend):
    """The CPU backends of torch-uint8 mode keep the same invariants on every kind of input: each case's
    config in torch-uint8 mode (float-mode cases stay in float mode, which they hand to the reference)."""
    kwargs = dict(kwargs)
    config = kwargs.pop("config", None) or qvp.VisionPreprocessConfig()
    if config.resize_mode == "pil":
        config = config.replace(resize_mode="torch-uint8")
    check_backend(backend, make("cpu"), config, **kwargs)


def test_numpy_and_pil_inputs_never_modified():
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    arr_copy = arr.copy()
    out = qvp.preprocess(arr).pixel_values
    assert np.array_equal(arr, arr_copy)
    assert not np.shares_memory(out.numpy(), arr)
    # a view of the same array as a tensor: the tensor is not written through either
    t = torch.from_numpy(arr)
    v = t._version
    qvp.preprocess(t, layout="hwc")
    assert t._version == v and np.array_equal(arr, arr_copy)
    img = Image.fromarray(arr)
    before = img.tobytes()
    qvp.preprocess(img)
    assert img.tobytes() == before


def test_gradient_path_never_modifies_its_input():
    x = (torch.rand(3, 45, 61) * 255).requires_grad_()
    v = x._version
    out = qvp.preprocess(x, qvp.VisionPreprocessConfig(resize_mode="float"), backend="torch").pixel_values
    out.sum().backward()
    assert x._version == v and not _overlaps(out, x) and x.grad is not None


def test_resize_stage_never_modifies_its_input():
    x = _u8(3, 45, 61)
    v, copy = x._version, x.clone()
    out = qvp.resize(x, (30, 40))
    assert x._version == v and torch.equal(x, copy)
    assert not _overlaps(out, x)


@pytest.mark.parametrize("as_list", [False, True], ids=["tensor", "list"])
def test_resize_to_the_same_size_returns_a_new_tensor(as_list):
    """Regression: resize() handed the caller's own tensor back when the size was unchanged."""
    x = _u8(3, 20, 20)
    out = qvp.resize([x] if as_list else x, (20, 20))
    out = out[0] if as_list else out
    assert torch.equal(out, x)
    assert not _overlaps(out, x)
