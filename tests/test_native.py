"""The native backend: the compiled fixed-point resampler (``qwen_vis_prep._resample``).

Expected values come from the installed Pillow (``"pil"`` mode), torch's own uint8 antialiased kernel
(``"torch-uint8"``) and the reference backend (normalisation and layout); never from the native backend.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import qwen_vis_prep as qvp
from qwen_vis_prep import backends
from qwen_vis_prep.backends import native, reference
from qwen_vis_prep.backends.cpu_fusion import thread_pool

BICUBIC = Image.Resampling.BICUBIC
PIL_CONFIG = qvp.VisionPreprocessConfig()
TORCH_CONFIG = PIL_CONFIG.replace(resize_mode="torch-uint8")


def pillow_resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The installed Pillow's BICUBIC of ``[3, H, W] uint8`` -> ``[3, h, w]``."""
    hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
    out = Image.fromarray(hwc, "RGB").resize((size[1], size[0]), BICUBIC)
    return torch.from_numpy(np.array(out)).permute(2, 0, 1)


def torch_resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """torch's CPU uint8 antialiased bicubic of ``[3, H, W]`` (channels-last, see ``test_torch_uint8``)."""
    x = torch.empty((1, *img.shape), dtype=torch.uint8, memory_format=torch.channels_last).copy_(img[None])
    return F.interpolate(x, size=size, mode="bicubic", antialias=True)[0]


def layouts(img: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same image as planar ``[3, H, W]``, as a view of interleaved ``[H, W, 3]`` memory (a decoded
    image), and with strides the C code does not read directly (copied first)."""
    return {"planar": img.contiguous(), "interleaved": img.permute(1, 2, 0).contiguous().permute(2, 0, 1),
            "transposed": img.transpose(1, 2).contiguous().transpose(1, 2)}


def size_cases(rng: np.random.Generator, n: int, limit: int) -> list[tuple[int, int, int, int]]:
    """``(H, W, h, w)``: random sizes, 1-pixel sides, extreme aspects, upscales, one axis only, one down and
    the other up, and both orders of Pillow 13's vertical-first rule."""
    cases = [tuple(int(v) for v in rng.integers(1, limit, 4)) for _ in range(n)]
    return cases + [(1, 1, 5, 7), (5, 7, 1, 1), (1, 40, 3, 9), (40, 1, 9, 3), (9, 60, 9, 1), (60, 9, 1, 9),
                    (3, 300, 1, 28), (300, 3, 28, 2), (20, 30, 20, 17), (20, 30, 11, 30), (17, 23, 51, 69),
                    (200, 20, 50, 19), (20, 200, 19, 50), (33, 47, 33, 47)]


def test_the_extension_is_built():
    """pip builds the resampler wherever a C compiler is found (as on CI); without it every other test here
    would only exercise the fallback."""
    assert native.can_run(torch.device("cpu")) == (True, "")
    assert backends.select("auto", torch.device("cpu"), resize_mode="pil").NAME == "native"
    assert backends.select("auto", torch.device("cpu"), resize_mode="torch-uint8").NAME == "native"
    assert backends.select("auto", torch.device("cpu"), resize_mode="float").NAME == "reference"


@pytest.mark.parametrize("layout", ["planar", "interleaved", "transposed"])
def test_pil_mode_equals_installed_pillow_on_random_sizes(rng, layout):
    for in_h, in_w, h, w in size_cases(rng, 60, 150):
        img = torch.from_numpy(rng.integers(0, 256, (3, in_h, in_w), dtype=np.uint8))
        got = native.resize([layouts(img)[layout]], [(h, w)], PIL_CONFIG)[0]
        assert torch.equal(got, pillow_resize(img, (h, w))), (in_h, in_w, h, w)


def test_portable_strip_kernel_equals_pillow(rng):
    """The horizontal pass's portable kernel (CPUs without AVX2) gives Pillow's and torch's bits too."""
    from qwen_vis_prep._resample import strip_kernel

    before = strip_kernel()
    try:
        assert strip_kernel("portable") == "portable"
        for in_h, in_w, h, w in size_cases(rng, 25, 150):
            img = torch.from_numpy(rng.integers(0, 256, (3, in_h, in_w), dtype=np.uint8))
            assert torch.equal(native.resize([img], [(h, w)], PIL_CONFIG)[0], pillow_resize(img, (h, w)))
            assert torch.equal(native.resize([img], [(h, w)], TORCH_CONFIG)[0], torch_resize(img, (h, w)))
    finally:
        strip_kernel(before)
    with pytest.raises(ValueError, match="expected 'avx2' or 'portable'"):
        strip_kernel("sse9")


@pytest.mark.parametrize("order", ["pillow12", "pillow13"])
def test_both_pillow_generations_pass_orders(rng, order):
    """``pillow_order``: each generation's order of the two passes, against Pillow's own single-axis passes
    chained in that order (each is exactly one Pillow pass)."""
    from qwen_vis_prep.sizing import pillow_vertical_first

    config = PIL_CONFIG.replace(pillow_order=order)
    cases = size_cases(rng, 30, 120) + [(300, 40, 20, 38), (40, 300, 38, 20), (120, 90, 30, 80)]
    vertical_firsts = set()
    for in_h, in_w, h, w in cases:
        img = torch.from_numpy(rng.integers(0, 256, (3, in_h, in_w), dtype=np.uint8))
        vertical_first = pillow_vertical_first(in_h, in_w, h, w, order)
        vertical_firsts.add(vertical_first)
        mid = pillow_resize(img, (h, in_w)) if vertical_first else pillow_resize(img, (in_h, w))
        want = pillow_resize(mid, (h, w))
        assert torch.equal(native.resize([img], [(h, w)], config)[0], want), (in_h, in_w, h, w)
    assert vertical_firsts == ({False, True} if order == "pillow13" else {False})


@pytest.mark.parametrize("layout", ["planar", "interleaved"])
def test_torch_uint8_mode_equals_torch_kernel_on_random_sizes(rng, layout):
    for in_h, in_w, h, w in size_cases(rng, 60, 150):
        img = torch.from_numpy(rng.integers(0, 256, (3, in_h, in_w), dtype=np.uint8))
        got = native.resize([layouts(img)[layout]], [(h, w)], TORCH_CONFIG)[0]
        assert torch.equal(got, torch_resize(img, (h, w))), (in_h, in_w, h, w)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket", "camera"])
def test_real_photos_equal_pillow_and_torch(name):
    """Real photos, downscaled, upscaled, squeezed on one axis and mixed, in both modes."""
    from conftest import load_hwc

    img = torch.from_numpy(load_hwc(name).copy()).permute(2, 0, 1)  # an interleaved view, as decoders give
    in_h, in_w = img.shape[1:]
    for h, w in [(224, 336), (28, 28), (in_h * 2 + 3, in_w + 5), (in_h, in_w // 3), (in_h // 5, in_w),
                 (in_h // 2, in_w * 2), (1, 1)]:
        assert torch.equal(native.resize([img], [(h, w)], PIL_CONFIG)[0], pillow_resize(img, (h, w))), (h, w)
        assert torch.equal(native.resize([img], [(h, w)], TORCH_CONFIG)[0], torch_resize(img, (h, w))), (h, w)


def test_huge_image_equals_pillow(rng):
    """A 24-megapixel image to a serving budget and to the preset's budget (an upscale of 1%), each pass in
    row ranges on the pool: the same bits as the installed Pillow."""
    img = torch.from_numpy(rng.integers(0, 256, (4000, 6000, 3), dtype=np.uint8)).permute(2, 0, 1)
    for h, w in [(728, 1092), (4004, 6020)]:
        out = torch.empty((3, h, w), dtype=torch.uint8)
        native._run(img, (h, w), PIL_CONFIG, ("levels", out.data_ptr()), thread_pool(), 3)
        assert torch.equal(out, pillow_resize(img, (h, w))), (h, w)


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_row_ranges_on_threads_give_the_same_bits(rng, parts):
    """Each pass cut into row ranges that run on the pool (ranges of patch rows on patch boundaries, of a
    horizontal pass on strip boundaries) gives the bits of one range, in both pass orders."""
    for in_h, in_w, h, w in [(333, 517, 224, 336), (517, 333, 336, 224), (90, 700, 56, 168), (700, 90, 168, 56),
                             (50, 60, 112, 140)]:
        img = torch.from_numpy(rng.integers(0, 256, (3, in_h, in_w), dtype=np.uint8))
        for config in (PIL_CONFIG, TORCH_CONFIG, PIL_CONFIG.replace(pillow_order="pillow12")):
            one = torch.empty((3, h, w), dtype=torch.uint8)
            native._run(img, (h, w), config, ("levels", one.data_ptr()), None, 1)
            split = torch.empty((3, h, w), dtype=torch.uint8)
            native._run(img, (h, w), config, ("levels", split.data_ptr()), thread_pool(), parts)
            assert torch.equal(one, split)
            rows = torch.empty((h // 14) * (w // 14), config.patch_dim)
            native._levels_into(img, (h, w), config, rows, config.image_frames, thread_pool(), parts, None)
            ref = torch.empty_like(rows)
            reference.image_group_into(img[None], (h, w), config, ref)
            assert torch.equal(rows, ref)


@pytest.mark.parametrize("mode", ["pil", "torch-uint8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("compact", [False, True])
def test_preprocess_equals_reference(rng, mode, dtype, compact):
    """Resize, normalisation and layout together, for lists, batches, every output dtype and compact
    still images (one temporal copy), against the reference backend bit for bit."""
    config = qvp.VisionPreprocessConfig(resize_mode=mode, output_dtype=dtype, compact_images=compact,
                                        max_pixels=28 * 28 * 300)
    images = [torch.from_numpy(rng.integers(0, 256, (3, int(h), int(w)), dtype=np.uint8))
              for h, w in rng.integers(20, 700, (5, 2))]
    for inputs in (images, torch.stack([images[0]] * 3)):
        got = qvp.preprocess(inputs, config, backend="native")
        want = qvp.preprocess(inputs, config, backend="reference")
        assert torch.equal(got.grid_thw, want.grid_thw)
        assert torch.equal(got.pixel_values, want.pixel_values)


@pytest.mark.parametrize("mode", ["pil", "torch-uint8"])
def test_clips_equal_reference(rng, mode):
    """Clips (odd frame counts pad the last block), each frame into its temporal slots."""
    from qwen_vis_prep import preprocess_videos

    config = qvp.VideoConfig.from_preset("qwen2-vl", resize_mode=mode, max_pixels=28 * 28 * 200)
    clips = [torch.from_numpy(rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8))
             for n, h, w in [(5, 120, 200), (4, 333, 150), (1, 60, 60)]]
    got = preprocess_videos(clips, "qwen2-vl", video_config=config, backend="native")
    want = preprocess_videos(clips, "qwen2-vl", video_config=config, backend="reference")
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])


def test_float_inputs_follow_the_reference(rng):
    """Float input is rounded to levels before a fixed-point resize; float input at its target size keeps
    its values (the reference runs it)."""
    img = torch.from_numpy(rng.random((3, 100, 140), dtype=np.float32)) * 255
    for config in (PIL_CONFIG.replace(max_pixels=28 * 28 * 10), PIL_CONFIG.replace(input_range="0-1")):
        x = img / 255 if config.input_range == "0-1" else img
        got = qvp.preprocess([x, x[:, :56, :84]], config, backend="native").pixel_values
        assert torch.equal(got, qvp.preprocess([x, x[:, :56, :84]], config, backend="reference").pixel_values)


def test_without_the_extension_auto_falls_back_and_says_so_once(monkeypatch, rng):
    """Where the extension was not built, ``"auto"`` runs Pillow / torch's kernel (the same bits) with one
    RuntimeWarning that names the cause; asking for ``backend="native"`` raises."""
    img = torch.from_numpy(rng.integers(0, 256, (3, 90, 130), dtype=np.uint8))
    want = qvp.preprocess(img, PIL_CONFIG, backend="native").pixel_values
    monkeypatch.setattr(native, "resample_rows", None)
    monkeypatch.setattr(native, "_MISSING", "no compiler", raising=False)
    monkeypatch.setattr(backends, "_WARNED_NO_NATIVE", [])
    with pytest.warns(RuntimeWarning, match="not built .no compiler.*'pillow'"):
        assert torch.equal(qvp.preprocess(img, PIL_CONFIG).pixel_values, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.select("auto", torch.device("cpu"), resize_mode="torch-uint8").NAME == "aten"
    with pytest.raises(ValueError, match="backend='native' cannot run here: .*not built"):
        qvp.preprocess(img, PIL_CONFIG, backend="native")


def test_the_c_entry_point_rejects_bad_arguments():
    from qwen_vis_prep._resample import resample_rows

    out = torch.empty(4, 588)
    buf = torch.zeros(3, 28, 28, dtype=torch.uint8)
    args = (0, buf.data_ptr(), 784, 28, 1, 28, 28, 0, 0, 0, 28)
    sink = ("patches", out.data_ptr(), 588, 4, 0, 14, 2, 1, 0, 1)
    with pytest.raises(ValueError, match="patch boundary"):
        resample_rows(*args, 0, 13, sink)
    with pytest.raises(ValueError, match="past the end"):
        resample_rows(*args, 0, 29, ("levels", buf.data_ptr()))
    with pytest.raises(ValueError, match="bad sink"):
        resample_rows(*args, 0, 28, ("patches", out.data_ptr(), 588, 8, 0, 14, 2, 1, 0, 1))
    with pytest.raises(ValueError, match="bad pass"):
        resample_rows(0, buf.data_ptr(), 1, 28, 2, 28, 28, 0, 0, 0, 28, 0, 28, ("levels", buf.data_ptr()))
