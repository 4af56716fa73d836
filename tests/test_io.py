"""load_images against Pillow's decode of the same bytes, EXIF orientation against PIL.ImageOps.exif_transpose,
the per-file errors, and unpatchify(preprocess(x)) against Pillow's resize.

JPEG on the CPU: torchvision and Pillow both decode with libjpeg-turbo's defaults (integer IDCT, fancy
upsampling), so the pixels are expected to be *identical*; nvJPEG (GPU) is compared with a bound instead."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFile
import PIL.ImageOps
import pytest
import torch

from qwen_vis_prep import PRESETS, preprocess
import qwen_vis_prep.io as qio
from qwen_vis_prep.io import (ImageLoadError, check_pixel_count, expand_paths, load_images, max_image_pixels,
                              nvjpeg_available, sample_images, set_max_image_pixels, try_load_images, unpatchify)

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


# ------------------------------------------------------------------------------------- bounded decoding

PILLOW_DEFAULT_LIMIT = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS as shipped
LIMIT_HINT = "(qwen_vis_prep.io.set_max_image_pixels / QWEN_VIS_PREP_MAX_IMAGE_PIXELS)"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def pixel_limit():
    """``set_max_image_pixels``, with the limit the test found restored afterwards."""
    previous = max_image_pixels()
    yield set_max_image_pixels
    set_max_image_pixels(previous)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A 16x16 baseline JPEG whose frame header (SOF0) declares ``width`` x ``height`` instead."""
    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 16), (200, 30, 10)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = 2
    while data[i + 1] != 0xC0:  # walk the segments: 0xFFC0 could also occur inside a table
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_declaring(width: int, height: int) -> bytes:
    """A 16x16 PNG whose IHDR (CRC fixed up) declares ``width`` x ``height`` instead."""
    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 16), (200, 30, 10)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _no_decoding(monkeypatch):
    def called(*args, **kwargs):
        raise AssertionError("a decoder ran on a file over the pixel limit")

    monkeypatch.setattr(qio, "_torchvision_decode_jpeg", called)
    monkeypatch.setattr(qio, "_decode_pillow", called)
    monkeypatch.setattr(qio, "_decode_nvjpeg", called)
    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", called)


def test_jpeg_over_pixel_limit_refused_before_decoding(tmp_path, monkeypatch, pixel_limit):
    pixel_limit(PILLOW_DEFAULT_LIMIT)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_jpeg_declaring(20000, 20000))
    _no_decoding(monkeypatch)
    expected = (f"{bomb}: declares 20000x20000 = 400000000 pixels, more than the limit of 89478485 "
                f"{LIMIT_HINT}")
    with pytest.raises(ImageLoadError) as e:
        load_images([bomb])
    assert str(e.value) == expected and e.value.source == str(bomb)
    with pytest.raises(ImageLoadError) as e:  # the CPU decoder checks on its own too
        qio._decode_cpu(bomb.read_bytes(), str(bomb), True)
    assert str(e.value) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB is Linux's")
def test_jpeg_bomb_peak_memory_stays_small(tmp_path):
    """The real thing in a fresh process: 20000x20000 would be 1.2 GB decoded; the peak RSS must not move."""
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_jpeg_declaring(20000, 20000))
    script = (
        "import resource, sys\n"
        "import torchvision.io\n"
        "import qwen_vis_prep.io as qio\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "report = qio.try_load_images([sys.argv[1]])\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print((after - before) // 1024)\n"
        "print(report.errors[0].reason if report.errors else 'decoded')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QWEN_VIS_PREP_MAX_IMAGE_PIXELS"}
    out = subprocess.run([sys.executable, "-c", script, str(bomb)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    grown_mb, reason = out.stdout.strip().splitlines()
    assert reason.startswith("declares 20000x20000 = 400000000 pixels, more than the limit of 89478485")
    assert int(grown_mb) < 300


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_over_pixel_limit_refused_before_load(tmp_path, monkeypatch, pixel_limit):
    """Pillow path: the size from ``Image.open`` (header only) is checked before ``load()``. Pillow's own
    check, set to our limit while we decode, warns between 1x and 2x of it and refuses above 2x (without
    saying the width and height); either way the file is refused under our limit."""
    pixel_limit(PILLOW_DEFAULT_LIMIT)
    (tmp_path / "over.png").write_bytes(_png_declaring(10000, 10000))  # 1.1x the limit
    (tmp_path / "bomb.png").write_bytes(_png_declaring(20000, 20000))  # 4.5x
    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", lambda self: pytest.fail("load() ran"))
    report = try_load_images([tmp_path / "over.png", tmp_path / "bomb.png"])
    assert report.images == []
    reasons = {e.source: e.reason for e in report.errors}
    assert reasons[str(tmp_path / "over.png")] == (f"declares 10000x10000 = 100000000 pixels, more than the "
                                                   f"limit of 89478485 {LIMIT_HINT}")
    assert reasons[str(tmp_path / "bomb.png")] == (f"declares 400000000 pixels, more than the limit of 89478485 "
                                                   f"{LIMIT_HINT}")


def test_nvjpeg_routing_checks_before_gpu_jobs(monkeypatch, pixel_limit):
    """With nvJPEG reported available, a file over the limit never reaches the GPU batch (nor any decoder);
    the good JPEG still goes to nvJPEG."""
    pixel_limit(1000)
    batches = []

    def fake_nvjpeg(jobs, blobs, results, device, exif):
        batches.append([i for i, _ in jobs])
        for i, info in jobs:
            results[i] = torch.zeros(3, info.height, info.width, dtype=torch.uint8)
        return []

    monkeypatch.setattr(qio, "nvjpeg_available", lambda device="cuda": (True, ""))
    monkeypatch.setattr(qio, "_decode_nvjpeg", fake_nvjpeg)
    monkeypatch.setattr(qio, "_torchvision_decode_jpeg", lambda *a, **k: pytest.fail("CPU decoder ran"))
    report = try_load_images([_jpeg_declaring(40, 40), _jpeg_declaring(20, 20)], "cuda", decoder="nvjpeg")
    assert batches == [[1]] and report.indices == [1] and report.images[0].shape == (3, 20, 20)
    assert [str(e) for e in report.errors] == [f"<bytes #0>: declares 40x40 = 1600 pixels, more than the "
                                               f"limit of 1000 {LIMIT_HINT}"]


def test_pixel_limit_set_at_run_time(pixel_limit, monkeypatch):
    pixel_limit(1000)
    assert max_image_pixels() == 1000
    rgb = np.zeros((40, 40, 3), np.uint8)
    big, small, edge = _encode(rgb, "PNG"), _encode(rgb[:20, :20], "PNG"), _encode(rgb[:20, :50], "PNG")
    with pytest.warns(PIL.Image.DecompressionBombWarning):  # Pillow's own, at our limit, for the refused one
        report = try_load_images([big, small, edge, _encode(rgb, quality=90), _encode(rgb[:25, :40])])
    assert report.indices == [1, 2, 4]  # 20x50 = 1000 is not over the limit
    assert [e.reason for e in report.errors] == [
        f"declares 40x40 = 1600 pixels, more than the limit of 1000 {LIMIT_HINT}",
        f"declares 40x40 = 1600 pixels, more than the limit of 1000 {LIMIT_HINT}"]
    # Above Pillow's own limit: Pillow decodes too (its check follows ours inside the decode), and its
    # global limit is back afterwards, also after several files decoded on threads.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)
    for limit, previous in ((2000, 1000), (None, 2000)):
        assert pixel_limit(limit) == previous
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            images = load_images([big, big, small])
        assert [tuple(x.shape) for x in images] == [(3, 40, 40), (3, 40, 40), (3, 20, 20)]
        assert PIL.Image.MAX_IMAGE_PIXELS == 100
    assert pixel_limit(0) is None and max_image_pixels() is None
    with pytest.raises(ValueError, match="expects a number of pixels >= 0 or None, got -1"):
        set_max_image_pixels(-1)
    with pytest.raises(TypeError, match="expects an int number of pixels or None, got str"):
        set_max_image_pixels("1000")


def test_pixel_limit_from_environment(monkeypatch):
    for raw, limit in (("1234", 1234), (" 5000 ", 5000), ("0", None), ("none", None), ("None", None),
                       ("", PILLOW_DEFAULT_LIMIT)):
        monkeypatch.setenv("QWEN_VIS_PREP_MAX_IMAGE_PIXELS", raw)
        assert qio._limit_from_env() == limit, raw
    for raw in ("-3", "lots", "1e6"):
        monkeypatch.setenv("QWEN_VIS_PREP_MAX_IMAGE_PIXELS", raw)
        with pytest.raises(ValueError, match="QWEN_VIS_PREP_MAX_IMAGE_PIXELS must be a whole number"):
            qio._limit_from_env()
    env = {**os.environ, "QWEN_VIS_PREP_MAX_IMAGE_PIXELS": "1234"}
    out = subprocess.run([sys.executable, "-c", "import qwen_vis_prep.io as q; print(q.max_image_pixels())"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "1234", out.stderr


def test_check_pixel_count_bounds_one_frame(pixel_limit):
    pixel_limit(100)
    check_pixel_count("clip.mp4", 10, 10)
    with pytest.raises(ImageLoadError) as e:
        check_pixel_count("clip.mp4", 10, 11)
    assert str(e.value) == f"clip.mp4: declares 11x10 = 110 pixels, more than the limit of 100 {LIMIT_HINT}"
    pixel_limit(None)
    check_pixel_count("clip.mp4", 65535, 65535)


def test_try_load_images_reports_refused_file_and_keeps_others(tmp_path, pixel_limit):
    pixel_limit(PILLOW_DEFAULT_LIMIT)
    (tmp_path / "bomb.jpg").write_bytes(_jpeg_declaring(20000, 20000))
    samples = sample_images()[:3]
    sources = [samples[0], tmp_path / "bomb.jpg", *samples[1:]]
    report = try_load_images(sources)
    assert report.indices == [0, 2, 3] and report.names == [str(p) for p in samples]
    for path, img in zip(samples, report.images):
        assert torch.equal(img, _pillow_rgb(path.read_bytes()))
    assert [e.source for e in report.errors] == [str(tmp_path / "bomb.jpg")]
    assert report.errors[0].reason.startswith("declares 20000x20000 = 400000000 pixels")


def test_wide_gray_images_warn_once_per_file(tmp_path):
    """16-bit PNG and 32-bit TIFF gray are clipped to 0..255 (as PIL's convert does) with one UserWarning
    each that names the file; 8-bit files stay quiet."""
    values = np.array([[0, 100, 255, 256, 1000, 65535]])
    files = {"g16.png": ("PNG", values.astype(np.uint16), "'I;16' (16-bit)"),
             "g32.tif": ("TIFF", values.astype(np.int32), "'I' (32-bit integer)"),
             "f32.tif": ("TIFF", values.astype(np.float32) - 0.5, "'F' (32-bit float)")}
    for name, (fmt, arr, _) in files.items():
        (tmp_path / name).write_bytes(_encode(arr, fmt))
    (tmp_path / "g8.png").write_bytes(_encode(values.astype(np.uint8), "PNG"))
    paths = [tmp_path / n for n in (*files, "g8.png")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = load_images(paths)
    messages = sorted(str(w.message) for w in caught if w.category is UserWarning)
    assert messages == sorted(f"{tmp_path / name}: expected 8 bits per sample, got mode {mode}; reduced to 8 bits "
                              f"by clipping to 0..255 (not rescaled), as PIL's convert('RGB') does"
                              for name, (_, _, mode) in files.items())
    for path, img in zip(paths, images):
        assert torch.equal(img, _pillow_rgb(path.read_bytes())), path.name
    assert images[0][0, 0].tolist() == [0, 100, 255, 255, 255, 255]


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
