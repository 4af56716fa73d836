"""load_images against Pillow's decode of the same bytes, EXIF orientation against PIL.ImageOps.exif_transpose,
the per-file errors, and unpatchify(preprocess(x)) against Pillow's resize.

JPEG on the CPU: torchvision and Pillow both decode with libjpeg-turbo's defaults (integer IDCT, fancy
upsampling), so the pixels are expected to be *identical*; nvJPEG (GPU) is compared with a bound instead."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
import torch

from qwen_vis_prep import PRESETS, preprocess
import qwen_vis_prep.io as qio
from qwen_vis_prep.io import (ImageLoadError, expand_paths, load_images, nvjpeg_available, sample_images,
                              try_load_images, unpatchify)

# nvJPEG vs libjpeg-turbo (measured on an H200, CUDA 13, torchvision 0.26, Pillow 12.3; see docs/ecosystem.md):
# files without chroma subsampling (4:4:4, grayscale) decode identically -- same integer IDCT, nothing to
# upsample. Chroma-subsampled files (4:2:0, 4:2:2) differ where the colour changes, because nvJPEG upsamples
# chroma differently from libjpeg-turbo's "fancy" triangular filter: up to 46 levels at sharp colour edges,
# mean |diff| 0.18..0.70 level. No bound follows from the math there; the test checks the mean (a wrong
# orientation, channel order or colour conversion moves it by tens of levels) and the measured maximum.
NVJPEG_SUBSAMPLED_MEAN = 1.0
NVJPEG_SUBSAMPLED_MAX = 64


def _encode(arr: np.ndarray, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _pillow_rgb(data: bytes, exif: bool = True) -> torch.Tensor:
    """What the core path sees from ``PIL.Image.open``: upright, transparency composited onto white."""
    from qwen_vis_prep.checks import pil_to_hwc

    with PIL.Image.open(io.BytesIO(data)) as im:
        im = PIL.ImageOps.exif_transpose(im) if exif else im
        return pil_to_hwc(im).permute(2, 0, 1)


def _jpeg_variants(load_image_fixture):
    chelsea = np.ascontiguousarray(load_image_fixture("chelsea")[:299, :447])  # odd sizes: partial MCUs
    gray = np.ascontiguousarray(load_image_fixture("camera")[:301, :255, 0])
    return {
        "420-q90": _encode(chelsea, quality=90),
        "422": _encode(chelsea, quality=90, subsampling=1),
        "444": _encode(chelsea, quality=95, subsampling=0),
        "progressive": _encode(chelsea, quality=80, progressive=True),
        "q30": _encode(chelsea, quality=30),
        "gray": _encode(gray, quality=85),
        "cmyk": _encode_cmyk(chelsea),
    }


def _encode_cmyk(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.Image.fromarray(arr).convert("CMYK").save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("path", sample_images(), ids=lambda p: p.name)
def test_bundled_samples_equal_pillow(path):
    img = qio.load_image(path)
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and img.device.type == "cpu"
    assert torch.equal(img, _pillow_rgb(path.read_bytes()))


def test_jpeg_cpu_decode_is_pillow_exact(load_image):
    variants = _jpeg_variants(load_image)
    decoded = load_images(list(variants.values()))
    for (name, data), img in zip(variants.items(), decoded):
        assert torch.equal(img, _pillow_rgb(data)), name


def test_bytes_path_and_memoryview_agree(tmp_path):
    src = sample_images()[0]
    data = src.read_bytes()
    (tmp_path / "x.jpg").write_bytes(data)
    a, b, c, d = load_images([str(src), tmp_path / "x.jpg", data, memoryview(data)])
    assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_like_exif_transpose(orientation, load_image):
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    data = _encode(np.ascontiguousarray(load_image("chelsea")[:90, :160]), exif=exif.tobytes())
    img = qio.load_image(data)
    assert torch.equal(img, _pillow_rgb(data))
    raw = load_images([data], apply_exif_orientation=False)[0]
    assert torch.equal(raw, _pillow_rgb(data, exif=False))


def test_exif_orientation_png_goes_through_pillow(load_image):
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    data = _encode(np.ascontiguousarray(load_image("coffee")[:50, :70]), "PNG", exif=exif.tobytes())
    assert torch.equal(qio.load_image(data), _pillow_rgb(data))
    assert qio.load_image(data).shape[-2:] == (70, 50)


def test_rgba_and_gray_like_core_path():
    """RGBA: composited onto white with Pillow's alpha_composite, as the core path does for a PIL image."""
    for path in sample_images():
        if path.suffix != ".png":
            continue
        with PIL.Image.open(path) as im:
            ref = preprocess(im, "qwen2-vl")
        out = preprocess(qio.load_image(path), "qwen2-vl")
        assert torch.equal(out.grid_thw, ref.grid_thw) and torch.equal(out.pixel_values, ref.pixel_values), path


def test_palette_png_with_transparency_and_la(load_image):
    rgb = np.ascontiguousarray(load_image("chelsea")[:64, :80])
    p = PIL.Image.fromarray(rgb).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    p.save(buf, "PNG", transparency=3)
    la = io.BytesIO()
    PIL.Image.fromarray(rgb).convert("LA").save(la, "PNG")
    for data in (buf.getvalue(), la.getvalue(), _encode(rgb, "WEBP", lossless=True), _encode(rgb, "BMP")):
        assert torch.equal(qio.load_image(data), _pillow_rgb(data))


def test_errors_name_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    good = sample_images()[0]
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:2000])
    sources = [str(tmp_path / "missing.jpg"), str(tmp_path / "notes.txt"), str(good), str(tmp_path / "empty.png"),
               str(tmp_path / "trunc.jpg"), str(tmp_path), b"\x89PNG\r\n\x1a\n garbage"]
    report = try_load_images(sources)
    assert report.indices == [2] and report.names == [str(good)] and len(report.images) == 1
    reasons = {e.source: e.reason for e in report.errors}
    assert reasons[str(tmp_path / "missing.jpg")] == "no such file"
    assert reasons[str(tmp_path / "notes.txt")] == "unsupported or unrecognised image format"
    assert reasons[str(tmp_path / "empty.png")] == "empty file"
    assert reasons[str(tmp_path / "trunc.jpg")].startswith("corrupt or unsupported JPEG")
    assert reasons[str(tmp_path)] == "is a directory, not an image file"
    assert "<bytes #6>" in reasons
    for e in report.errors:  # one line each, starting with the file's name
        assert "\n" not in str(e) and str(e).startswith(e.source + ": ")
    with pytest.raises(ImageLoadError, match=r"missing.jpg: no such file \(and 5 more\)"):
        load_images(sources)


def test_expand_paths_recursive_sorted_and_missing(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    for name in ("b/c/z.png", "b/a.JPG", "top.webp", "b/readme.md", ".hidden/x.png", "b/.y.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files, errors = expand_paths([tmp_path, tmp_path / "b" / "readme.md", tmp_path / "nope"])
    rel = [str(p)[len(str(tmp_path)) + 1:] for p in files]
    assert rel == ["b/a.JPG", "b/c/z.png", "top.webp", "b/readme.md"]
    assert [e.reason for e in errors] == ["no such file or directory"]


@pytest.mark.parametrize("preset", ["qwen2-vl", "qwen3-vl"])
@pytest.mark.parametrize("path", sample_images(), ids=lambda p: p.name)
def test_unpatchify_inverts_preprocess_exactly(preset, path):
    """unpatchify(preprocess(x)) is the resized image, equal to Pillow's own BICUBIC resize (pil mode)."""
    config = PRESETS[preset].replace(max_pixels=150_000)
    img = qio.load_image(path)
    batch = preprocess(img, config)
    back = unpatchify(batch.pixel_values, batch.grid_thw, config)
    h, w = back.shape[-2:]
    _, gh, gw = batch.grid_thw[0].tolist()
    assert (h, w) == (gh * config.patch_size, gw * config.patch_size)
    ref = PIL.Image.fromarray(img.permute(1, 2, 0).numpy()).resize((w, h), PIL.Image.BICUBIC)
    assert torch.equal(back, torch.from_numpy(np.asarray(ref)).permute(2, 0, 1))


def test_unpatchify_picks_image_of_batch_and_compact_rows():
    imgs = [qio.load_image(p) for p in sample_images()[:3]]
    for config in (PRESETS["qwen2-vl"], PRESETS["qwen2-vl"].replace(compact_images=True, do_normalize=False)):
        batch = preprocess(imgs, config)
        for i, img in enumerate(imgs):
            single = preprocess(img, config)
            assert torch.equal(unpatchify(batch.pixel_values, batch.grid_thw, config, index=i),
                               unpatchify(single.pixel_values, single.grid_thw, config))
    with pytest.raises(IndexError):
        unpatchify(batch.pixel_values, batch.grid_thw, config, index=3)


def test_unpatchify_bfloat16_within_a_level():
    config = PRESETS["qwen2-vl"]
    img = qio.load_image(sample_images()[1])
    exact = preprocess(img, config)
    lossy = preprocess(img, config.replace(output_dtype=torch.bfloat16))
    a = unpatchify(exact.pixel_values, exact.grid_thw, config).int()
    b = unpatchify(lossy.pixel_values, lossy.grid_thw, config).int()
    # bf16 keeps 8 significant bits of values up to |2.2|: a step of 2**-7 * 0.27 * 255 ~ 0.54 level at most
    # at the largest magnitudes, so rounding after de-normalising lands within one level.
    assert (a - b).abs().max() <= 1


def test_bad_decoder_arguments():
    with pytest.raises(ValueError, match="decoder must be"):
        load_images([sample_images()[0]], decoder="fast")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="decoder='nvjpeg' cannot run"):
            load_images([sample_images()[0]], "cpu", decoder="nvjpeg")
        assert nvjpeg_available("cuda")[0] is False


@pytest.mark.cuda
def test_nvjpeg_batch_decode_against_pillow(load_image):
    """nvJPEG on the GPU: same shapes; identical pixels without chroma subsampling, close pixels with it;
    decoder='cpu' on the same device stays Pillow-exact; PNGs and bad files share the batch."""
    assert nvjpeg_available("cuda")[0]
    variants = {p.name: p.read_bytes() for p in sample_images()}
    variants.update(_jpeg_variants(load_image))
    not_subsampled = {"coffee.jpg", "444", "gray", "gray_rings.png", "rgba_disc.png", "cmyk"}
    good = len(variants)
    astronaut = variants["astronaut.jpg"]
    variants["truncated"] = astronaut[:1500]
    # a scrambled scan with intact headers and EOI reaches nvJPEG itself; it must not take the batch down
    variants["scrambled"] = astronaut[:700] + bytes(np.random.default_rng(0).integers(0, 255, 3000,
                                                                                      dtype=np.uint8)) + b"\xff\xd9"
    report = try_load_images(list(variants.values()), "cuda", decoder="nvjpeg")
    failed = [e.source for e in report.errors]
    assert f"<bytes #{good}>" in failed and set(failed) <= {f"<bytes #{good}>", f"<bytes #{good + 1}>"}
    names = list(variants)
    for i, img in zip(report.indices, report.images):
        if i >= good:
            continue
        assert img.is_cuda and img.dtype == torch.uint8
        ref = _pillow_rgb(variants[names[i]])
        assert img.shape == ref.shape, names[i]
        diff = (img.cpu().int() - ref.int()).abs()
        if names[i] in not_subsampled:
            assert int(diff.max()) == 0, names[i]
        else:
            assert float(diff.float().mean()) < NVJPEG_SUBSAMPLED_MEAN, names[i]
            assert int(diff.max()) <= NVJPEG_SUBSAMPLED_MAX, names[i]
    exact = load_images(list(variants.values())[:good], "cuda", decoder="cpu")
    for name, img in zip(names, exact):
        assert img.is_cuda and torch.equal(img.cpu(), _pillow_rgb(variants[name])), name
