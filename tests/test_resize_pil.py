"""``resize_mode="pil"`` is bit-exact Pillow BICUBIC.

The oracle is the installed Pillow itself (``Image.resize(..., BICUBIC)``); the other Pillow generation's
pass order is reproduced by chaining two single-axis Pillow resizes, each of which is exactly one Pillow
pass. Every comparison is ``torch.equal``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL
import pytest
import torch
from PIL import Image

import qwen_vis_prep as qvp
from qwen_vis_prep import layout, sizing
from qwen_vis_prep.backends import cpu_fusion, pillow, reference

BICUBIC = Image.Resampling.BICUBIC
INSTALLED_PILLOW_MAJOR = int(PIL.__version__.split(".")[0])


def pil_resize(hwc: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Installed Pillow: ``[H, W, C] uint8 -> [C, h, w]`` tensor."""
    h, w = size
    out = np.array(Image.fromarray(np.ascontiguousarray(hwc)).resize((w, h), BICUBIC))
    return torch.from_numpy(out).permute(2, 0, 1)


def pil_composed(hwc: np.ndarray, size: tuple[int, int], vertical_first: bool) -> torch.Tensor:
    """Two single-axis Pillow resizes (each one Pillow pass) in the given order."""
    h, w = size
    in_h, in_w = hwc.shape[:2]
    im = Image.fromarray(np.ascontiguousarray(hwc))
    mid = (in_w, h) if vertical_first else (w, in_h)
    out = np.array(im.resize(mid, BICUBIC).resize((w, h), BICUBIC))
    return torch.from_numpy(out).permute(2, 0, 1)


def chw(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(hwc)).permute(2, 0, 1).contiguous()


def crop(img: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    if box is None:
        return img
    y0, y1, x0, x1 = box
    return np.ascontiguousarray(img[y0:y1, x0:x1])


# (image, crop box (y0, y1, x0, x1) or None, output (h, w))
RESIZE_CASES = [
    # downscale
    pytest.param("astronaut", None, (256, 256), id="astronaut-down-half"),
    pytest.param("chelsea", None, (100, 150), id="chelsea-down-third"),
    pytest.param("coffee", None, (123, 187), id="coffee-down-odd"),
    pytest.param("rocket", None, (31, 45), id="rocket-down-14x"),
    pytest.param("astronaut", None, (7, 5), id="astronaut-down-to-7x5"),
    pytest.param("camera", None, (224, 224), id="camera-gray-down-224"),
    # upscale
    pytest.param("chelsea", None, (600, 902), id="chelsea-up-2x"),
    pytest.param("coffee", (100, 180, 200, 310), (333, 517), id="coffee-crop-up-odd"),
    pytest.param("rocket", (0, 37, 0, 53), (370, 530), id="rocket-crop-up-10x"),
    pytest.param("astronaut", (200, 216, 200, 224), (448, 672), id="astronaut-crop-up-28x"),
    # mixed: one axis up, one down
    pytest.param("astronaut", None, (97, 613), id="astronaut-mixed-97x613"),
    pytest.param("coffee", None, (800, 200), id="coffee-mixed-800x200"),
    pytest.param("rocket", None, (300, 1000), id="rocket-mixed-300x1000"),
    pytest.param("chelsea", None, (700, 120), id="chelsea-mixed-700x120"),
    pytest.param("camera", None, (100, 400), id="camera-vertical-first-100x400"),
    # extreme aspect (1:150)
    pytest.param("astronaut", (100, 104, 0, 512), (2, 300), id="strip-4x512-to-2x300"),
    pytest.param("coffee", (50, 54, 0, 600), (8, 1200), id="strip-4x600-to-8x1200"),
    pytest.param("rocket", (0, 427, 300, 304), (600, 4), id="strip-427x4-to-600x4"),
    pytest.param("chelsea", None, (3, 450), id="chelsea-to-3x450"),
    pytest.param("coffee", None, (450, 3), id="coffee-to-450x3"),
    pytest.param("astronaut", (0, 2, 0, 300), (1, 150), id="strip-2x300-to-1x150"),
    # tiny inputs
    pytest.param("astronaut", (250, 251, 250, 251), (1, 1), id="1x1-identity"),
    pytest.param("chelsea", (150, 151, 200, 201), (5, 7), id="1x1-up-5x7"),
    pytest.param("coffee", (10, 12, 30, 33), (1, 1), id="2x3-down-1x1"),
    pytest.param("rocket", (200, 202, 100, 103), (4, 6), id="2x3-up-4x6"),
    pytest.param("astronaut", (300, 302, 300, 303), (7, 2), id="2x3-mixed-7x2"),
    pytest.param("camera", (0, 3, 0, 2), (28, 28), id="3x2-up-28x28"),
    # identity
    pytest.param("astronaut", None, (512, 512), id="astronaut-identity"),
    pytest.param("rocket", None, (427, 640), id="rocket-identity"),
    # one axis only
    pytest.param("astronaut", None, (512, 300), id="width-only-down"),
    pytest.param("chelsea", None, (300, 900), id="width-only-up"),
    pytest.param("coffee", None, (200, 600), id="height-only-down"),
    pytest.param("rocket", None, (999, 640), id="height-only-up"),
]


@pytest.mark.parametrize("name, box, size", RESIZE_CASES)
def test_resize_matches_installed_pillow(load_image, name, box, size):
    hwc = crop(load_image(name), box)
    ours = qvp.resize(chw(hwc), size, mode="pil", backend="torch")
    assert ours.dtype == torch.uint8 and tuple(ours.shape) == (3, *size)
    assert torch.equal(ours, pil_resize(hwc, size))


@pytest.mark.parametrize("name, size", [
    pytest.param("camera", (224, 224), id="camera-down"),
    pytest.param("moon", (97, 613), id="moon-mixed"),
    pytest.param("page", (400, 800), id="page-up"),
    pytest.param("text", (60, 448), id="text-height-only"),
])
def test_resize_gray_matches_pillow_L_mode(gray_hw, name, size):
    # Pillow resizes "L" images with a separate 1-byte-per-pixel loop; each of our channels must equal it.
    gray = gray_hw[name]
    h, w = size
    ref = torch.from_numpy(np.array(Image.fromarray(gray, mode="L").resize((w, h), BICUBIC)))
    ours = qvp.resize(torch.from_numpy(gray.copy())[None].expand(3, -1, -1), size, mode="pil", backend="torch")
    for c in range(3):
        assert torch.equal(ours[c], ref)


def test_resize_batched_and_list(rgb_chw):
    """A ``[B, 3, H, W]`` batch and a ragged list give what Pillow gives image by image."""
    a = rgb_chw["astronaut"]
    batch = torch.stack([a, a.flip(-1), a.flip(-2)])
    out = qvp.resize(batch, (123, 321), mode="pil", backend="torch")
    assert tuple(out.shape) == (3, 3, 123, 321)
    for i in range(3):
        assert torch.equal(out[i], pil_resize(batch[i].permute(1, 2, 0).numpy(), (123, 321)))
    imgs = [rgb_chw["chelsea"], rgb_chw["coffee"], rgb_chw["rocket"]]
    sizes = [(50, 60), (401, 333), (427, 100)]
    outs = qvp.resize(imgs, sizes, mode="pil", backend="torch")
    for img, s, o in zip(imgs, sizes, outs):
        assert torch.equal(o, pil_resize(img.permute(1, 2, 0).numpy(), s))


def test_resize_non_contiguous_input(rgb_chw):
    """A strided view (channels-last storage, flipped) resizes like its contiguous copy would in Pillow."""
    hwc = rgb_chw["coffee"].permute(1, 2, 0).contiguous()
    view = hwc.permute(2, 0, 1)[:, ::2, 1::3]  # non-contiguous, strided
    assert not view.is_contiguous()
    out = qvp.resize(view, (77, 91), mode="pil", backend="torch")
    assert torch.equal(out, pil_resize(view.permute(1, 2, 0).numpy(), (77, 91)))


# --------------------------------------------------------------------------------------------------------
# Pillow generations: pass order
# --------------------------------------------------------------------------------------------------------

# (image, output size) where Pillow 13's rule picks vertical first: dy > 0, dy > 2 * dx, width changes.
VERTICAL_FIRST_CASES = [
    pytest.param("astronaut", (97, 613), id="astronaut-97x613"),
    pytest.param("astronaut", (100, 400), id="astronaut-100x400"),
    pytest.param("coffee", (37, 590), id="coffee-37x590"),
    pytest.param("rocket", (57, 700), id="rocket-57x700"),
    pytest.param("chelsea", (29, 433), id="chelsea-29x433"),
]
# ... and where it keeps horizontal first.
HORIZONTAL_FIRST_CASES = [
    pytest.param("astronaut", (300, 101), id="astronaut-300x101"),
    pytest.param("coffee", (700, 200), id="coffee-up-down"),
    pytest.param("rocket", (200, 213), id="rocket-both-down-wide"),
    pytest.param("chelsea", (100, 150), id="chelsea-both-down"),
]


def _rule(in_h, in_w, h, w) -> bool:
    dy, dx = in_h - h, in_w - w
    return dy > 0 and dy > 2 * dx and w != in_w and h != in_h


@pytest.mark.parametrize("name, size", VERTICAL_FIRST_CASES + HORIZONTAL_FIRST_CASES)
def test_pillow12_order_is_horizontal_first(load_image, name, size):
    hwc = load_image(name)
    ref = pil_composed(hwc, size, vertical_first=False)
    assert torch.equal(qvp.resize(chw(hwc), size, pillow_order="pillow12", backend="torch"), ref)


@pytest.mark.parametrize("name, size", VERTICAL_FIRST_CASES)
def test_pillow13_order_goes_vertical_first(load_image, name, size):
    hwc = load_image(name)
    assert _rule(*hwc.shape[:2], *size)
    v_first = pil_composed(hwc, size, vertical_first=True)
    h_first = pil_composed(hwc, size, vertical_first=False)
    assert not torch.equal(v_first, h_first), "case cannot tell the two orders apart"
    ours = qvp.resize(chw(hwc), size, pillow_order="pillow13", backend="torch")
    assert torch.equal(ours, v_first)
    # and "pillow12" really is the other order here
    assert torch.equal(qvp.resize(chw(hwc), size, pillow_order="pillow12", backend="torch"), h_first)


@pytest.mark.parametrize("name, size", HORIZONTAL_FIRST_CASES)
def test_pillow13_order_keeps_horizontal_first(load_image, name, size):
    hwc = load_image(name)
    assert not _rule(*hwc.shape[:2], *size)
    ours = qvp.resize(chw(hwc), size, pillow_order="pillow13", backend="torch")
    assert torch.equal(ours, pil_composed(hwc, size, vertical_first=False))


@pytest.mark.parametrize("name, size", VERTICAL_FIRST_CASES)
def test_installed_order_matches_installed_pillow(load_image, name, size):
    hwc = load_image(name)
    assert torch.equal(qvp.resize(chw(hwc), size, pillow_order="installed", backend="torch"),
                       pil_resize(hwc, size))
    expected = "pillow13" if INSTALLED_PILLOW_MAJOR >= 13 else "pillow12"
    assert sizing.installed_pillow_order() == expected


def _random_size_quads(rng: np.random.Generator, n: int) -> list[tuple[int, int, int, int]]:
    quads = []
    for _ in range(n):
        in_h, in_w = (int(v) for v in rng.integers(2, 90, size=2))
        quads.append((in_h, in_w, int(rng.integers(1, 120)), int(rng.integers(1, 120))))
    # the rule's boundary: dy == 2 * dx (horizontal first) and dy == 2 * dx + 1 (vertical first)
    for _ in range(n // 4):
        in_w = int(rng.integers(8, 80))
        dx = int(rng.integers(1, in_w // 2 + 1))
        for extra in (-1, 0, 1):
            dy = 2 * dx + extra
            in_h = dy + int(rng.integers(1, 40))
            quads.append((in_h, in_w, in_h - dy, in_w - dx))
    return quads


def test_pillow_vertical_first_predicts_installed_pillow(rng):
    """``sizing.pillow_vertical_first(..., "installed")`` names the pass order Pillow itself uses.

    The order is read off Pillow by comparing ``Image.resize`` with the two single-axis compositions on
    noise (sizes where the two compositions agree cannot tell, and are skipped).
    """
    told = {True: 0, False: 0}
    for in_h, in_w, h, w in _random_size_quads(rng, 400):
        hwc = rng.integers(0, 256, size=(in_h, in_w, 3), dtype=np.uint8)
        v_first = pil_composed(hwc, (h, w), vertical_first=True)
        h_first = pil_composed(hwc, (h, w), vertical_first=False)
        if torch.equal(v_first, h_first):
            continue
        direct = pil_resize(hwc, (h, w))
        predicted = sizing.pillow_vertical_first(in_h, in_w, h, w, "installed")
        assert torch.equal(direct, v_first if predicted else h_first), (
            f"in {in_h}x{in_w} -> out {h}x{w}: predicted vertical_first={predicted}, Pillow disagrees")
        told[predicted] += 1
    # the sample must exercise both answers, or the test proves nothing
    if INSTALLED_PILLOW_MAJOR >= 13:
        assert told[True] >= 30 and told[False] >= 30, told
    else:
        assert told[False] >= 30, told


def test_pillow_vertical_first_explicit_orders():
    assert sizing.pillow_vertical_first(512, 512, 97, 613, "pillow13") is True
    assert sizing.pillow_vertical_first(512, 512, 97, 613, "pillow12") is False
    # boundary: dy == 2 * dx stays horizontal, dy == 2 * dx + 1 goes vertical
    assert sizing.pillow_vertical_first(100, 50, 80, 40, "pillow13") is False
    assert sizing.pillow_vertical_first(100, 50, 79, 40, "pillow13") is True
    # a side that keeps its size means one pass only
    assert sizing.pillow_vertical_first(100, 50, 10, 50, "pillow13") is False


# --------------------------------------------------------------------------------------------------------
# the Pillow CPU fast path inside preprocess == the pure-torch integer path
# --------------------------------------------------------------------------------------------------------

def torch_reference(img: torch.Tensor, config: qvp.VisionPreprocessConfig) -> torch.Tensor:
    """Pure-torch composition: integer Pillow resize, normalise, patchify. ``img [3, H, W] uint8``."""
    in_h, in_w = img.shape[-2:]
    size = sizing.target_size(in_h, in_w, config)
    vf = sizing.pillow_vertical_first(in_h, in_w, size[0], size[1], config.pillow_order)
    x = reference.resize_fixed(img[None], size, vf)
    scale = config.rescale_factor if config.do_rescale else None
    mean = torch.tensor(config.image_mean) if config.do_normalize else None
    std = torch.tensor(config.image_std) if config.do_normalize else None
    y = reference.normalize(x, scale, mean, std)
    gh, gw = size[0] // config.patch_size, size[1] // config.patch_size
    out = torch.empty(gh * gw, config.patch_dim, dtype=config.output_dtype)
    layout.patchify_into(out, y, config.patch_size, config.merge_size, config.image_frames)
    return out


def _cfg(preset="qwen2-vl", **kw) -> qvp.VisionPreprocessConfig:
    return qvp.PRESETS[preset].replace(**kw)


FAST_PATH_CONFIGS = [
    pytest.param(_cfg(max_pixels=160 * 160), id="qwen2-down"),
    pytest.param(_cfg(min_pixels=700 * 700, max_pixels=800 * 800), id="qwen2-up"),
    pytest.param(_cfg(max_pixels=160 * 160, pillow_order="pillow12"), id="qwen2-down-pillow12"),
    pytest.param(_cfg(max_pixels=160 * 160, pillow_order="pillow13"), id="qwen2-down-pillow13"),
    pytest.param(_cfg("qwen3-vl", min_pixels=4096, max_pixels=200 * 200), id="qwen3-down"),
    pytest.param(_cfg(max_pixels=300 * 300, compact_images=True), id="qwen2-compact"),
    pytest.param(_cfg(max_pixels=300 * 300, output_dtype=torch.bfloat16), id="qwen2-bf16"),
    pytest.param(_cfg(max_pixels=300 * 300, output_dtype=torch.float16), id="qwen2-fp16"),
    pytest.param(_cfg(max_pixels=300 * 300, do_normalize=False), id="qwen2-no-normalize"),
    pytest.param(_cfg(), id="qwen2-real-preset"),
]


@pytest.mark.parametrize("config", FAST_PATH_CONFIGS)
def test_preprocess_pillow_fast_path_equals_torch_integer_path(rgb_chw, config):
    for name in ("astronaut", "chelsea", "rocket"):
        img = rgb_chw[name]
        got = qvp.preprocess(img, config, backend="torch").pixel_values
        assert torch.equal(got, torch_reference(img, config)), name


NORMALIZER_CONFIGS = [
    pytest.param(_cfg(), id="clip"),
    pytest.param(_cfg("qwen3-vl"), id="half"),
    pytest.param(_cfg(image_mean=(0.1, 0.7, 0.33), image_std=(0.07, 0.9, 0.31)), id="odd-mean-std"),
    pytest.param(_cfg(do_rescale=False), id="no-rescale"),
    pytest.param(_cfg(do_normalize=False), id="no-normalize"),
    pytest.param(_cfg(rescale_factor=1 / 127.5), id="other-rescale"),
]


@pytest.mark.parametrize("gather_only", [False, True], ids=["auto", "gather"])
@pytest.mark.parametrize("config", NORMALIZER_CONFIGS)
def test_cpu_normalizer_equals_level_table(config, gather_only):
    """The Pillow path's NumPy normaliser (arithmetic when it is exact, else a gather) gives the level
    table's values, on a strided [..., 3, P, P] view like the one the Pillow path reads."""
    into = cpu_fusion.cpu_normalizer(config, gather_only)
    lut = reference.level_table(config, torch.device("cpu"))
    rng = np.random.default_rng(7)
    hwc = rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)
    levels = hwc.reshape(2, 2, 14, 3, 2, 14, 3).transpose(0, 3, 1, 4, 6, 2, 5)  # [bh, bw, m, m, 3, p, p]
    dst = np.full(levels.shape, np.nan, np.float32)
    into(levels, dst)
    channel = torch.arange(3).view(3, 1, 1)
    expected = lut[channel, torch.from_numpy(np.ascontiguousarray(levels)).long()]
    assert torch.equal(torch.from_numpy(dst), expected)
    full = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, 0)  # every level of every channel
    out = np.empty((3, 16, 16), np.float32)
    into(full, out)
    assert torch.equal(torch.from_numpy(out).view(3, 256), lut)


def test_preprocess_fast_path_with_gathered_levels(rgb_chw, monkeypatch):
    """The gather fallback, used should the arithmetic ever disagree with the table, through the whole path."""
    config = _cfg(max_pixels=300 * 300)
    original = cpu_fusion.cpu_normalizer
    monkeypatch.setattr(cpu_fusion, "cpu_normalizer", lambda cfg: original(cfg, True))
    for img in (rgb_chw["astronaut"], [rgb_chw["chelsea"], rgb_chw["rocket"]]):
        got = qvp.preprocess(img, config, backend="torch").pixel_values
        imgs = img if isinstance(img, list) else [img]
        assert torch.equal(got, torch.cat([torch_reference(i, config) for i in imgs]))


def test_preprocess_fast_path_ragged_list_and_mixed_sizes(rgb_chw):
    """Several images run one task per image on the thread pool; each must equal the torch path."""
    config = _cfg(max_pixels=250 * 250, pillow_order="pillow13")
    imgs = [rgb_chw["astronaut"][:, :, 30:], rgb_chw["chelsea"], rgb_chw["coffee"][:, 5:400:2],
            rgb_chw["rocket"][:, :100]]
    got = qvp.preprocess(imgs, config, backend="torch").pixel_values
    assert torch.equal(got, torch.cat([torch_reference(i, config) for i in imgs]))


@pytest.mark.parametrize("input_range", ["0-255", "0-1"])
def test_preprocess_fast_path_float_input_rounds_to_levels(rgb_chw, input_range):
    """A float input in pil mode is rounded (half to even) to uint8 levels before Pillow sees it."""
    config = _cfg(max_pixels=200 * 200, input_range=input_range)
    base = rgb_chw["coffee"].to(torch.float32)
    frac = torch.tensor([0.3, 0.5, 0.7, 0.49]).repeat(base.numel() // 4 + 1)[: base.numel()].view(base.shape)
    img = (base + frac).clamp(max=255.0)
    on_255 = img
    if input_range == "0-1":  # documented: such inputs are multiplied by 255 first
        img = img / 255.0
        on_255 = img * 255.0
    levels = on_255.round().to(torch.uint8)  # torch rounding: half to even
    assert not torch.equal(levels, on_255.floor().to(torch.uint8))
    got = qvp.preprocess(img, config, backend="torch").pixel_values
    assert torch.equal(got, torch_reference(levels, config))


@pytest.mark.parametrize("parts", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("size", [
    pytest.param((280, 420), id="down"),
    pytest.param((84, 644), id="vertical-first"),
    pytest.param((840, 1232), id="up"),
    pytest.param((420, 672), id="width-only"),
])
def test_pillow_strips_are_exact(rgb_chw, parts, size):
    """``pillow.image_into`` cuts each pass into strips; any number of strips gives the same bits."""
    config = _cfg(max_pixels=10**8, min_pixels=1)
    img = rgb_chw["rocket"]  # 427 x 640
    if size[0] == 420:
        img = img[:, :420]  # keep the height: a single horizontal pass
    norm = cpu_fusion.cpu_normalizer(config)
    rows = (size[0] // 14) * (size[1] // 14)
    out = torch.empty(rows, config.patch_dim)
    with ThreadPoolExecutor(max_workers=4) as pool:
        pillow.image_into(img, size, "installed", out, norm, 14, 2, 2, pool, parts)
    ref_cfg = config.replace(do_resize=False)
    vf = sizing.pillow_vertical_first(*img.shape[-2:], *size, "installed")
    levels = reference.resize_fixed(img[None], size, vf)[0]
    assert torch.equal(out, torch_reference(levels, ref_cfg))


def test_window_tables_are_pillow_passes(rng):
    """``window_taps`` (the rows pass's tables: ``taps`` consecutive inputs from ``start``, no clamping)
    gives installed Pillow's horizontal pass on random rows of random widths, every window in bounds, for
    the exact tap count and the padded one the kernels compile for."""
    from qwen_vis_prep.resample_tables import padded_taps, pil_taps, window_taps

    checked = 0
    for _ in range(60):
        in_w, out_w = (int(v) for v in rng.integers(1, 700, size=2))
        exact = pil_taps(in_w, out_w)[1].shape[1]
        rows = rng.integers(0, 256, size=(3, in_w), dtype=np.uint8)
        want = np.array(Image.fromarray(rows).resize((out_w, 3), BICUBIC)).astype(np.int64)
        for taps in sorted({exact, padded_taps(exact), exact + 3}):
            if taps > in_w:
                with pytest.raises(ValueError, match="in_size"):
                    window_taps(in_w, out_w, taps)
                continue
            start, weight = window_taps(in_w, out_w, taps)
            assert start.dtype == weight.dtype == np.int32 and weight.shape == (out_w, taps)
            assert start.min() >= 0 and int(start.max()) + taps <= in_w
            window = start[:, None].astype(np.int64) + np.arange(taps)
            acc = (1 << 21) + (rows[:, window].astype(np.int64) * weight).sum(axis=2)
            assert np.array_equal(np.clip(acc >> 22, 0, 255), want), (in_w, out_w, taps)
            checked += 1
    assert checked >= 60
    with pytest.raises(ValueError, match="taps"):  # shorter than the filter
        window_taps(100, 10, 3)
