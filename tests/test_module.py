"""``QwenVisionPreprocessor``: presets, overrides, config validation, buffers, and the kernel invariants
(batched == one by one, input untouched, no aliasing, dtype, compact layout, CPU == CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import qwen_vis_prep as qvp
from qwen_vis_prep import QwenVisionPreprocessor, VisionPreprocessConfig

SMALL = dict(max_pixels=160 * 160, min_pixels=56 * 56)


# --------------------------------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_presets(name):
    m = QwenVisionPreprocessor(name)
    assert m.config is qvp.PRESETS[name] or m.config == qvp.PRESETS[name]
    assert m.backend == "auto"


@pytest.mark.parametrize("alias, name", [
    pytest.param("Qwen2-VL", "qwen2-vl", id="capitals"),
    pytest.param("qwen2_5-vl", "qwen2.5-vl", id="underscore"),
    pytest.param("qwen3_vl", "qwen3-vl", id="underscores"),
])
def test_preset_aliases(alias, name):
    assert QwenVisionPreprocessor(alias).config == qvp.PRESETS[name]


def test_default_is_qwen2_vl_and_config_argument():
    assert QwenVisionPreprocessor().config == qvp.PRESETS["qwen2-vl"]
    cfg = qvp.PRESETS["qwen3-vl"].replace(max_pixels=100_000)
    assert QwenVisionPreprocessor(config=cfg).config == cfg
    assert QwenVisionPreprocessor(cfg).config == cfg


def test_overrides():
    m = QwenVisionPreprocessor("qwen3-vl", max_pixels=200_000, resize_mode="float", output_dtype="bf16",
                               compact_images=True)
    c = m.config
    assert (c.patch_size, c.min_pixels, c.max_pixels) == (16, 65536, 200_000)
    assert c.resize_mode == "float" and c.output_dtype is torch.bfloat16 and c.compact_images
    assert c.patch_dim == 3 * 16 * 16
    assert qvp.PRESETS["qwen3-vl"].max_pixels == 16777216, "overrides must not change the preset"


def test_construction_errors():
    with pytest.raises(ValueError, match="unknown preset 'qwen4-vl'.*qwen2-vl"):
        QwenVisionPreprocessor("qwen4-vl")
    with pytest.raises(ValueError, match="either a preset name or config"):
        QwenVisionPreprocessor("qwen2-vl", config=qvp.PRESETS["qwen3-vl"])
    with pytest.raises(ValueError, match="backend must be.*'cuda'"):
        QwenVisionPreprocessor(backend="cuda")
    with pytest.raises(TypeError, match=r"unknown config field\(s\) \['max_pixel'\]"):
        QwenVisionPreprocessor(max_pixel=10)
    with pytest.raises(TypeError, match="config must be a VisionPreprocessConfig"):
        QwenVisionPreprocessor(config={"patch_size": 14})


@pytest.mark.parametrize("kwargs, exc, message", [
    pytest.param(dict(patch_size=0), ValueError, "patch_size must be positive, got 0", id="patch-zero"),
    pytest.param(dict(merge_size=-2), ValueError, "merge_size must be positive, got -2", id="merge-negative"),
    pytest.param(dict(temporal_patch_size=0), ValueError, "temporal_patch_size must be positive",
                 id="temporal-zero"),
    pytest.param(dict(min_pixels=0), ValueError, "min_pixels must be positive, got 0", id="min-pixels-zero"),
    pytest.param(dict(max_pixels=-1), ValueError, "max_pixels must be positive, got -1", id="max-pixels-neg"),
    pytest.param(dict(min_pixels=1000, max_pixels=999), ValueError,
                 "min_pixels must be <= max_pixels, got min_pixels=1000 > max_pixels=999", id="min-over-max"),
    pytest.param(dict(min_pixels=100, max_pixels=700), ValueError,
                 r"max_pixels must be at least \(patch_size \* merge_size\)\*\*2 = 784", id="max-below-one-block"),
    pytest.param(dict(patch_size=14.0), TypeError, r"patch_size must be an int, got float \(14.0\)",
                 id="patch-float"),
    pytest.param(dict(patch_size=True), TypeError, "patch_size must be an int, got bool", id="patch-bool"),
    pytest.param(dict(image_mean=(0.5, 0.5)), ValueError, r"image_mean must have 3 values .* got 2",
                 id="mean-two-values"),
    pytest.param(dict(image_std=(0.5, 0.5, 0.5, 0.5)), ValueError, r"image_std must have 3 values .* got 4",
                 id="std-four-values"),
    pytest.param(dict(image_mean=None), TypeError, "image_mean must be a float or a sequence of 3 floats",
                 id="mean-none"),
    pytest.param(dict(image_std=(0.3, 0.0, 0.3)), ValueError, "image_std must be non-zero", id="std-zero"),
    pytest.param(dict(image_std=0.0), ValueError, "image_std must be non-zero", id="std-scalar-zero"),
    pytest.param(dict(image_mean=(0.5, float("nan"), 0.5)), ValueError, "image_mean must be finite",
                 id="mean-nan"),
    pytest.param(dict(rescale_factor=0.0), ValueError, "rescale_factor must be a positive finite number",
                 id="rescale-zero"),
    pytest.param(dict(rescale_factor=float("inf")), ValueError, "rescale_factor must be a positive finite",
                 id="rescale-inf"),
    pytest.param(dict(do_resize=1), TypeError, "do_resize must be a bool, got 1", id="do-resize-int"),
    pytest.param(dict(resize_mode="bilinear"), ValueError,
                 r"resize_mode must be one of \('pil', 'torch-uint8', 'float'\), got 'bilinear'", id="resize-mode"),
    pytest.param(dict(pillow_order="pillow11"), ValueError, "pillow_order must be one of", id="pillow-order"),
    pytest.param(dict(input_range="0-65535"), ValueError, "input_range must be one of", id="input-range"),
    pytest.param(dict(output_dtype=torch.float64), ValueError, "output_dtype must be torch.float32",
                 id="dtype-float64"),
    pytest.param(dict(output_dtype="half-ish"), ValueError, "output_dtype must be one of", id="dtype-string"),
])
def test_config_validation(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        VisionPreprocessConfig(**kwargs)
    with pytest.raises(exc, match=message):  # the same through the module and through replace()
        QwenVisionPreprocessor("qwen2-vl", **kwargs)


def test_config_scalar_mean_std_broadcast():
    c = VisionPreprocessConfig(image_mean=0.5, image_std=0.25)
    assert c.image_mean == (0.5, 0.5, 0.5) and c.image_std == (0.25, 0.25, 0.25)


def test_config_is_frozen():
    with pytest.raises(Exception):
        qvp.PRESETS["qwen2-vl"].patch_size = 16  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------
# nn.Module behaviour
# --------------------------------------------------------------------------------------------------------

def test_state_dict_is_empty_and_buffers_hold_mean_std():
    m = QwenVisionPreprocessor("qwen3-vl")
    assert len(m.state_dict()) == 0
    assert list(m.parameters()) == []
    buffers = dict(m.named_buffers())
    assert set(buffers) == {"mean", "std"}
    assert torch.equal(buffers["mean"], torch.tensor([0.5, 0.5, 0.5]))
    assert torch.equal(buffers["std"], torch.tensor([0.5, 0.5, 0.5]))
    # loading an empty state dict must work strictly (e.g. inside a bigger model's checkpoint)
    m.load_state_dict({}, strict=True)


def test_buffers_move_with_to():
    m = QwenVisionPreprocessor("qwen2-vl")
    m.to("meta")
    assert m.mean.device.type == "meta" and m.std.device.type == "meta"
    m2 = QwenVisionPreprocessor("qwen2-vl").to(torch.float64)
    assert m2.mean.dtype == torch.float64


@pytest.mark.cuda
def test_buffers_move_to_cuda():
    m = QwenVisionPreprocessor("qwen2-vl").to("cuda")
    assert m.mean.is_cuda and m.std.is_cuda


def test_extra_repr():
    m = QwenVisionPreprocessor("qwen2-vl", resize_mode="float", output_dtype=torch.bfloat16, backend="torch")
    text = repr(m)
    assert text.startswith("QwenVisionPreprocessor(")
    for part in ("patch_size=14", "temporal_patch_size=2", "merge_size=2", "min_pixels=3136",
                 "max_pixels=12845056", "resize_mode='float'", "output_dtype=torch.bfloat16", "backend='torch'"):
        assert part in text, (part, text)


# --------------------------------------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------------------------------------

MODES = [pytest.param("pil", id="pil"), pytest.param("float", id="float")]


@pytest.mark.parametrize("mode", MODES)
def test_batched_equals_one_by_one(rgb_chw, mode):
    m = QwenVisionPreprocessor("qwen2-vl", resize_mode=mode, **SMALL)
    a = rgb_chw["astronaut"]
    batch = torch.stack([a, a.flip(-1), 255 - a])
    out = m(batch)
    singles = [m(batch[i]) for i in range(3)]
    assert torch.equal(out.pixel_values, torch.cat([s.pixel_values for s in singles]))
    assert torch.equal(out.grid_thw, torch.cat([s.grid_thw for s in singles]))
    imgs = [rgb_chw["chelsea"], rgb_chw["rocket"], rgb_chw["coffee"][:, 100:, 50:]]
    out = m(imgs)
    singles = [m(i) for i in imgs]
    assert torch.equal(out.pixel_values, torch.cat([s.pixel_values for s in singles]))
    assert torch.equal(out.grid_thw, torch.cat([s.grid_thw for s in singles]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [pytest.param(torch.uint8, id="uint8"), pytest.param(torch.float32, id="float32")])
def test_input_not_modified(rgb_chw, mode, dtype):
    m = QwenVisionPreprocessor("qwen2-vl", resize_mode=mode, **SMALL)
    x = rgb_chw["coffee"].to(dtype)
    before, version = x.clone(), x._version
    m(x)
    m([x, x[:, :200]])
    m(x[None].expand(2, -1, -1, -1))
    assert x._version == version and torch.equal(x, before)


def test_numpy_pil_and_rgba_inputs_not_modified(rgb_hwc, rgba_hwc):
    m = QwenVisionPreprocessor("qwen2-vl", **SMALL)
    arr = np.array(rgb_hwc["chelsea"])  # writeable copy
    rgba = np.array(rgba_hwc)
    im = Image.fromarray(rgba, mode="RGBA")
    arr0, rgba0, im0 = arr.copy(), rgba.copy(), im.tobytes()
    m(arr)
    m(rgba)
    m(im)
    m(torch.from_numpy(rgba).permute(2, 0, 1))
    assert np.array_equal(arr, arr0) and np.array_equal(rgba, rgba0)
    assert im.tobytes() == im0 and im.mode == "RGBA"


@pytest.mark.parametrize("config", [
    pytest.param(dict(resize_mode="pil"), id="pil"),
    pytest.param(dict(resize_mode="float"), id="float"),
    # the nearest thing to a pass-through: no resize, no rescale, no normalise, one frame, float32 input
    pytest.param(dict(do_resize=False, do_rescale=False, do_normalize=False, compact_images=True, merge_size=1,
                      resize_mode="float"), id="pass-through"),
])
def test_output_never_aliases_input(config):
    m = QwenVisionPreprocessor("qwen2-vl", **config)
    x = torch.rand(3, 14, 14) * 255
    for grad in (False, True):
        xi = x.clone().requires_grad_(grad and config["resize_mode"] == "float")
        out = m(xi).pixel_values
        assert out.untyped_storage().data_ptr() != xi.untyped_storage().data_ptr()
        if not out.requires_grad:
            out.add_(1)
            assert torch.equal(xi.detach(), x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float16, id="fp16")])
def test_low_precision_output_is_float32_cast_once(rgb_chw, mode, dtype):
    base = qvp.PRESETS["qwen2-vl"].replace(resize_mode=mode, **SMALL)
    imgs = [rgb_chw["rocket"], rgb_chw["chelsea"]]
    ref = qvp.preprocess(imgs, base).pixel_values
    out = qvp.preprocess(imgs, base.replace(output_dtype=dtype)).pixel_values
    assert out.dtype == dtype
    assert torch.equal(out, ref.to(dtype))


@pytest.mark.parametrize("preset", ["qwen2-vl", "qwen3-vl"])
@pytest.mark.parametrize("mode", MODES)
def test_compact_images_is_the_first_frame(rgb_chw, preset, mode):
    cfg = qvp.PRESETS[preset].replace(resize_mode=mode, max_pixels=200 * 200, min_pixels=32 * 32)
    imgs = [rgb_chw["coffee"], rgb_chw["astronaut"]]
    full = qvp.preprocess(imgs, cfg)
    compact = qvp.preprocess(imgs, cfg.replace(compact_images=True))
    p, t = cfg.patch_size, cfg.temporal_patch_size
    assert compact.pixel_values.shape == (full.pixel_values.shape[0], 3 * p * p)
    assert torch.equal(compact.grid_thw, full.grid_thw)
    frames = full.pixel_values.view(-1, 3, t, p * p)
    assert torch.equal(compact.pixel_values, frames[:, :, 0].reshape(-1, 3 * p * p))
    # and every frame of a still image is the same
    for k in range(1, t):
        assert torch.equal(frames[:, :, k], frames[:, :, 0])


def test_non_contiguous_input_equals_contiguous(rgb_chw):
    m = QwenVisionPreprocessor("qwen2-vl", **SMALL)
    hwc = rgb_chw["rocket"].permute(1, 2, 0).contiguous()
    view = hwc.permute(2, 0, 1)[:, 1::2, 3:]  # channels-last storage, every other row
    assert not view.is_contiguous()
    assert torch.equal(m(view).pixel_values, m(view.contiguous()).pixel_values)
    assert torch.equal(m(hwc.numpy(), layout="hwc").pixel_values, m(hwc.permute(2, 0, 1)).pixel_values)


def test_input_errors():
    m = QwenVisionPreprocessor("qwen2-vl")
    with pytest.raises(ValueError, match="at least one image"):
        m([])
    with pytest.raises(TypeError, match="expected a torch.Tensor, numpy.ndarray, PIL.Image"):
        m("image.png")
    with pytest.raises(TypeError, match="expected dtype uint8.*int32"):
        m(torch.zeros(3, 28, 28, dtype=torch.int32))
    with pytest.raises(ValueError, match="looks channels-last"):
        m(torch.zeros(28, 28, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"float values must lie in \[0, 255\]"):
        m(torch.full((3, 28, 28), 300.0))
    with pytest.raises(ValueError, match="NaN or Inf"):
        m(torch.full((3, 28, 28), float("nan")))


# --------------------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("mode", MODES)
def test_cuda_equals_cpu(rgb_chw, backend, mode):
    cpu = QwenVisionPreprocessor("qwen2-vl", resize_mode=mode, backend="torch", **SMALL)
    gpu = QwenVisionPreprocessor("qwen2-vl", resize_mode=mode, backend=backend, **SMALL).to("cuda")
    imgs = [rgb_chw["astronaut"], rgb_chw["chelsea"], rgb_chw["rocket"]]
    ref = cpu(imgs)
    out = gpu([i.cuda() for i in imgs])
    assert out.pixel_values.is_cuda and not out.grid_thw.is_cuda
    assert torch.equal(out.grid_thw, ref.grid_thw)
    assert torch.equal(out.pixel_values.cpu(), ref.pixel_values)
    batch = torch.stack([imgs[0], imgs[0].flip(-1)])
    assert torch.equal(gpu(batch.cuda()).pixel_values.cpu(), cpu(batch).pixel_values)


def test_read_only_numpy_input_gives_no_warning():
    """Regression: ``np.asarray(pil_image)`` is read-only, and torch warned about it on every first call.

    Run in a fresh interpreter: torch emits that warning once per process, so an earlier test could hide it.
    """
    import subprocess
    import sys

    code = ("import numpy as np, qwen_vis_prep as qvp\n"
            "a = np.zeros((64, 64, 3), np.uint8); a.setflags(write=False)\n"
            "qvp.preprocess(a, 'qwen2-vl'); qvp.preprocess([a, a[:, :40]], 'qwen2-vl')\n")
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
