"""``resize_mode="float"``: single-pass antialiased float bicubic, torchvision/``F.interpolate`` semantics,
and differentiable.

References: torchvision's uint8 resize (float resize, clamp, round), ``F.interpolate`` in float32 and in
float64, and Pillow's float ("F" mode) resampler, which evaluates the same filter in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as tvF

import qwen_vis_prep as qvp
from qwen_vis_prep import layout
from qwen_vis_prep.backends import reference

EPS32 = 2.0 ** -24  # unit roundoff of float32

# Tolerances, on the 0..255 scale.
#
# Against an exact (float64) evaluation our float resize carries only float32 roundings: the weights are
# rounded to float32 (relative 2^-24 each, times sum|w| <= 1.25 per pass), the intermediate and the result
# are rounded to float32 once each; products and sums are float64. That is < 255 * 6 * 2^-24 ~= 1e-4 in
# total, i.e. 4e-7 of the scale: we assert 1e-6 of the scale.
TOL_VS_EXACT = 255 * 1e-6
#
# torch's float32 F.interpolate additionally evaluates the filter centre (o + 0.5) * in/out in float32: an
# error up to ~2 * in_size * 2^-24 pixels in the position, which moves every weight by up to |k'| / fs per
# pixel. Summed over one pass that is <= 255 * TV(k) * 2 * in_size * 2^-24 with TV(k) ~= 2.3 the total
# variation of the bicubic kernel, and the second pass multiplies the first pass's error by sum|w| <= 1.25.
# So the difference scales with the input size and exceeds 1e-5 of the scale for inputs larger than
# ~100 px (measured: 2e-5 on 427x640 photos, 6e-5 on 650 px noise); the bound we assert:


def tol_vs_torch_float32(in_h: int, in_w: int) -> float:
    return 255 * 6.0 * (in_h + in_w) * EPS32 + TOL_VS_EXACT


def interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


def exact(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float64 reference: ``F.interpolate`` in float64 (positions and weights in double)."""
    # torch's antialiased bicubic is wrong when the output has width 1 (it disagrees with its own transpose
    # by tens of levels; see test_output_width_one_matches_pillow); the tests below avoid that shape here.
    assert size[1] > 1
    return interpolate(x.to(torch.float64), size)


def pillow_float(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow's float32 ("F" mode) BICUBIC, channel by channel: float64 weights and sums."""
    h, w = size
    chans = [np.asarray(Image.fromarray(c.numpy().astype(np.float32)).resize((w, h), Image.Resampling.BICUBIC))
             for c in x.reshape(-1, *x.shape[-2:])]
    return torch.from_numpy(np.stack(chans)).reshape(*x.shape[:-2], h, w)


# --------------------------------------------------------------------------------------------------------
# uint8 images: qvp.resize(mode="float") vs torchvision
# --------------------------------------------------------------------------------------------------------

UINT8_SIZES = [
    pytest.param("astronaut", (170, 170), id="astronaut-down-3x"),
    pytest.param("astronaut", (224, 224), id="astronaut-224"),
    pytest.param("chelsea", (600, 902), id="chelsea-up-2x"),
    pytest.param("coffee", (97, 613), id="coffee-mixed"),
    pytest.param("rocket", (213, 1280), id="rocket-mixed-wide"),
    pytest.param("rocket", (13, 17), id="rocket-tiny"),
    pytest.param("coffee", (400, 333), id="coffee-width-only"),
]


@pytest.mark.parametrize("name, size", UINT8_SIZES)
def test_uint8_float_mode_matches_torchvision(rgb_chw, torchvision_float_resize, name, size):
    """Against ``tvF.resize(uint8, BICUBIC, antialias=True)`` (float resize, clamp, round half to even).

    Not bit-exact: torchvision's float32 filter positions differ from ours by up to a few 1e-3 of a level,
    so a value that close to a .5 tie can round the other way. So: (1) every disagreement is one level;
    (2) disagreements are rare; (3) each lies at a tie of the exact value (within torchvision's error).
    And ours equals the exact value rounded wherever that is not within our own error of a tie.
    """
    img = rgb_chw[name]
    ours = qvp.resize(img, size, mode="float", backend="torch")
    ref = tvF.resize(img, list(size), interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
    assert ours.dtype == ref.dtype == torch.uint8 and ours.shape == ref.shape
    diff = (ours.int() - ref.int()).abs()
    assert diff.max().item() <= 1
    assert diff.gt(0).float().mean().item() < 1e-3
    ex = exact(img[None], size)[0].clamp(0, 255)
    dist_to_tie = ((ex - ex.floor()) - 0.5).abs()
    assert torch.all(dist_to_tie[diff > 0] < 255 * 4 * (sum(img.shape[-2:])) * EPS32)
    clear = dist_to_tie > 2 * TOL_VS_EXACT
    assert torch.equal(ours[clear], ex.round().to(torch.uint8)[clear])


def test_uint8_float_mode_batched_equals_one_by_one(rgb_chw):
    a = rgb_chw["astronaut"]
    batch = torch.stack([a, a.flip(-1)])
    out = qvp.resize(batch, (100, 300), mode="float", backend="torch")
    for i in range(2):
        assert torch.equal(out[i], qvp.resize(batch[i], (100, 300), mode="float", backend="torch"))


def test_uint8_float_mode_identity_is_a_copy_of_the_input(rgb_chw):
    img = rgb_chw["chelsea"]
    assert torch.equal(qvp.resize(img, tuple(img.shape[-2:]), mode="float"), img)


# --------------------------------------------------------------------------------------------------------
# float images: backends.reference.resize_float vs F.interpolate and Pillow
# --------------------------------------------------------------------------------------------------------

def _random_cases(n: int, seed: int, max_side: int = 300):
    g = np.random.default_rng(seed)
    for _ in range(n):
        in_h, in_w, h = (int(v) for v in g.integers(1, max_side, size=3))
        w = int(g.integers(2, max_side))  # width 1: see test_output_width_one_matches_pillow
        yield in_h, in_w, h, w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resize_float_matches_interpolate_on_noise(seed):
    g = torch.Generator().manual_seed(seed)
    for in_h, in_w, h, w in _random_cases(12, seed):
        x = torch.rand(2, 3, in_h, in_w, generator=g) * 255
        ours = reference.resize_float(x, (h, w))
        assert ours.dtype == torch.float32 and tuple(ours.shape) == (2, 3, h, w)
        case = f"{in_h}x{in_w} -> {h}x{w}"
        err_exact = (ours.double() - exact(x, (h, w))).abs().max().item()
        assert err_exact <= TOL_VS_EXACT, f"{case}: {err_exact / 255:.2e} of the scale vs float64"
        err32 = (ours - interpolate(x, (h, w))).abs().max().item()
        assert err32 <= tol_vs_torch_float32(in_h, in_w), f"{case}: {err32 / 255:.2e} of the scale vs float32"


@pytest.mark.parametrize("name, size", UINT8_SIZES)
def test_resize_float_matches_interpolate_and_pillow_on_photos(rgb_chw, name, size):
    x = rgb_chw[name][None].to(torch.float32)
    ours = reference.resize_float(x, size)
    assert (ours.double() - exact(x, size)).abs().max().item() <= TOL_VS_EXACT
    assert (ours - interpolate(x, size)).abs().max().item() <= tol_vs_torch_float32(*x.shape[-2:])
    # Pillow "F" mode: float64 weights and sums, float32 between the passes (in Pillow 13's pass order,
    # which in exact arithmetic does not matter for a linear filter).
    assert (ours - pillow_float(x, size)).abs().max().item() <= TOL_VS_EXACT


@pytest.mark.parametrize("in_hw, size", [
    pytest.param((431, 48), (104, 1), id="431x48-to-104x1"),
    pytest.param((4, 4), (2, 1), id="4x4-to-2x1"),
    pytest.param((6, 5), (3, 1), id="6x5-to-3x1"),
    pytest.param((30, 1), (70, 1), id="30x1-to-70x1"),
    pytest.param((1, 50), (1, 7), id="1x50-to-1x7"),
])
def test_output_width_one_matches_pillow(in_hw, size):
    """Regression: an output one pixel wide. torch 2.x's antialiased bicubic ``F.interpolate`` is wrong
    there (it disagrees with its own transpose by tens of levels), so the references are Pillow's float
    resampler and the transposed problem."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(1, 3, *in_hw, generator=g) * 255
    ours = reference.resize_float(x, size)
    assert (ours - pillow_float(x, size)).abs().max().item() <= TOL_VS_EXACT
    if size[0] > 1:  # the transposed problem has width > 1, where interpolate is right
        transposed = interpolate(x.transpose(-1, -2).double(), size[::-1]).transpose(-1, -2)
        assert (ours.double() - transposed).abs().max().item() <= TOL_VS_EXACT


def test_resize_float_float64_stays_float64():
    x = torch.rand(1, 3, 9, 13, dtype=torch.float64) * 255
    out = reference.resize_float(x, (5, 20))
    assert out.dtype == torch.float64
    assert (out - exact(x, (5, 20))).abs().max().item() <= TOL_VS_EXACT


# --------------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------------

def _float_pipeline(x: torch.Tensor, size, config: qvp.VisionPreprocessConfig) -> torch.Tensor:
    mean = torch.tensor(config.image_mean, dtype=torch.float64)
    std = torch.tensor(config.image_std, dtype=torch.float64)
    y = reference.resize_float(x, size)
    y = reference.normalize(y, config.rescale_factor, mean, std)
    return layout.patchify(y, config.patch_size, config.merge_size, config.temporal_patch_size, torch.float64)


@pytest.mark.parametrize("in_hw, size", [
    pytest.param((9, 13), (8, 12), id="down"),
    pytest.param((5, 6), (12, 8), id="up"),
    pytest.param((14, 5), (8, 12), id="mixed"),
    pytest.param((8, 7), (8, 12), id="width-only"),
])
def test_gradcheck_float_pipeline(in_hw, size):
    """resize_float + normalize + patchify is differentiable, with the analytic gradient (float64)."""
    config = qvp.VisionPreprocessConfig(patch_size=2, merge_size=2, temporal_patch_size=2, min_pixels=4,
                                        max_pixels=10_000, resize_mode="float")
    x = (torch.rand(1, 3, *in_hw, dtype=torch.float64) * 255).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _float_pipeline(t, size, config), (x,), eps=1e-6, atol=1e-6)


def _independent_float_preprocess(x: torch.Tensor, config: qvp.VisionPreprocessConfig):
    """The float pipeline written from torch primitives (as HF's torchvision backend does it)."""
    h, w = qvp.smart_resize(x.shape[-2], x.shape[-1], config.factor, config.min_pixels, config.max_pixels)
    y = interpolate(x[None], (h, w))
    mean = torch.tensor(config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std).view(1, 3, 1, 1)
    y = (y * config.rescale_factor - mean) / std
    p, m, t = config.patch_size, config.merge_size, config.temporal_patch_size
    gh, gw = h // p, w // p
    y = y.reshape(1, 3, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
    return y.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1).reshape(gh * gw, 3 * t * p * p)


def test_preprocess_backward_with_float_input(rgb_chw):
    """``qvp.preprocess`` on a float32 image that requires grad: backward runs and gives the same gradient
    as the pipeline built from ``F.interpolate``."""
    config = qvp.PRESETS["qwen2-vl"].replace(resize_mode="float", max_pixels=112 * 112, min_pixels=56 * 56)
    base = rgb_chw["chelsea"][:, ::3, ::3].to(torch.float32)  # 100 x 151
    x = base.clone().requires_grad_()
    out = qvp.preprocess(x, config)
    assert out.pixel_values.requires_grad and out.pixel_values.dtype == torch.float32
    upstream = torch.randn(out.pixel_values.shape, generator=torch.Generator().manual_seed(0))
    (out.pixel_values * upstream).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    x_ref = base.clone().requires_grad_()
    ref = _independent_float_preprocess(x_ref, config)
    (ref * upstream).sum().backward()
    # forward: as test_resize_float_* (float32 filter positions in torch), divided by 255 * std
    fwd_tol = tol_vs_torch_float32(*base.shape[-2:]) / (255 * min(config.image_std)) + 1e-6
    assert (out.pixel_values.detach() - ref.detach()).abs().max().item() <= fwd_tol
    # backward: the transposed filter applied to upstream * scale / std; the same weight error, relative
    gscale = x_ref.grad.abs().max().item()
    assert (x.grad - x_ref.grad).abs().max().item() <= 1e-4 * gscale


def test_preprocess_bf16_output_keeps_grad(rgb_chw):
    config = qvp.PRESETS["qwen2-vl"].replace(resize_mode="float", max_pixels=56 * 56, output_dtype=torch.bfloat16)
    x = rgb_chw["coffee"][:, ::8, ::8].to(torch.float32).requires_grad_()
    out = qvp.preprocess(x, config)
    assert out.pixel_values.dtype == torch.bfloat16
    out.pixel_values.float().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_pil_mode_with_requires_grad_raises(rgb_chw):
    x = rgb_chw["coffee"][:, ::4, ::4].to(torch.float32).requires_grad_()
    with pytest.raises(ValueError, match="resize_mode='float'"):
        qvp.preprocess(x, qvp.PRESETS["qwen2-vl"].replace(max_pixels=56 * 56))
    # under no_grad nothing needs a gradient: pil mode runs
    with torch.no_grad():
        out = qvp.preprocess(x, qvp.PRESETS["qwen2-vl"].replace(max_pixels=56 * 56))
    assert not out.pixel_values.requires_grad
