"""Property tests (issue #6): random sizes, dtypes, layouts, presets and configs against an independent oracle,
and random garbage that must raise the documented errors and nothing else.

Profiles (registered in conftest.py, or below when it has none): ``quick`` by default (CI),
``HYPOTHESIS_PROFILE=long`` for the soak run; ``--hypothesis-show-statistics`` prints how many examples passed.

The oracle is built from other implementations only: transformers' ``smart_resize`` for sizes, Pillow's
``Image.resize(BICUBIC)`` for the ``"pil"`` mode, ``F.interpolate(antialias=True)`` for the ``"float"`` mode,
transformers' patch order written out with ``reshape``/``permute``. Its tolerances:

* ``"pil"`` mode on uint8 levels is bit-exact (``torch.equal``).
* ``"float"`` mode is compared with ``F.interpolate`` in float64. Ours sums in float64 too, but with float32
  weights (relative error 2**-24 each, sum|w| <= 1.5) and a float32 intermediate and result (2**-24 relative
  each): per pass <= 255 x (1.5 + 1) x 2**-24 ~ 4e-5, so 2e-4 on the 0..255 scale bounds two passes with
  room (measured: 3e-5). ``F.interpolate`` in float32 would be no oracle: it is itself off by up to 1e-3.
  Rounded back to uint8 levels, a value that close to a .5 boundary can flip by one level.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from PIL import Image

import qwen_vis_prep as qvp

from conftest import hf_target_size
from test_errors import HAS_CUDA, triton_runs

try:  # reuse conftest's profiles; register the same ones where there are none
    settings.get_profile("long")
except InvalidArgument:  # pragma: no cover - depends on conftest
    _health = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("quick", max_examples=25, deadline=None, suppress_health_check=_health)
    settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=_health)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

hf_sizing = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")

#: (device, backend) pairs the fuzz draws from (backend names of the registry, plus "auto").
#: Triton's CPU interpreter (conftest.py turns it on without a GPU) takes ~0.5 s an example: in the quick
#: profile only; the long soak runs the real backends (on a GPU machine, the Triton kernels too).
TARGETS = [("cpu", "auto"), ("cpu", "reference")]
TARGETS += ([("cpu", "triton")] if triton_runs("cpu") and os.environ.get("HYPOTHESIS_PROFILE") != "long" else [])
TARGETS += [("cuda", "reference")] if HAS_CUDA else []
TARGETS += [("cuda", "triton")] if triton_runs("cuda") else []

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


# ---------------------------------------------------------------------------------------------- oracle
def _levels(x: torch.Tensor, input_range: str) -> torch.Tensor:
    """The documented float -> uint8 rule, computed exactly: float16/bfloat16 times 255 is exact in float32."""
    if x.dtype == torch.uint8:
        return x
    xf = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    if input_range == "0-1":
        xf = xf * 255.0
    return xf.clamp(0, 255).round().to(torch.uint8)


def _pil_resize(levels: torch.Tensor, size: tuple[int, int], order: str) -> torch.Tensor:
    """``[3, H, W] uint8`` through Pillow; a forced pass order is two one-axis Pillow resizes."""
    h, w = size
    in_h, in_w = levels.shape[-2:]
    im = Image.fromarray(np.ascontiguousarray(levels.permute(1, 2, 0).numpy()), "RGB")
    installed = "pillow13" if int(Image.__version__.split(".")[0]) >= 13 else "pillow12"
    dy, dx = in_h - h, in_w - w
    vertical_first = {"pillow12": False, "pillow13": dy > 0 and dy > 2 * dx and dx != 0}
    if order == "installed" or in_h == h or in_w == w or vertical_first[order] == vertical_first[installed]:
        im = im.resize((w, h), Image.Resampling.BICUBIC)
    elif vertical_first[order]:
        im = im.resize((in_w, h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    else:
        im = im.resize((w, in_h), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)


def oracle(chw: torch.Tensor, cfg: qvp.VisionPreprocessConfig) -> tuple[torch.Tensor, str]:
    """``pixel_values`` of one ``[C, H, W]`` CPU image, and how exact the comparison can be:
    ``"exact"``, ``"float"`` (float sums differ) or ``"levels"`` (float sums, rounded to uint8 levels)."""
    x = chw
    c, in_h, in_w = x.shape
    if c == 1:
        x = x.expand(3, in_h, in_w)
    elif c == 4:  # transformers' rule: round(alpha * rgb + (1 - alpha) * white), white on the input's scale
        white = 1.0 if (x.is_floating_point() and cfg.input_range == "0-1") else 255.0
        alpha = x[3:].double() / white
        rgb = alpha * x[:3].double() + (1 - alpha) * white
        x = rgb.round().to(torch.uint8) if x.dtype == torch.uint8 else rgb.to(x.dtype)
    if cfg.do_resize:
        size = hf_target_size(in_h, in_w, cfg)
    else:
        size = (in_h, in_w)
    resizing = size != (in_h, in_w)
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    if cfg.resize_mode == "pil" and (x.dtype == torch.uint8 or resizing):
        lv = _levels(x, cfg.input_range)
        y, kind = (_pil_resize(lv, size, cfg.pillow_order) if resizing else lv).to(torch.float32), "exact"
    elif cfg.resize_mode == "float" and x.dtype == torch.uint8:
        y = x.to(torch.float32)
        if resizing:
            y = F.interpolate(y[None].double(), size=size, mode="bicubic", antialias=True, align_corners=False)[0]
            y = y.clamp(0, 255).round().float()
        kind = "levels" if resizing else "exact"
    else:
        y = x.to(work) * (255.0 if cfg.input_range == "0-1" else 1.0)
        if resizing:
            y = F.interpolate(y[None].double(), size=size, mode="bicubic", antialias=True,
                              align_corners=False)[0].to(work)
        kind = "float" if resizing else "exact"
    if cfg.do_rescale:
        y = y * cfg.rescale_factor
    if cfg.do_normalize:
        y = (y - torch.tensor(cfg.image_mean, dtype=torch.float32).to(y.dtype).view(3, 1, 1)) \
            / torch.tensor(cfg.image_std, dtype=torch.float32).to(y.dtype).view(3, 1, 1)
    # transformers: (grid_t, T, C, gh/m, m, P, gw/m, m, P) -> (grid_t, gh/m, gw/m, m, m, C, T, P, P)
    p, m, t = cfg.patch_size, cfg.row_merge_size, cfg.image_frames  # raster rows: windows of one patch
    h, w = size
    frames = y[None].expand(t, 3, h, w)
    patches = frames.reshape(1, t, 3, h // p // m, m, p, w // p // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape((h // p) * (w // p), 3 * t * p * p).to(cfg.output_dtype), kind


def assert_matches_oracle(got: torch.Tensor, chw: torch.Tensor, cfg: qvp.VisionPreprocessConfig) -> None:
    want, kind = oracle(chw, cfg)
    got = got.cpu()
    assert got.shape == want.shape and got.dtype == want.dtype
    if kind == "exact" and chw.dtype in (torch.uint8, torch.float32):
        assert torch.equal(got, want)
        return
    unit = (cfg.rescale_factor if cfg.do_rescale else 1.0) / (min(abs(s) for s in cfg.image_std)
                                                                if cfg.do_normalize else 1.0)
    out_eps = {torch.float32: 2.0 ** -22, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10}[cfg.output_dtype]
    g, w_ = got.double(), want.double()
    tol = 2e-4 * unit + out_eps * w_.abs() + 1e-6  # float sums (see the module docstring) + the output's rounding
    off = (g - w_).abs() > tol
    if kind == "levels":  # one-level flips at .5 boundaries, rare
        assert ((g - w_).abs() <= unit * 1.001 + tol).all()
        assert off.double().mean() <= 0.01, off.double().mean()
    else:
        assert not off.any(), f"max error {(g - w_).abs().max():.3g} > tolerance"


# ---------------------------------------------------------------------------------------------- strategies
@st.composite
def configs(draw, max_blocks: int = 40) -> qvp.VisionPreprocessConfig:
    """Random configs whose output is at most ``max_blocks`` merge windows."""
    preset = draw(st.sampled_from(sorted(qvp.PRESETS)))
    base = qvp.PRESETS[preset]
    f2 = base.factor ** 2
    k = draw(st.integers(1, max_blocks))
    kw = dict(max_pixels=f2 * k, min_pixels=draw(st.integers(1, f2 * k)),
              resize_mode=draw(st.sampled_from(["pil", "float"])),
              pillow_order=draw(st.sampled_from(["installed", "pillow12", "pillow13"])),
              input_range=draw(st.sampled_from(["0-255", "0-1"])),
              output_dtype=draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16])),
              compact_images=draw(st.booleans()), do_rescale=draw(st.booleans()),
              do_normalize=draw(st.booleans()), do_resize=draw(st.booleans()))
    if draw(st.booleans()):
        kw["image_mean"] = tuple(draw(st.lists(st.floats(-1, 1), min_size=3, max_size=3)))
        kw["image_std"] = tuple(draw(st.lists(st.floats(0.05, 2), min_size=3, max_size=3)))
    if draw(st.booleans()):
        kw["rescale_factor"] = draw(st.floats(1e-3, 1.0))
    return base.replace(**kw)


@st.composite
def images(draw, cfg: qvp.VisionPreprocessConfig, max_side: int = 160):
    """``(input as given to preprocess, layout, [C, H, W] CPU view of it)``."""
    if cfg.do_resize:
        h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
        assume(max(h, w) / min(h, w) <= 200)
    else:
        h, w = cfg.factor * draw(st.integers(1, 5)), cfg.factor * draw(st.integers(1, 5))
    c = draw(st.sampled_from([1, 3, 4]))
    dtype = draw(st.sampled_from([torch.uint8, *FLOAT_DTYPES]))
    form = draw(st.sampled_from(["chw", "hwc", "numpy", "gray-2d", "strided"]))
    if form == "gray-2d":
        c = 1
    if form == "numpy" and dtype == torch.bfloat16:
        dtype = torch.float32
    g = torch.Generator().manual_seed(draw(st.integers(0, 2 ** 31)))
    lv = torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=g)
    if dtype == torch.uint8:
        chw = lv
    else:
        hi = 1.0 if cfg.input_range == "0-1" else 255.0
        chw = (torch.rand(c, h, w, generator=g, dtype=torch.float64) * hi).to(dtype)
        if draw(st.booleans()):  # exact levels and the ends of the range
            chw = (lv.double() / (255.0 if hi == 1.0 else 1.0)).to(dtype)
    if form == "chw":
        return chw, "auto", chw
    if form == "hwc":
        return chw.permute(1, 2, 0).contiguous(), "hwc", chw
    if form == "numpy":
        arr = chw.permute(1, 2, 0).contiguous().numpy()
        return arr, "auto", chw
    if form == "gray-2d":
        return chw[0], "auto", chw
    big = torch.zeros(c, 2 * h, 2 * w, dtype=dtype)  # non-contiguous view
    big[:, ::2, ::2] = chw
    return big[:, ::2, ::2], "auto", chw


def _limits(target) -> dict:
    """Smaller images under Triton's CPU interpreter, which runs kernels a few thousand times slower."""
    interpreted = target[0] == "cpu" and target[1].startswith("triton")
    return {"max_side": 48, "max_blocks": 8} if interpreted else {"max_side": 160, "max_blocks": 40}


def _run(x, cfg, layout, target):
    device, backend = target
    if isinstance(x, np.ndarray) and device != "cpu":  # an HWC array on the host: its tensor on the device
        x, layout = torch.from_numpy(x).to(device), "hwc"
    if isinstance(x, torch.Tensor):
        x = x.to(device)
    elif isinstance(x, list):
        x = [t.to(device) for t in x]
    return qvp.preprocess(x, cfg, backend=backend, layout=layout)


# ---------------------------------------------------------------------------------------------- properties
@given(data=st.data())
def test_random_images_and_configs_match_the_oracle(data):
    target = data.draw(st.sampled_from(TARGETS), label="target")
    lim = _limits(target)
    cfg = data.draw(configs(lim["max_blocks"]), label="config")
    x, layout, chw = data.draw(images(cfg, lim["max_side"]), label="image")
    if (target[1].startswith("triton") and chw.dtype == torch.float64
            and (cfg.resize_mode == "float" or not cfg.do_resize)):
        with pytest.raises((TypeError, ValueError), match="float64"):
            _run(x, cfg, layout, target)
        return
    out = _run(x, cfg, layout, target)
    assert_matches_oracle(out.pixel_values, chw, cfg)
    if isinstance(x, torch.Tensor):  # called again (on the Triton backend: a warm call, from the cached plan)
        again = _run(x, cfg, layout, target)
        assert torch.equal(again.pixel_values, out.pixel_values) and torch.equal(again.grid_thw, out.grid_thw)
    th, tw = hf_target_size(chw.shape[1], chw.shape[2], cfg) if cfg.do_resize else chw.shape[1:]
    assert out.grid_thw.tolist() == [[1, th // cfg.patch_size, tw // cfg.patch_size]]


@pytest.mark.slow  # ~15 s: the interpreter runs every drawn list
@given(data=st.data())
def test_ragged_batches_equal_images_one_by_one(data):
    """An image alone and inside a ragged list (any position, any neighbours) gives the same bits."""
    target = data.draw(st.sampled_from(TARGETS), label="target")
    lim = _limits(target)
    cfg = data.draw(configs(lim["max_blocks"]), label="config").replace(do_resize=True)
    items = data.draw(st.lists(images(cfg, lim["max_side"]), min_size=2, max_size=4), label="images")
    chws = [chw for _, _, chw in items]
    if target[1].startswith("triton") and any(c.dtype == torch.float64 for c in chws):
        return
    together = _run(chws, cfg, "auto", target)
    rows = [int(t * h * w) for t, h, w in together.grid_thw.tolist()]
    for part, chw in zip(together.pixel_values.split(rows), chws):
        assert torch.equal(part, _run(chw, cfg, "auto", target).pixel_values)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_unit_range_levels_are_exact(dtype):
    """Regression: float16/bfloat16 "0-1" inputs were scaled by 255 in their own precision (4% / 8% of levels
    one off). x * 255 is exact in float32 for them, so the documented rule has one answer."""
    x = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(0)).to(dtype)
    cfg = qvp.VisionPreprocessConfig(input_range="0-1")
    assert torch.equal(qvp.preprocess(x, cfg).pixel_values, qvp.preprocess(_levels(x, "0-1"), cfg).pixel_values)


@given(h=st.integers(1, 10 ** 5), w=st.integers(1, 10 ** 5), factor=st.sampled_from([14, 16, 28, 32, 56]),
       min_pixels=st.integers(1, 10 ** 7), max_pixels=st.integers(1, 10 ** 8))
def test_sizing_equals_transformers(h, w, factor, min_pixels, max_pixels):
    try:
        want = hf_sizing.smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError:
        with pytest.raises(ValueError, match="aspect ratio"):
            qvp.smart_resize(h, w, factor, min_pixels, max_pixels)
        return
    assert qvp.smart_resize(h, w, factor, min_pixels, max_pixels) == want


# ---------------------------------------------------------------------------------------------- garbage
_ANY_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool, torch.float16,
               torch.bfloat16, torch.float32, torch.float64, torch.complex64]
_SPECIAL = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1.0, 255.0, 256.0, 1e30]


@st.composite
def garbage_tensors(draw):
    """Tensors of any dtype and rank, most of them almost images (channels 0..5, sides 0..40)."""
    if draw(st.integers(0, 3)):
        shape = [draw(st.integers(0, 5))] + [draw(st.integers(0, 40)) for _ in range(2)]
        shape = draw(st.sampled_from([shape, shape[::-1], shape[1:], [draw(st.integers(0, 3))] + shape]))
    else:
        shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=5))
    dtype = draw(st.sampled_from(_ANY_DTYPES + [torch.uint8, torch.float32] * 3))
    if dtype.is_complex:
        return torch.zeros(shape, dtype=dtype)
    if dtype.is_floating_point:
        fill = draw(st.sampled_from(_SPECIAL))
        x = torch.rand(shape, dtype=torch.float32) * 255
        if math.prod(shape) and draw(st.booleans()):
            x.view(-1)[draw(st.integers(0, math.prod(shape) - 1))] = fill
        return x.to(dtype)
    return torch.zeros(shape, dtype=dtype)


@st.composite
def garbage_arrays(draw):
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=5)))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.float16, np.float32, np.float64,
                                  np.bool_, np.complex64, np.object_, np.str_]))
    return np.zeros(shape, dtype=dtype)


_scalars = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5), st.binary(max_size=5),
                     st.booleans())
_garbage_items = st.one_of(garbage_tensors(), garbage_arrays(), _scalars,
                           st.dictionaries(st.text(max_size=3), _scalars, max_size=2))
garbage = st.one_of(garbage_tensors(), _garbage_items, st.lists(st.one_of(garbage_tensors(), _garbage_items),
                                                                 max_size=4),
                    st.lists(garbage_tensors(), max_size=3), st.tuples(_garbage_items),
                    st.lists(st.lists(_garbage_items, max_size=2), max_size=2))


@given(images=garbage, layout=st.sampled_from(["auto", "chw", "hwc"]), check_values=st.sampled_from([None, False]),
       target=st.sampled_from(TARGETS))
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
def test_garbage_raises_documented_errors_only(images, layout, check_values, target):
    """Either a well-formed result or TypeError/ValueError; never another exception, never a crash."""
    device, backend = target
    if device == "cuda":
        if isinstance(images, torch.Tensor):
            images = images.to(device)
        elif isinstance(images, list):
            images = [t.to(device) if isinstance(t, torch.Tensor) else t for t in images]
    cfg = qvp.PRESETS["qwen2-vl"].replace(max_pixels=28 * 28 * 16)
    try:
        out = qvp.preprocess(images, cfg, backend=backend, layout=layout, check_values=check_values)
    except (TypeError, ValueError) as e:
        assert str(e), "an error without a message"
        event(f"raised {type(e).__name__}")
        return
    event("accepted")
    rows = sum(int(t * h * w) for t, h, w in out.grid_thw.tolist())
    assert out.pixel_values.shape == (rows, cfg.patch_dim)


@given(kwargs=st.dictionaries(
    st.sampled_from(["patch_size", "temporal_patch_size", "merge_size", "min_pixels", "max_pixels", "image_mean",
                     "image_std", "rescale_factor", "do_resize", "resize_mode", "input_range", "output_dtype"]),
    st.one_of(st.integers(-3, 10 ** 7), st.floats(allow_nan=True), st.text(max_size=4), st.none(),
              st.booleans(), st.lists(st.floats(-2, 2), max_size=4),
              st.sampled_from([torch.float32, torch.int8, "bf16", "pil", "float", "0-1"])),
    max_size=4))
def test_garbage_configs_raise_documented_errors_only(kwargs):
    try:
        cfg = qvp.VisionPreprocessConfig(**kwargs)
    except (TypeError, ValueError) as e:
        assert str(e)
        event(f"raised {type(e).__name__}")
        return
    event("accepted")
    # whatever was accepted is usable
    assert cfg.max_pixels >= cfg.factor ** 2 and cfg.min_pixels <= cfg.max_pixels
    assert all(s != 0 for s in cfg.image_std)
