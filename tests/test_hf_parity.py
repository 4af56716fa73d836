"""Parity with Hugging Face transformers' Qwen2-VL image processors.

* ``resize_mode="pil"`` against ``Qwen2VLImageProcessorPil`` (Pillow resize + NumPy normalise): the resized
  uint8 levels are identical, so the only difference is float32 rounding in the normalisation
  (``(x * s - mean) / std`` vs NumPy's float64-then-float32 steps): below 1e-6, asserted at 1e-5.
* ``smart_resize`` against transformers' own.
* ``resize_mode="float"`` against the torchvision backend ``Qwen2VLImageProcessor``.
"""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

import qwen_vis_prep as qvp

PV_ATOL = 1e-5


def run_hf(processor, images, **kw):
    out = processor(images, return_tensors="pt", **kw)
    return out["pixel_values"], out["image_grid_thw"]


def assert_matches_hf(ours: qvp.VisionBatch, hf_pv: torch.Tensor, hf_grid: torch.Tensor, atol=PV_ATOL):
    assert torch.equal(ours.grid_thw, hf_grid.to(torch.int64)), (ours.grid_thw.tolist(), hf_grid.tolist())
    assert ours.pixel_values.shape == hf_pv.shape
    assert ours.pixel_values.dtype == torch.float32
    diff = (ours.pixel_values - hf_pv.to(torch.float32)).abs().max().item()
    assert diff <= atol, f"max |ours - hf| = {diff:.3g} > {atol}"


def variant(preset: str, kind: str) -> qvp.VisionPreprocessConfig:
    """The released preset, or a copy with pixel limits that force a down- or an upscale of ~512px images."""
    cfg = qvp.PRESETS[preset]
    if kind == "preset":
        return cfg
    if kind == "down":
        return cfg.replace(min_pixels=32 * 32 * 4, max_pixels=200 * 200)
    if kind == "up":
        return cfg.replace(min_pixels=900 * 900)
    raise AssertionError(kind)


PRESET_VARIANTS = [pytest.param(p, k, id=f"{p}-{k}") for p in ("qwen2-vl", "qwen2.5-vl", "qwen3-vl")
                   for k in ("preset", "down", "up")]


def test_presets_are_the_released_configs():
    """The presets carry the values of the checkpoints' preprocessor_config.json files."""
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    names = sorted(qvp.PRESETS)
    assert {"qwen2-vl", "qwen2.5-vl", "qwen3-vl"} <= set(names)  # the other families: test_model_family.py
    for name in ("qwen2-vl", "qwen2.5-vl"):
        c = qvp.PRESETS[name]
        assert (c.patch_size, c.temporal_patch_size, c.merge_size) == (14, 2, 2)
        assert (c.min_pixels, c.max_pixels) == (56 * 56, 28 * 28 * 16384)
        assert c.image_mean == tuple(OPENAI_CLIP_MEAN) and c.image_std == tuple(OPENAI_CLIP_STD)
    c = qvp.PRESETS["qwen3-vl"]
    assert (c.patch_size, c.temporal_patch_size, c.merge_size) == (16, 2, 2)
    assert (c.min_pixels, c.max_pixels) == (65536, 16777216)
    assert c.image_mean == c.image_std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("preset, kind", PRESET_VARIANTS)
def test_numpy_hwc_matches_hf_pil(hf_pil, rgb_hwc, preset, kind):
    config = variant(preset, kind)
    hf = hf_pil(config)
    for name, hwc in rgb_hwc.items():
        assert_matches_hf(qvp.preprocess(hwc, config), *run_hf(hf, hwc))


@pytest.mark.parametrize("preset, kind", [pytest.param("qwen2-vl", "down", id="qwen2-vl-down"),
                                          pytest.param("qwen3-vl", "up", id="qwen3-vl-up")])
def test_pil_image_input_matches_hf_pil(hf_pil, rgb_hwc, preset, kind):
    config = variant(preset, kind)
    hf = hf_pil(config)
    for name, hwc in rgb_hwc.items():
        im = Image.fromarray(hwc)
        assert_matches_hf(qvp.preprocess(im, config), *run_hf(hf, im))


@pytest.mark.parametrize("preset, kind", PRESET_VARIANTS[:3] + PRESET_VARIANTS[-3:])
def test_chw_tensor_input_matches_hf_pil(hf_pil, rgb_chw, preset, kind):
    config = variant(preset, kind)
    hf = hf_pil(config)
    for name, img in rgb_chw.items():
        assert_matches_hf(qvp.preprocess(img, config), *run_hf(hf, img))


@pytest.mark.parametrize("preset, kind", [pytest.param("qwen2-vl", "down", id="qwen2-vl-down"),
                                          pytest.param("qwen2.5-vl", "preset", id="qwen2.5-vl-preset"),
                                          pytest.param("qwen3-vl", "up", id="qwen3-vl-up")])
def test_batched_tensor_matches_hf_pil(hf_pil, rgb_chw, preset, kind):
    config = variant(preset, kind)
    a = rgb_chw["astronaut"]
    batch = torch.stack([a, a.flip(-1), a.transpose(-1, -2), 255 - a])
    ours = qvp.preprocess(batch, config)
    assert ours.grid_thw.shape == (4, 3)
    assert_matches_hf(ours, *run_hf(hf_pil(config), batch))


@pytest.mark.parametrize("preset, kind", [pytest.param("qwen2-vl", "down", id="qwen2-vl-down"),
                                          pytest.param("qwen2-vl", "preset", id="qwen2-vl-preset"),
                                          pytest.param("qwen3-vl", "down", id="qwen3-vl-down")])
def test_ragged_list_matches_hf_pil(hf_pil, rgb_hwc, rgb_chw, preset, kind):
    config = variant(preset, kind)
    images_np = [rgb_hwc["chelsea"], rgb_hwc["rocket"][:200, 17:], rgb_hwc["coffee"][::3, ::2],
                 rgb_hwc["astronaut"][100:160, :]]
    ours = qvp.preprocess(images_np, config)
    assert ours.grid_thw.shape == (4, 3)
    assert_matches_hf(ours, *run_hf(hf_pil(config), images_np))
    images_t = [rgb_chw["coffee"], rgb_chw["astronaut"][:, :300, :450]]
    assert_matches_hf(qvp.preprocess(images_t, config), *run_hf(hf_pil(config), images_t))


@pytest.mark.parametrize("preset, kind", [pytest.param("qwen2-vl", "down", id="qwen2-vl-down"),
                                          pytest.param("qwen3-vl", "preset", id="qwen3-vl-preset")])
def test_grayscale_matches_hf_pil(hf_pil, gray_hw, preset, kind):
    config = variant(preset, kind)
    hf = hf_pil(config)
    for name in ("camera", "page"):
        gray = gray_hw[name]
        hw1 = np.ascontiguousarray(gray[:, :, None])
        ref = run_hf(hf, hw1)
        assert_matches_hf(qvp.preprocess(hw1, config), *ref)  # numpy [H, W, 1]
        assert_matches_hf(qvp.preprocess(torch.from_numpy(gray.copy())[None], config), *ref)  # tensor [1, H, W]
        assert_matches_hf(qvp.preprocess(Image.fromarray(gray, mode="L"), config),
                          *run_hf(hf, Image.fromarray(gray, mode="L")))


@pytest.mark.parametrize("preset, kind", [pytest.param("qwen2-vl", "down", id="qwen2-vl-down"),
                                          pytest.param("qwen3-vl", "up", id="qwen3-vl-up")])
def test_rgba_composited_on_white_like_hf(hf_pil, rgba_hwc, preset, kind):
    """RGBA is composited onto white: arrays with transformers' float64 rule, PIL images with Pillow's."""
    config = variant(preset, kind)
    hf = hf_pil(config)
    alpha = rgba_hwc[..., 3]
    assert 0 < (alpha < 255).mean() < 1, "the fixture must have partial transparency to test anything"
    assert_matches_hf(qvp.preprocess(rgba_hwc, config), *run_hf(hf, rgba_hwc))
    chw4 = torch.from_numpy(rgba_hwc.copy()).permute(2, 0, 1)
    assert_matches_hf(qvp.preprocess(chw4, config), *run_hf(hf, rgba_hwc))
    im = Image.fromarray(rgba_hwc, mode="RGBA")
    assert_matches_hf(qvp.preprocess(im, config), *run_hf(hf, im))


def test_rgba_random_alpha_matches_hf_pil(hf_pil, rgb_hwc, rng):
    """Every alpha level, including the .5 ties of ``round(a * rgb + (1 - a) * 255)``."""
    config = variant("qwen2-vl", "down")
    rgb = rgb_hwc["coffee"]
    alpha = rng.integers(0, 256, size=rgb.shape[:2], dtype=np.uint8)
    alpha[:16, :16] = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1)
    assert_matches_hf(qvp.preprocess(rgba, config), *run_hf(hf_pil(config), rgba))


def test_no_resize_matches_hf_pil(hf_pil, rgb_hwc):
    """``do_resize=False`` on an image whose sides are already multiples of 28."""
    config = qvp.PRESETS["qwen2-vl"].replace(do_resize=False)
    hwc = np.ascontiguousarray(rgb_hwc["astronaut"][:476, :504])
    assert_matches_hf(qvp.preprocess(hwc, config), *run_hf(hf_pil(config), hwc))


# --------------------------------------------------------------------------------------------------------
# smart_resize
# --------------------------------------------------------------------------------------------------------

def _hf_smart_resize():
    mod = pytest.importorskip("transformers.models.qwen2_vl.image_processing_qwen2_vl")
    return mod.smart_resize


def _random_sizes(rng: np.random.Generator, n: int):
    for _ in range(n):
        kind = rng.integers(0, 4)
        if kind == 0:  # sides smaller than the factor
            h, w = (int(v) for v in rng.integers(1, 32, size=2))
        elif kind == 1:  # ordinary photos
            h, w = (int(v) for v in rng.integers(32, 5000, size=2))
        elif kind == 2:  # extreme aspect ratios, up to the limit
            short = int(rng.integers(1, 60))
            long = int(short * rng.uniform(1, 200))
            h, w = (short, long) if rng.integers(0, 2) else (long, short)
        else:  # huge
            h, w = (int(v) for v in rng.integers(3000, 20000, size=2))
        yield h, w


@pytest.mark.parametrize("factor, min_pixels, max_pixels", [
    pytest.param(28, 56 * 56, 28 * 28 * 1280, id="qwen2-default"),
    pytest.param(28, 3136, 12845056, id="qwen2-preset"),
    pytest.param(32, 65536, 16777216, id="qwen3-preset"),
    pytest.param(28, 4 * 28 * 28, 4 * 28 * 28, id="min-equals-max"),
    pytest.param(14, 1, 10**12, id="loose"),
])
def test_smart_resize_matches_transformers(rng, factor, min_pixels, max_pixels):
    hf_smart_resize = _hf_smart_resize()
    n = 0
    for h, w in _random_sizes(rng, 3000):
        if max(h, w) / min(h, w) > 200:
            continue
        assert qvp.smart_resize(h, w, factor, min_pixels, max_pixels) == \
            tuple(hf_smart_resize(h, w, factor, min_pixels, max_pixels)), (h, w)
        n += 1
    assert n > 2500


@pytest.mark.parametrize("h, w", [
    pytest.param(1, 1, id="1x1"), pytest.param(1, 27, id="1x27"), pytest.param(27, 27, id="27x27"),
    pytest.param(3, 600, id="3x600"), pytest.param(1, 200, id="aspect-exactly-200"),
    pytest.param(13, 2600, id="aspect-200-wide"), pytest.param(2600, 13, id="aspect-200-tall"),
    pytest.param(14, 14, id="half-factor"), pytest.param(42, 42, id="one-and-a-half-factor"),
])
def test_smart_resize_small_sides(h, w):
    hf_smart_resize = _hf_smart_resize()
    for cfg in qvp.PRESETS.values():
        args = (cfg.factor, cfg.min_pixels, cfg.max_pixels)
        ours = qvp.smart_resize(h, w, *args)
        assert ours == tuple(hf_smart_resize(h, w, *args))
        assert ours[0] % cfg.factor == 0 and ours[1] % cfg.factor == 0 and min(ours) >= cfg.factor


@pytest.mark.parametrize("h, w", [pytest.param(1, 201, id="1x201"), pytest.param(402, 2, id="402x2"),
                                  pytest.param(10, 2001, id="10x2001"), pytest.param(3, 20000, id="3x20000")])
def test_smart_resize_aspect_ratio_over_200_raises_like_transformers(h, w):
    hf_smart_resize = _hf_smart_resize()
    with pytest.raises(ValueError):
        hf_smart_resize(h, w, 28, 3136, 12845056)
    with pytest.raises(ValueError, match="aspect ratio"):
        qvp.smart_resize(h, w, 28, 3136, 12845056)
    # preprocess names the offending image
    with pytest.raises(ValueError, match=r"images\[1\].*aspect ratio"):
        qvp.preprocess([torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(3, h, w, dtype=torch.uint8)])


# --------------------------------------------------------------------------------------------------------
# resize_mode="float" vs the torchvision backend
# --------------------------------------------------------------------------------------------------------

def channel_of_column(config: qvp.VisionPreprocessConfig) -> torch.Tensor:
    """Channel index of each ``pixel_values`` column (columns are ``(C, T, P, P)``)."""
    per_channel = config.temporal_patch_size * config.patch_size ** 2
    return torch.arange(config.patch_dim) // per_channel


def assert_only_level_flips(ours: torch.Tensor, ref: torch.Tensor, config: qvp.VisionPreprocessConfig,
                            max_fraction: float):
    """``ours`` and ``ref`` differ only by whole uint8 levels of at most one, in a small fraction of values.

    Both pipelines resize in float, round to uint8 levels (half to even) and normalise. The two float
    resizes agree to ~1e-5 of a level, except that torch's evaluates filter positions in float32 (error up to
    a few 1e-3 of a level, see test_float_mode.py), so a value within that distance of a .5 tie may round
    to the neighbouring level: a difference of exactly ``1 / (255 * std[c])`` in that element, which a
    1e-5 tolerance cannot absorb. Everything else (the normalisation arithmetic) stays below 1e-5.
    """
    std = torch.tensor(config.image_std)[channel_of_column(config)]
    levels = (ours - ref).abs() * (255.0 * std)  # the difference in uint8 levels, per element
    flips = levels > 1e-5 * 255 * std.max()
    assert torch.all((levels[flips] - 1.0).abs() < 1e-3), f"a difference other than one level: {levels.max()}"
    fraction = flips.float().mean().item()
    assert fraction <= max_fraction, f"{fraction:.2e} of the values differ by a level"
    # the bound in the units of pixel_values: one level / (255 * std) of the channel
    assert (ours - ref).abs().max().item() <= 1.0 / (255.0 * min(config.image_std)) + 1e-5


FLOAT_VARIANTS = [pytest.param(p, k, id=f"{p}-{k}") for p in ("qwen2-vl", "qwen3-vl")
                  for k in ("preset", "down", "up")]


@pytest.mark.parametrize("preset, kind", FLOAT_VARIANTS)
def test_float_mode_matches_hf_torchvision_float_path(hf_tv, rgb_chw, torchvision_float_resize, preset, kind):
    """uint8 input: our float mode vs ``Qwen2VLImageProcessor`` with torchvision's float resize (its GPU
    path). Measured on these images: max difference exactly one level (1 / (255 * std)), in < 2e-4 of the
    values; everything else < 1e-6."""
    config = variant(preset, kind).replace(resize_mode="float")
    hf = hf_tv(config)
    for name, img in rgb_chw.items():
        pv, grid = run_hf(hf, img)
        ours = qvp.preprocess(img, config)
        assert torch.equal(ours.grid_thw, grid)
        assert_only_level_flips(ours.pixel_values, pv, config, max_fraction=1e-3)


def test_float_mode_matches_hf_torchvision_ragged_list(hf_tv, rgb_chw, torchvision_float_resize):
    config = variant("qwen2-vl", "down").replace(resize_mode="float")
    imgs = [rgb_chw["chelsea"], rgb_chw["rocket"][:, :200], rgb_chw["coffee"][:, ::3, ::2]]
    pv, grid = run_hf(hf_tv(config), imgs)
    ours = qvp.preprocess(imgs, config)
    assert torch.equal(ours.grid_thw, grid)
    assert_only_level_flips(ours.pixel_values, pv, config, max_fraction=1e-3)


def test_float_mode_float_input_matches_hf_torchvision(hf_tv, rgb_chw):
    """float32 input on the 0..255 scale: no rounding anywhere, so the difference is float arithmetic only:
    torch's float32 filter positions (< 1e-4 of the 0..255 scale for these sizes, see test_float_mode.py)
    divided by 255 * std, plus the normalisation's float32 rounding."""
    config = variant("qwen2-vl", "down").replace(resize_mode="float")
    hf = hf_tv(config)
    for name, img in rgb_chw.items():
        x = img.to(torch.float32)
        pv, grid = run_hf(hf, x, do_rescale=True)
        ours = qvp.preprocess(x, config)
        assert torch.equal(ours.grid_thw, grid)
        bound = 255 * 1e-4 / (255 * min(config.image_std)) + 1e-5
        assert (ours.pixel_values - pv).abs().max().item() <= bound


@pytest.mark.cuda
def test_float_mode_matches_hf_torchvision_on_cuda(hf_tv, rgb_chw):
    """The torchvision backend run on the GPU, unpatched (float resize there), vs our float mode on the CPU."""
    config = variant("qwen2-vl", "down").replace(resize_mode="float")
    hf = hf_tv(config)
    for name, img in rgb_chw.items():
        pv, grid = run_hf(hf, img, device="cuda")
        ours = qvp.preprocess(img, config, backend="torch")
        assert torch.equal(ours.grid_thw, grid.cpu())
        assert_only_level_flips(ours.pixel_values, pv.cpu(), config, max_fraction=1e-3)


@pytest.mark.parametrize("preset, kind", [pytest.param("qwen2-vl", "preset", id="qwen2-vl-preset"),
                                          pytest.param("qwen2-vl", "down", id="qwen2-vl-down"),
                                          pytest.param("qwen3-vl", "down", id="qwen3-vl-down")])
def test_hf_torchvision_on_cpu_is_close_to_pillow12_not_to_float(hf_tv, rgb_chw, preset, kind):
    """What the torchvision backend does on a CPU, unpatched: torchvision hands uint8 BICUBIC to torch's
    native uint8 kernel (a fixed-point port of Pillow-SIMD, horizontal pass first, uint8 between passes).

    It is *not* the float algorithm (measured: up to ~15 levels apart from ``resize_mode="float"`` on
    these images, in ~10-18% of the values, from the overshoot that the uint8 intermediate clips), but
    within 2 levels of ``resize_mode="pil", pillow_order="pillow12"`` in < 1% of the values. To match HF's
    torchvision backend on a CPU, use pil mode with pillow12; on a GPU, float mode.
    """
    base = variant(preset, kind)
    hf = hf_tv(base)
    far = 0
    for name, img in rgb_chw.items():
        pv, grid = run_hf(hf, img)
        pil12 = qvp.preprocess(img, base.replace(pillow_order="pillow12")).pixel_values
        std = torch.tensor(base.image_std)[channel_of_column(base)]
        levels = (pil12 - pv).abs() * (255.0 * std)
        assert levels.max().item() <= 2.0 + 1e-3
        assert (levels > 1e-3).float().mean().item() < 1e-2
        flt = qvp.preprocess(img, base.replace(resize_mode="float")).pixel_values
        far = max(far, ((flt - pv).abs() * (255.0 * std)).max().item())
    assert far >= 3.0, "the CPU torchvision path now looks like the float algorithm; revisit this note"
