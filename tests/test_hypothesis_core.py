"""Property tests over random sizes, presets and modes, against the same independent references.

Quick by default (the "quick" profile, 25 examples per test); ``HYPOTHESIS_PROFILE=long`` runs 2000.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import qwen_vis_prep as qvp
from conftest import hf_target_size
from qwen_vis_prep import sizing
from qwen_vis_prep import layout
from qwen_vis_prep.backends import reference

BICUBIC = Image.Resampling.BICUBIC
PRESET_NAMES = sorted(qvp.PRESETS)

side = st.integers(1, 120)


def noise(seed: int, h: int, w: int, c: int = 3) -> np.ndarray:
    """uint8 noise, smoothed sometimes so that both busy and flat images occur."""
    g = np.random.default_rng(seed)
    img = g.integers(0, 256, size=(h, w, c), dtype=np.uint8)
    if seed % 3 == 0:  # piecewise-flat blocks: overshoot and clipping at the block edges
        img = np.repeat(np.repeat(img[::8, ::8], 8, axis=0), 8, axis=1)[:h, :w]
    return np.ascontiguousarray(img)


def pil(hwc: np.ndarray, h: int, w: int) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.fromarray(hwc).resize((w, h), BICUBIC))).permute(2, 0, 1)


@given(in_h=side, in_w=side, h=side, w=side, seed=st.integers(0, 2**31 - 1))
def test_resize_pil_is_pillow(in_h, in_w, h, w, seed):
    hwc = noise(seed, in_h, in_w)
    ours = qvp.resize(torch.from_numpy(hwc).permute(2, 0, 1), (h, w), mode="pil", backend="torch")
    assert torch.equal(ours, pil(hwc, h, w))


@given(in_h=side, in_w=side, h=side, w=side, seed=st.integers(0, 2**31 - 1),
       order=st.sampled_from(["pillow12", "pillow13"]))
def test_resize_pil_orders_are_pillow_compositions(in_h, in_w, h, w, seed, order):
    hwc = noise(seed, in_h, in_w)
    vf = order == "pillow13" and in_h - h > 0 and in_h - h > 2 * (in_w - w) and w != in_w and h != in_h
    im = Image.fromarray(hwc)
    mid = (in_w, h) if vf else (w, in_h)
    ref = torch.from_numpy(np.array(im.resize(mid, BICUBIC).resize((w, h), BICUBIC))).permute(2, 0, 1)
    ours = qvp.resize(torch.from_numpy(hwc).permute(2, 0, 1), (h, w), pillow_order=order, backend="torch")
    assert torch.equal(ours, ref)


@given(in_h=side, in_w=side, h=side, w=st.integers(2, 120), seed=st.integers(0, 2**31 - 1))
def test_resize_float_is_interpolate(in_h, in_w, h, w, seed):
    """Against float64 F.interpolate (output width 1 excluded: torch is wrong there, see test_float_mode)."""
    x = torch.from_numpy(noise(seed, in_h, in_w)).permute(2, 0, 1)[None].to(torch.float32)
    ours = reference.resize_float(x, (h, w))
    ref = F.interpolate(x.double(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    assert (ours.double() - ref).abs().max().item() <= 255 * 1e-6  # derivation in test_float_mode.py


@given(h=st.integers(1, 30000), w=st.integers(1, 30000), factor=st.sampled_from([14, 16, 28, 32, 56]),
       min_pixels=st.integers(1, 2**22), extra=st.integers(0, 2**26))
def test_smart_resize_is_transformers(h, w, factor, min_pixels, extra):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

    max_pixels = min_pixels + extra
    if max(h, w) / min(h, w) > 200:
        with pytest.raises(ValueError):
            hf_smart_resize(h, w, factor, min_pixels, max_pixels)
        with pytest.raises(ValueError):
            qvp.smart_resize(h, w, factor, min_pixels, max_pixels)
        return
    assert qvp.smart_resize(h, w, factor, min_pixels, max_pixels) == \
        tuple(hf_smart_resize(h, w, factor, min_pixels, max_pixels))


def _small_config(preset: str, min_pixels: int, max_pixels: int, **kw) -> qvp.VisionPreprocessConfig:
    lo, hi = sorted((min_pixels, max_pixels))
    return qvp.PRESETS[preset].replace(min_pixels=lo, max_pixels=hi, **kw)


pp_side = st.integers(8, 200)
pixels = st.integers(32 * 32, 260 * 260)  # >= factor**2 of every preset (the config requires it)


@given(in_h=pp_side, in_w=pp_side, preset=st.sampled_from(PRESET_NAMES), lo=pixels, hi=pixels,
       seed=st.integers(0, 2**31 - 1), channels=st.sampled_from([1, 3, 4]))
def test_preprocess_pil_mode_is_hf_pil(hf_pil, in_h, in_w, preset, lo, hi, seed, channels):
    config = _small_config(preset, lo, hi)
    hwc = noise(seed, in_h, in_w, channels)
    ours = qvp.preprocess(hwc, config)
    ref = hf_pil(config)(hwc, return_tensors="pt", input_data_format="channels_last")
    assert torch.equal(ours.grid_thw, ref["image_grid_thw"])
    ref_pv = ref["pixel_values"].flatten(1)  # PaddleOCR-VL's rows come as [N, 3, P, P]
    assert ours.pixel_values.shape == ref_pv.shape
    assert (ours.pixel_values - ref_pv).abs().max().item() <= 1e-5


@given(in_h=pp_side, in_w=pp_side, preset=st.sampled_from(PRESET_NAMES), lo=pixels, hi=pixels,
       seed=st.integers(0, 2**31 - 1), order=st.sampled_from(["installed", "pillow12", "pillow13"]))
def test_preprocess_pillow_fast_path_is_torch_path(in_h, in_w, preset, lo, hi, seed, order):
    """The Pillow CPU path (uint8 input on CPU) against the pure-torch integer composition, bit for bit."""
    config = _small_config(preset, lo, hi, pillow_order=order)
    img = torch.from_numpy(noise(seed, in_h, in_w)).permute(2, 0, 1)
    ours = qvp.preprocess(img, config, backend="torch").pixel_values
    size = sizing.target_size(in_h, in_w, config)
    x = reference.resize_fixed(img[None], size, sizing.pillow_vertical_first(in_h, in_w, *size, order))
    y = reference.normalize(x, config.rescale_factor, torch.tensor(config.image_mean), torch.tensor(config.image_std))
    ref = layout.patchify(y, config.patch_size, config.row_merge_size, config.temporal_patch_size, torch.float32)
    assert torch.equal(ours, ref)


@given(in_h=pp_side, in_w=pp_side, preset=st.sampled_from(PRESET_NAMES), lo=pixels, hi=pixels,
       seed=st.integers(0, 2**31 - 1))
def test_preprocess_float_mode_float_input_is_interpolate(in_h, in_w, preset, lo, hi, seed):
    """Float mode on float32 input (no rounding anywhere) against F.interpolate in float64 + normalise +
    patchify written out: float32 roundings only (1e-6 of the scale in the resize, / (255 * std))."""
    config = _small_config(preset, lo, hi, resize_mode="float")
    x = torch.from_numpy(noise(seed, in_h, in_w)).permute(2, 0, 1).to(torch.float32)
    ours = qvp.preprocess(x, config)
    h, w = hf_target_size(in_h, in_w, config)
    y = x[None].double()
    if (h, w) != (in_h, in_w):
        y = F.interpolate(y, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(config.image_mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(config.image_std, dtype=torch.float64).view(1, 3, 1, 1)
    y = (y / 255.0 - mean) / std
    p, m, t = config.patch_size, config.row_merge_size, config.temporal_patch_size
    gh, gw = h // p, w // p
    y = y.reshape(3, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
    ref = y.unsqueeze(5).expand(-1, -1, -1, -1, -1, t, -1, -1).reshape(gh * gw, 3 * t * p * p)
    assert ours.grid_thw.tolist() == [[1, gh, gw]]
    bound = 255 * 1e-6 / (255 * min(config.image_std)) + 1e-6
    assert (ours.pixel_values.double() - ref).abs().max().item() <= bound
